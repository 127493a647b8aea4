"""Decode once: cache reuse, invalidation, atomic publication, concurrent builders."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mtlbench.data import dataset as dataset_module
from mtlbench.data import load_dataset
from mtlbench.data.cache import build_once, publish
from mtlbench.data.entry import CACHE_VERSION
from mtlbench.infra.progress import NullReporter


def _entries(cache_dir: Path) -> list[Path]:
    return sorted(p for p in cache_dir.iterdir() if p.is_dir())


def _forbid_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded again instead of using the cache")

    monkeypatch.setattr(dataset_module, "decode_many", fail)


def test_second_load_reads_the_cache(
    face_folder: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = load_dataset(face_folder, 24, cache_dir=cache_dir)
    _forbid_decoding(monkeypatch)
    second = load_dataset(face_folder, 24, cache_dir=cache_dir)
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.labels, second.labels)
    assert first.names == second.names and first.content_sha256 == second.content_sha256
    assert not second.images.flags.writeable  # the cache is read-only to callers


def test_entry_layout(face_folder: Path, cache_dir: Path) -> None:
    ds = load_dataset(face_folder, 24, cache_dir=cache_dir)
    (entry,) = _entries(cache_dir)
    assert entry.name == f"{ds.content_sha256[:16]}-24px-v{CACHE_VERSION}"
    assert {p.name for p in entry.iterdir()} == {
        "images.npy",
        "labels.npy",
        "meta.json",
        "skipped.tsv",
    }
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["version"] == CACHE_VERSION and meta["n_images"] == 24
    assert meta["names"] == list(ds.names)
    assert (cache_dir / f"{entry.name}.lock").exists()


def test_other_sizes_get_their_own_entry(face_folder: Path, cache_dir: Path) -> None:
    load_dataset(face_folder, 16, cache_dir=cache_dir)
    load_dataset(face_folder, 24, cache_dir=cache_dir)
    assert [p.name.split("-")[1] for p in _entries(cache_dir)] == ["16px", "24px"]


def test_folder_change_invalidates(face_folder: Path, cache_dir: Path) -> None:
    before = load_dataset(face_folder, 16, cache_dir=cache_dir)
    victim = sorted(face_folder.iterdir())[0]
    victim.unlink()
    after = load_dataset(face_folder, 16, cache_dir=cache_dir)
    assert after.content_sha256 != before.content_sha256
    assert len(after) == 23 and victim.name not in {n.split("/")[-1] for n in after.names}


def test_archive_key_is_the_file_hash(face_folder: Path, tmp_path: Path, cache_dir: Path) -> None:
    archive = tmp_path / "faces.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in sorted(face_folder.iterdir()):
            handle.write(path, f"UTKFace/{path.name}")
    ds = load_dataset(archive, 16, cache_dir=cache_dir)
    assert ds.content_sha256 == hashlib.sha256(archive.read_bytes()).hexdigest()


@pytest.mark.parametrize("damage", ["stale-version", "missing-images", "truncated-images"])
def test_unusable_entries_are_rebuilt(
    face_folder: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    good = np.array(load_dataset(face_folder, 16, cache_dir=cache_dir).images)
    (entry,) = _entries(cache_dir)
    if damage == "stale-version":
        meta = json.loads((entry / "meta.json").read_text())
        meta["version"] = CACHE_VERSION + 1
        (entry / "meta.json").write_text(json.dumps(meta))
    elif damage == "missing-images":
        (entry / "images.npy").unlink()
    else:
        # A new file renamed over the old one: the first load's memory map stays valid.
        data = (entry / "images.npy").read_bytes()
        (entry / "cut.npy").write_bytes(data[: len(data) // 2])
        os.replace(entry / "cut.npy", entry / "images.npy")
    calls: list[int] = []
    real = dataset_module.decode_many

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(dataset_module, "decode_many", counting)
    again = load_dataset(face_folder, 16, cache_dir=cache_dir)
    assert calls == [1]
    np.testing.assert_array_equal(again.images, good)
    assert _entries(cache_dir) == [entry]


def test_publish_when_another_process_won(tmp_path: Path) -> None:
    final, mine = tmp_path / "entry", tmp_path / ".tmp-entry-1"
    final.mkdir()
    (final / "theirs").write_text("1")
    mine.mkdir()
    (mine / "mine").write_text("2")
    assert publish(mine, final) is False
    assert not mine.exists() and (final / "theirs").exists()
    other = tmp_path / ".tmp-x"
    other.mkdir()
    assert publish(other, tmp_path / "fresh") is True


def test_leftovers_of_a_crashed_builder_are_cleaned(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    stale = cache / ".tmp-key-crashed"
    stale.mkdir(parents=True)

    def build(folder: Path) -> None:
        (folder / "value").write_text("42")

    def load(folder: Path) -> str | None:
        path = folder / "value"
        return path.read_text() if path.exists() else None

    assert build_once(cache, "key", build, load) == "42"
    assert not stale.exists()
    assert sorted(p.name for p in cache.iterdir()) == ["key", "key.lock"]


def test_failed_build_leaves_nothing(tmp_path: Path) -> None:
    cache = tmp_path / "cache"

    def build(folder: Path) -> None:
        (folder / "partial").write_text("x")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        build_once(cache, "key", build, lambda folder: None)
    assert sorted(p.name for p in cache.iterdir()) == ["key.lock"]


def _load_in_child(source: str, cache_dir: str, out: str, barrier: Any) -> None:
    reporter = NullReporter()
    barrier.wait(timeout=60)  # start both loads at the same moment
    ds = load_dataset(source, 20, cache_dir=Path(cache_dir), reporter=reporter, workers=1)
    digest = hashlib.sha256(np.ascontiguousarray(ds.images).tobytes())
    digest.update(ds.labels.tobytes())
    decoded = sum("decoded" in m for m in reporter.messages)
    Path(out).write_text(f"{digest.hexdigest()} {decoded}")


def test_two_processes_build_the_same_entry(face_folder: Path, tmp_path: Path) -> None:
    cache = tmp_path / "shared-cache"
    context = multiprocessing.get_context("spawn")
    outs = [tmp_path / f"out{i}.txt" for i in range(2)]
    barrier = context.Barrier(2)
    children = [
        context.Process(
            target=_load_in_child, args=(str(face_folder), str(cache), str(out), barrier)
        )
        for out in outs
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)
    assert [c.exitcode for c in children] == [0, 0]
    results = [out.read_text().split() for out in outs]
    digests = [digest for digest, _ in results]
    assert digests[0] == digests[1]
    assert sorted(int(decoded) for _, decoded in results) == [0, 1]  # the loser waited
    assert len(_entries(cache)) == 1
    assert not list(cache.glob(".tmp-*"))
    ds = load_dataset(face_folder, 20, cache_dir=cache)
    mine = hashlib.sha256(np.ascontiguousarray(ds.images).tobytes())
    mine.update(ds.labels.tobytes())
    assert mine.hexdigest() == digests[0]
