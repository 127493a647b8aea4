"""load_dataset on folders and archives: identical results, skips with reasons, clear errors."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
from PIL import Image

from mtlbench.data import DataError, load_dataset, parse_name
from mtlbench.data import decode as decode_module
from mtlbench.data.decode import decode_image, decode_many


def _files(folder: Path) -> list[tuple[str, Path]]:
    root = folder.parent
    return sorted((p.relative_to(root).as_posix(), p) for p in folder.rglob("*") if p.is_file())


def make_tar(folder: Path, out: Path, mode: Literal["w", "w:gz"] = "w:gz") -> Path:
    with tarfile.open(out, mode) as archive:
        for arcname, path in _files(folder):
            archive.add(path, arcname=arcname)
    return out


def make_zip(folder: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for arcname, path in _files(folder):
            archive.write(path, arcname)
    return out


def jpeg_bytes(size: tuple[int, int] = (48, 48), mode: str = "RGB", colour: Any = None) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, colour if colour is not None else (200, 100, 50)).save(buffer, "JPEG")
    return buffer.getvalue()


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_folder_and_archives_give_identical_arrays(
    face_folder: Path, tmp_path: Path, cache_dir: Path
) -> None:
    sources = [
        face_folder.parent,
        make_tar(face_folder, tmp_path / "faces.tar.gz"),
        make_tar(face_folder, tmp_path / "faces.tar", "w"),
        make_tar(face_folder, tmp_path / "faces.tgz"),
        make_zip(face_folder, tmp_path / "faces.zip"),
    ]
    loaded = [load_dataset(s, 32, cache_dir=cache_dir) for s in sources]
    first = loaded[0]
    assert first.images.shape == (24, 32, 32, 3) and first.images.dtype == np.uint8
    assert first.labels.shape == (24, 3) and first.labels.dtype == np.int64
    assert first.names[0].startswith("UTKFace/")
    for ds in loaded[1:]:
        np.testing.assert_array_equal(ds.images, first.images)
        np.testing.assert_array_equal(ds.labels, first.labels)
        assert ds.names == first.names
        assert not ds.synthetic and ds.skipped == ()
    assert [ds.source for ds in loaded] == [str(s) for s in sources]
    # Five distinct sources, five cache entries.
    assert len({ds.content_sha256 for ds in loaded}) == 5


def test_labels_follow_names(face_folder: Path, cache_dir: Path) -> None:
    ds = load_dataset(face_folder, 16, cache_dir=cache_dir)
    assert list(ds.names) == sorted(ds.names)
    for name, row in zip(ds.names, ds.labels, strict=True):
        labels = parse_name(name)
        assert row.tolist() == [labels.age, labels.gender, labels.race]
    assert ds.n_scanned == 24 and ds.image_size == 16
    assert ds.summary() == "24 images, 0 skipped"
    assert ds.skipped_report is None


def test_bad_files_are_skipped_with_reasons(face_folder: Path, cache_dir: Path) -> None:
    good = next(face_folder.iterdir()).read_bytes()
    (face_folder / "40_1_2_20170101000000001.jpg.chip.jpg").write_bytes(good[: len(good) // 2])
    (face_folder / "41_0_3_20170101000000002.jpg.chip.jpg").write_bytes(b"")
    (face_folder / "42_0_3_20170101000000003.jpg.chip.jpg").write_text("not an image")
    (face_folder / "43_0_3_20170101000000004.jpg").write_bytes(b"\xff\xd8\xff" + b"\0" * 50)
    (face_folder / "39_1_20170116174525125.jpg.chip.jpg").write_bytes(good)
    (face_folder / "notes.txt").write_text("hello")
    (face_folder / "130_0_0_20170101000000005.jpg").write_bytes(good)
    ds = load_dataset(face_folder, 32, cache_dir=cache_dir)
    reasons = {s.name: s.reason for s in ds.skipped}
    assert len(ds) == 24 and ds.n_scanned == 31 and len(ds.skipped) == 7
    assert "truncated" in reasons["40_1_2_20170101000000001.jpg.chip.jpg"].lower()
    assert reasons["41_0_3_20170101000000002.jpg.chip.jpg"] == "empty file (0 bytes)"
    assert "not a JPEG or PNG" in reasons["42_0_3_20170101000000003.jpg.chip.jpg"]
    assert reasons["43_0_3_20170101000000004.jpg"].startswith("cannot decode image")
    assert "race field is missing" in reasons["39_1_20170116174525125.jpg.chip.jpg"]
    assert reasons["notes.txt"].startswith("not an image file")
    assert reasons["130_0_0_20170101000000005.jpg"] == "age 130 out of range 0-120"
    assert ds.skipped_report is not None
    assert ds.summary() == f"24 images, 7 skipped: see {ds.skipped_report}"
    lines = ds.skipped_report.read_text().splitlines()
    assert lines[0] == "name\treason" and len(lines) == 8
    assert "notes.txt\tnot an image file" in "\n".join(lines)


def test_unsafe_archive_members_are_skipped(
    face_folder: Path, tmp_path: Path, cache_dir: Path
) -> None:
    archive_path = make_tar(face_folder, tmp_path / "evil.tar", "w")
    data = jpeg_bytes()
    with tarfile.open(archive_path, "a") as archive:
        for name in ("../20_0_0_20170101000000001.jpg", "/tmp/20_0_0_20170101000000002.jpg"):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("UTKFace/20_0_0_20170101000000003.jpg")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        archive.addfile(link)
    ds = load_dataset(archive_path, 16, cache_dir=cache_dir)
    reasons = {s.name: s.reason for s in ds.skipped}
    assert reasons["../20_0_0_20170101000000001.jpg"].startswith(
        "unsafe member path (OutsideDestinationError"
    )
    # tarfile's data filter would strip the leading '/', mtlbench refuses the member outright
    assert reasons["/tmp/20_0_0_20170101000000002.jpg"] == "unsafe member path (absolute)"
    assert "symbolic link" in reasons["UTKFace/20_0_0_20170101000000003.jpg"]
    assert len(ds) == 24
    assert not (tmp_path / "20_0_0_20170101000000001.jpg").exists()


def test_image_modes_and_shapes_are_normalised(tmp_path: Path, cache_dir: Path) -> None:
    folder = tmp_path / "modes"
    folder.mkdir()
    palette = Image.new("P", (30, 30))
    palette.putpalette([255, 0, 0] * 256)
    palette.info["transparency"] = 0
    files = {
        "20_0_0_1.jpg": jpeg_bytes((100, 40), "RGB", (10, 200, 30)),  # wide: centre crop
        "21_0_1_2.jpg": jpeg_bytes((40, 40), "L", 128),
        "22_0_2_3.jpg": jpeg_bytes((40, 40), "CMYK", (0, 0, 0, 0)),
        "23_1_3_4.png": png_bytes(Image.new("RGBA", (40, 60), (0, 0, 255, 128))),
        "24_1_4_5.png": png_bytes(palette),
        "25_1_0_6.png": png_bytes(Image.new("I;16", (40, 40), 1000)),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    ds = load_dataset(folder, 8, cache_dir=cache_dir)
    assert ds.skipped == () and ds.images.shape == (6, 8, 8, 3)
    by_name = dict(zip(ds.names, ds.images, strict=True))
    assert np.abs(by_name["20_0_0_1.jpg"].astype(int) - [10, 200, 30]).max() <= 6
    assert np.ptp(by_name["21_0_1_2.jpg"].astype(int), axis=2).max() <= 1  # grey stays grey
    assert np.all(by_name["23_1_3_4.png"][..., 2] == 255)
    assert np.all(by_name["24_1_4_5.png"] == [255, 0, 0])


def test_centre_crop_of_non_square() -> None:
    image = Image.new("RGB", (90, 30), (255, 0, 0))
    image.paste((0, 0, 255), (30, 0, 60, 30))  # blue middle third
    out = decode_image(png_bytes(image), 12)
    assert out.shape == (12, 12, 3)
    assert np.all(out[..., 2] == 255) and np.all(out[..., 0] == 0)


def test_decompression_bomb_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decode_module, "MAX_PIXELS", 1000)
    with pytest.raises(ValueError, match="too large"):
        decode_image(jpeg_bytes((100, 100)), 8)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400)
    monkeypatch.setattr(decode_module, "MAX_PIXELS", 10**9)
    with pytest.raises(ValueError, match="decompression bomb"):
        decode_image(jpeg_bytes((30, 30)), 8)


def test_worker_pool_matches_in_process(face_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    items = [(p.name, p.read_bytes()) for p in sorted(face_folder.iterdir())]
    items.insert(5, ("bad.jpg", b"junk"))
    in_process = decode_many(items, 16, workers=1)
    monkeypatch.setattr(decode_module, "IN_PROCESS_LIMIT", 4)
    monkeypatch.setattr(decode_module, "CHUNK", 5)
    advanced: list[int] = []
    pooled = decode_many(items, 16, workers=2, advance=advanced.append)
    assert pooled.names == in_process.names and len(pooled.names) == 24
    np.testing.assert_array_equal(pooled.images, in_process.images)
    assert pooled.failures == in_process.failures == [("bad.jpg", pooled.failures[0][1])]
    assert sum(advanced) == 25


class RecordingReporter:
    def __init__(self) -> None:
        self.bars: list[tuple[str, float | None]] = []
        self.advanced = 0.0
        self.messages: list[str] = []

    def info(self, message: str) -> None:
        self.messages.append(message)

    def warn(self, message: str) -> None:
        self.messages.append(message)

    def progress(self, description: str, total: float | None) -> Any:
        self.bars.append((description, total))
        return _Bar(self)


class _Bar:
    def __init__(self, owner: RecordingReporter) -> None:
        self.owner = owner

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *args: object) -> None:
        return None

    def advance(self, n: float = 1, **fields: Any) -> None:
        self.owner.advanced += n

    def update(self, **fields: Any) -> None:
        return None


def test_progress_is_reported(face_folder: Path, cache_dir: Path) -> None:
    (face_folder / "readme.txt").write_text("skip me")
    reporter = RecordingReporter()
    load_dataset(face_folder, 32, cache_dir=cache_dir, reporter=reporter)
    assert reporter.bars == [("decoding UTKFace at 32 px", 25)]
    assert reporter.advanced == 25
    assert any("decoded 24 images" in m for m in reporter.messages)


def _one_line_error(source: Path, cache_dir: Path) -> str:
    with pytest.raises(DataError) as info:
        load_dataset(source, 32, cache_dir=cache_dir)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_path(tmp_path: Path, cache_dir: Path) -> None:
    message = _one_line_error(tmp_path / "nope", cache_dir)
    assert message == f"data path does not exist: {tmp_path / 'nope'}"


def test_unsupported_file(tmp_path: Path, cache_dir: Path) -> None:
    path = tmp_path / "faces.rar"
    path.write_bytes(b"Rar!")
    message = _one_line_error(path, cache_dir)
    assert "not a folder or a supported archive" in message
    assert ".tar.gz" in message and ".zip" in message


def test_empty_folder(tmp_path: Path, cache_dir: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert "no files found" in _one_line_error(tmp_path / "empty", cache_dir)


def test_folder_of_junk(tmp_path: Path, cache_dir: Path) -> None:
    junk = tmp_path / "junk"
    junk.mkdir()
    for i in range(3):
        (junk / f"file{i}.txt").write_text("x")
    (junk / "20_0_0_1.jpg").write_text("x")
    message = _one_line_error(junk, cache_dir)
    assert "no valid image found" in message and "all 4 files were skipped" in message
    assert "not an image file" in message
    tsv = Path(message.rsplit("full list in ", 1)[1])
    assert len(tsv.read_text().splitlines()) == 5


@pytest.mark.parametrize("suffix", [".tar.gz", ".zip", ".tar"])
def test_corrupt_archive(tmp_path: Path, cache_dir: Path, suffix: str) -> None:
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4)
    assert "cannot read archive" in _one_line_error(path, cache_dir)


def test_truncated_tar_gz(face_folder: Path, tmp_path: Path, cache_dir: Path) -> None:
    whole = make_tar(face_folder, tmp_path / "whole.tar.gz").read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    assert "cannot read archive" in _one_line_error(cut, cache_dir)


def test_damaged_zip_member_is_skipped(face_folder: Path, tmp_path: Path, cache_dir: Path) -> None:
    path = tmp_path / "faces.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for arcname, file in _files(face_folder):
            archive.write(file, arcname)
    raw = bytearray(path.read_bytes())
    first = sorted(face_folder.iterdir())[0].read_bytes()
    start = raw.index(first[100:140])
    raw[start : start + 20] = bytes(20)  # corrupt the data, so its CRC check fails
    path.write_bytes(bytes(raw))
    ds = load_dataset(path, 16, cache_dir=cache_dir)
    assert len(ds) == 23
    assert "Bad CRC-32" in ds.skipped[0].reason


def test_image_size_is_checked(face_folder: Path, cache_dir: Path) -> None:
    with pytest.raises(ValueError, match="image_size"):
        load_dataset(face_folder, 2, cache_dir=cache_dir)


def test_importing_the_package_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys, mtlbench.data; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
