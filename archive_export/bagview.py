"""Read access to a bag, whether a directory or a ``.tar`` holding one, without unpacking.

Media tools read a tar member in place through ffmpeg's ``subfile`` protocol (a byte
range of the tar file), so checking a ``.tar`` bundle needs no temporary copy.

A bag opened with :func:`open_bag` (a bundle someone handed over, so possibly hostile) is
bounded like ``liuhen verify`` (:mod:`archive_export.bagparse`): at most ``MAX_FILES``
files or tar members, and a tag file read whole at most ``MAX_TAG_BYTES``; beyond that
:class:`BagTooLarge` (exit 1, naming the file), never an exhausted memory. The export's
own view of the bag it is writing is not bounded.
"""

from __future__ import annotations

import io
import os
import posixpath
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast

from archive_export.bagparse import MAX_FILES, MAX_TAG_BYTES, BoundedTarInfo, TarHeaderTooLarge
from config.errors import EXIT_FAILED_CHECK, EXIT_NOINPUT, LiuhenError


class BundleNotFound(LiuhenError):
    exit_code = EXIT_NOINPUT


class BagTooLarge(LiuhenError):
    """The bag is over a bound: invalid as "too large / too many" (a failed check)."""

    exit_code = EXIT_FAILED_CHECK


_SPLIT_HINT = "a bag checked here holds at most {n:,} files; split the handover into several bags"


def _too_many(where: Path) -> BagTooLarge:
    return BagTooLarge(
        f"{where}: invalid: more than {MAX_FILES:,} files (too many)",
        hint=_SPLIT_HINT.format(n=MAX_FILES),
    )


def _check_tag_size(location: Path, path: str, size: int) -> None:
    if size > MAX_TAG_BYTES:
        raise BagTooLarge(
            f"{location}: invalid: {path} is {size:,} bytes, more than the "
            f"{MAX_TAG_BYTES:,} a file read whole may have here (too large)",
            hint="a tag or metadata file that big is not one a bag needs",
        )


class BagView(Protocol):
    name: str
    location: Path

    def files(self) -> dict[str, int]:
        """Every regular file: path relative to the bag root -> size."""
        ...

    def open(self, path: str) -> BinaryIO: ...

    def read(self, path: str) -> bytes: ...

    def media_url(self, path: str) -> str:
        """What to give ffmpeg/ffprobe as input for ``path``."""
        ...

    def odd_entries(self) -> list[str]:
        """Links, devices and paths escaping the bag: never part of a sound bag."""
        ...


class DirBag:
    def __init__(self, root: Path, name: str | None = None, *, bounded: bool = False) -> None:
        self.location = root
        self.name = name or root.name
        self._odd: list[str] = []
        self._bounded = bounded

    def files(self) -> dict[str, int]:
        out: dict[str, int] = {}
        self._odd = []
        for dirpath, dirnames, filenames in os.walk(self.location):
            for d in list(dirnames):
                if os.path.islink(os.path.join(dirpath, d)):
                    self._odd.append(os.path.relpath(os.path.join(dirpath, d), self.location))
                    dirnames.remove(d)
            for f in filenames:
                full = os.path.join(dirpath, f)
                rel = os.path.relpath(full, self.location).replace(os.sep, "/")
                st = os.lstat(full)
                if not os.path.isfile(full) or os.path.islink(full):
                    if len(self._odd) < MAX_FILES:
                        self._odd.append(rel)
                    continue
                if self._bounded and len(out) >= MAX_FILES:
                    raise _too_many(self.location)
                out[rel] = st.st_size
        return out

    def odd_entries(self) -> list[str]:
        return list(self._odd)

    def open(self, path: str) -> BinaryIO:
        return open(self.location / path, "rb")

    def read(self, path: str) -> bytes:
        with open(self.location / path, "rb") as f:
            if self._bounded:
                _check_tag_size(self.location, path, os.fstat(f.fileno()).st_size)
                return f.read(MAX_TAG_BYTES)
            return f.read()

    def media_url(self, path: str) -> str:
        # Absolute: cannot be mistaken for an option or an ffmpeg protocol.
        return os.path.abspath(self.location / path)


class TarBag:
    """A bag inside a tar file: one top-level directory (the bag's name)."""

    def __init__(self, path: Path, *, bounded: bool = False) -> None:
        self.location = path
        self._members: dict[str, tuple[int, int]] = {}
        self._odd: list[str] = []
        self._bounded = bounded
        tops: set[str] = set()
        count = 0
        try:
            with tarfile.open(path, "r:", tarinfo=BoundedTarInfo) as tar:
                while (m := tar.next()) is not None:
                    # tarfile keeps every header it read (TarFile.members, not in the type
                    # stubs); emptied so that memory does not grow with the member count.
                    cast(Any, tar).members.clear()
                    count += 1
                    if bounded and count > 2 * MAX_FILES:
                        raise _too_many(path)
                    top, _, rest = m.name.partition("/")
                    if rest and ".." not in rest.split("/"):
                        # As extraction resolves it: 'bag/./data/x' and 'bag//data/x' are
                        # 'bag/data/x' ('..' is refused below, unresolved).
                        rest = posixpath.normpath(rest).lstrip("/")
                        rest = "" if rest == "." else rest
                    tops.add(top)
                    if m.isdir():
                        continue
                    if (
                        not m.isfile()
                        or not rest
                        or ".." in rest.split("/")
                        or m.name.startswith("/")
                    ):
                        self._odd.append(m.name)
                        continue
                    if rest in self._members:
                        # A later copy replaces the first on extraction.
                        self._odd.append(f"{m.name} (a second member for {top}/{rest})")
                        continue
                    if bounded and len(self._members) >= MAX_FILES:
                        raise _too_many(path)
                    self._members[rest] = (m.offset_data, m.size)
        except TarHeaderTooLarge as exc:
            raise BagTooLarge(
                f"{path}: invalid: {exc}", hint="give a bag directory or the .tar an export wrote"
            ) from exc
        except (tarfile.TarError, OSError) as exc:
            raise BundleNotFound(
                f"{path}: not a readable tar file ({exc})",
                hint="give a bag directory or the .tar an export wrote",
            ) from exc
        if len(tops) > 1:
            self._odd.extend(sorted(f"{t}/ (another top-level directory)" for t in tops)[1:])
        self.name = sorted(tops)[0] if tops else path.stem

    def files(self) -> dict[str, int]:
        return {p: size for p, (_off, size) in self._members.items()}

    def odd_entries(self) -> list[str]:
        return list(self._odd)

    def open(self, path: str) -> BinaryIO:
        offset, size = self._members[path]
        return _Range(open(self.location, "rb"), offset, size)

    def read(self, path: str) -> bytes:
        if self._bounded:
            _check_tag_size(self.location, path, self._members[path][1])
        with self.open(path) as f:
            return f.read()

    def member_range(self, path: str) -> tuple[int, int]:
        """Where ``path``'s bytes lie in the tar file: (offset, size)."""
        return self._members[path]

    def media_url(self, path: str) -> str:
        offset, size = self._members[path]
        # ffmpeg's subfile protocol: bytes [start, end) of the tar, seekable.
        return f"subfile,,start,{offset},end,{offset + size},,:{os.path.abspath(self.location)}"


class _Range(io.RawIOBase, BinaryIO):
    """A read-only, seekable window onto a file."""

    def __init__(self, f: BinaryIO, offset: int, size: int) -> None:
        super().__init__()
        self._f, self._off, self._size, self._pos = f, offset, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buf), self._size - self._pos)
        if n <= 0:
            return 0
        self._f.seek(self._off + self._pos)
        data = self._f.read(n)
        buf[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        self._f.close()
        super().close()


def open_bag(path: Path) -> BagView:
    """A bundle handed over (bounded: see the module doc)."""
    if path.is_dir():
        return DirBag(path, bounded=True)
    if path.is_file():
        return TarBag(path, bounded=True)
    raise BundleNotFound(
        f"{path}: no such bundle", hint="give a bag directory or the .tar an export wrote"
    )


def iter_chunks(f: BinaryIO, size: int = 4 << 20) -> Iterator[bytes]:
    while chunk := f.read(size):
        yield chunk
