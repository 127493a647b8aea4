"""inspect_dataset: counts, distributions and skips, also for sources without a valid image."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtlbench.data import DataError, inspect_dataset, load_dataset
from mtlbench.data import dataset as dataset_module


def test_counts_and_distributions(face_folder: Path, cache_dir: Path) -> None:
    (face_folder / "39_1_20170116174525125.jpg.chip.jpg").write_bytes(b"x")
    report = inspect_dataset(face_folder, cache_dir=cache_dir)
    assert (report.n_scanned, report.n_images, len(report.skipped)) == (25, 24, 1)
    # Labels are (5 + 3 i, i % 2, i % 5) for i < 24.
    assert dict(report.gender_counts) == {"male": 12, "female": 12}
    assert dict(report.race_counts) == {
        "White": 5,
        "Black": 5,
        "Asian": 5,
        "Indian": 5,
        "Others": 4,
    }
    assert report.age_min == 5 and report.age_max == 74
    assert report.age_by_decade[0] == ("0-9", 2) and report.age_by_decade[-1] == ("70-79", 2)
    assert sum(n for _, n in report.age_by_decade) == 24
    text = report.to_text()
    assert "25 scanned, 24 images, 1 skipped" in text
    assert "39_1_20170116174525125.jpg.chip.jpg: name does not match" in text
    data = json.loads(json.dumps(report.to_dict()))
    assert data["n_skipped"] == 1 and data["race"]["Others"] == 4
    assert data["skipped"][0]["reason"].startswith("name does not match")


def test_reuses_any_cached_size(
    face_folder: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_dataset(face_folder, 24, cache_dir=cache_dir)

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded again")

    monkeypatch.setattr(dataset_module, "decode_many", fail)
    assert inspect_dataset(face_folder, cache_dir=cache_dir).n_images == 24


def test_junk_is_reported_not_raised(tmp_path: Path, cache_dir: Path) -> None:
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.txt").write_text("x")
    report = inspect_dataset(junk, cache_dir=cache_dir)
    assert report.n_images == 0 and report.skipped[0].name == "a.txt"
    assert report.age_mean is None and report.age_by_decade == ()
    assert "1 scanned, 0 images, 1 skipped" in report.to_text()


def test_missing_path_is_a_data_error(tmp_path: Path, cache_dir: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        inspect_dataset(tmp_path / "missing", cache_dir=cache_dir)


def _reference_digest(files: dict[str, bytes]) -> str:
    """The documented definition, computed here from scratch: sha256 over the sorted lines
    ``name NUL sha256(bytes) LF`` after the header ``files-v1 LF``."""
    import hashlib

    lines = sorted(f"{n}\0{hashlib.sha256(b).hexdigest()}\n".encode() for n, b in files.items())
    return hashlib.sha256(b"files-v1\n" + b"".join(lines)).hexdigest()


def test_files_digest_is_the_same_for_folder_and_differently_packed_archives(
    face_folder: Path, cache_dir: Path, tmp_path: Path
) -> None:
    import gzip
    import hashlib
    import io
    import tarfile

    files = {p.name: p.read_bytes() for p in face_folder.iterdir()}
    expected = _reference_digest(files)
    archives = []
    for level, order in ((1, sorted(files)), (9, sorted(files, reverse=True))):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name in order:
                info = tarfile.TarInfo(f"UTKFace/{name}")
                info.size = len(files[name])
                tar.addfile(info, io.BytesIO(files[name]))
        path = tmp_path / f"faces-{level}.tar.gz"
        path.write_bytes(gzip.compress(buf.getvalue(), compresslevel=level, mtime=level))
        archives.append(path)
    sha = [hashlib.sha256(p.read_bytes()).hexdigest() for p in archives]
    assert sha[0] != sha[1]  # byte-wise different archives of the same files
    for source in (face_folder, *archives):
        report = inspect_dataset(source, cache_dir=cache_dir)
        assert report.files_sha256 == expected, source
        assert report.n_files == len(files)
        assert f"files digest: {expected} over {len(files):,} files" in report.to_text()
    files["extra.jpg"] = b"x"
    assert _reference_digest(files) != expected
