"""Where image bytes come from: a folder, a tar archive (any compression) or a zip archive.

Archives are streamed member by member and never extracted to disk. Each source yields
``Entry`` records whose ``read()`` must be called before the next entry is requested (tar
streams cannot go back).
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mtlbench.data.errors import DataError, Skipped

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
ZIP_SUFFIXES = (".zip",)
SUPPORTED_KINDS = "a folder, " + ", ".join(TAR_SUFFIXES + ZIP_SUFFIXES)
_HASH_BLOCK = 1 << 20
_NOWHERE = "/nonexistent-mtlbench-extraction-target"  # data_filter needs a destination


@dataclass(frozen=True)
class Entry:
    """One regular file of a source. ``read`` raises ValueError(reason) for a bad member."""

    name: str
    size: int
    read: Callable[[], bytes]


class Source(Protocol):
    @property
    def path(self) -> Path: ...

    def content_sha256(self) -> str: ...

    def count(self) -> int | None:
        """Number of entries if known without reading the whole source."""
        ...

    def entries(self) -> Iterator[Entry | Skipped]: ...


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class FolderSource:
    path: Path

    def _files(self) -> list[tuple[str, Path]]:
        found: list[tuple[str, Path]] = []
        for root, dirs, files in os.walk(self.path):
            # Hidden folders (.git, .ipynb_checkpoints, ...) are never image folders.
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in files:
                full = Path(root, name)
                found.append((full.relative_to(self.path).as_posix(), full))
        return sorted(found)

    def content_sha256(self) -> str:
        # Hashing every byte of a folder of 20k files would cost more than decoding it, so the
        # key is a hash over sorted (relative path, size, mtime_ns): any edit, addition or removal
        # changes it, while moving or renaming the folder itself does not.
        digest = hashlib.sha256(b"folder-v1\n")
        for rel, full in self._files():
            stat = full.stat()
            digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()

    def count(self) -> int | None:
        return len(self._files())

    def entries(self) -> Iterator[Entry | Skipped]:
        for rel, full in self._files():
            if not full.is_file():
                yield Skipped(rel, "not a regular file")
                continue
            yield Entry(rel, full.stat().st_size, _file_reader(full))


def _file_reader(path: Path) -> Callable[[], bytes]:
    def read() -> bytes:
        try:
            return path.read_bytes()
        except OSError as err:
            raise ValueError(f"cannot read file: {one_line(err)}") from err

    return read


def _tar_kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return "symbolic link"
    if member.islnk():
        return "hard link"
    return "device, fifo or other special member"


@dataclass(frozen=True)
class TarSource:
    path: Path

    def content_sha256(self) -> str:
        return _sha256_file(self.path)

    def count(self) -> int | None:
        return None  # a compressed stream has no index; counting would mean reading it twice

    def entries(self) -> Iterator[Entry | Skipped]:
        try:
            with tarfile.open(self.path, mode="r|*") as archive:
                for member in archive:
                    if member.isdir():
                        continue
                    if not member.isfile():
                        yield Skipped(member.name, f"not a regular file ({_tar_kind(member)})")
                        continue
                    # Nothing is ever extracted, but a member that tarfile's "data" filter
                    # would refuse (absolute path, '..', outside the target) is refused too.
                    try:
                        tarfile.data_filter(member, _NOWHERE)
                    except tarfile.FilterError as err:
                        kind = err.__class__.__name__
                        yield Skipped(member.name, f"unsafe member path ({kind}: {one_line(err)})")
                        continue
                    reader = _tar_reader(self.path, archive, member)
                    yield Entry(member.name, member.size, reader)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
            raise DataError(f"cannot read archive {self.path}: {one_line(err)}") from err


def _tar_reader(
    path: Path, archive: tarfile.TarFile, member: tarfile.TarInfo
) -> Callable[[], bytes]:
    def read() -> bytes:
        # A damaged stream cannot be resumed past the damage, so this is fatal, not a skip.
        try:
            handle = archive.extractfile(member)
            if handle is None:
                raise ValueError("tar member has no data")
            return handle.read()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
            raise DataError(f"cannot read archive {path}: {one_line(err)}") from err

    return read


@dataclass(frozen=True)
class ZipSource:
    path: Path

    def content_sha256(self) -> str:
        return _sha256_file(self.path)

    def _open(self) -> zipfile.ZipFile:
        try:
            return zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError) as err:
            raise DataError(f"cannot read archive {self.path}: {one_line(err)}") from err

    def count(self) -> int | None:
        with self._open() as archive:
            return sum(1 for info in archive.infolist() if not info.is_dir())

    def entries(self) -> Iterator[Entry | Skipped]:
        with self._open() as archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                if info.flag_bits & 0x1:
                    yield Skipped(info.filename, "encrypted zip member")
                    continue
                yield Entry(info.filename, info.file_size, _zip_reader(archive, info))


def _zip_reader(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Callable[[], bytes]:
    def read() -> bytes:
        # A zip keeps an index, so one damaged member (bad CRC, unknown compression) does not
        # spoil the others: report it and go on.
        try:
            return archive.read(info)
        except (zipfile.BadZipFile, NotImplementedError, zlib.error, EOFError, OSError) as err:
            raise ValueError(f"cannot read zip member: {one_line(err)}") from err

    return read


def open_source(path: Path) -> Source:
    """The source for a user-given path, or DataError saying why it cannot be one."""
    if not path.exists():
        raise DataError(f"data path does not exist: {path}")
    if path.is_dir():
        return FolderSource(path)
    lower = path.name.lower()
    if not path.is_file():
        raise DataError(f"{path} is not a folder or a regular file")
    if lower.endswith(TAR_SUFFIXES):
        return TarSource(path)
    if lower.endswith(ZIP_SUFFIXES):
        return ZipSource(path)
    raise DataError(f"{path} is not a folder or a supported archive (supported: {SUPPORTED_KINDS})")
