"""Read access to a bag, whether a directory or a ``.tar`` holding one, without unpacking.

Media tools read a tar member in place through ffmpeg's ``subfile`` protocol (a byte
range of the tar file), so checking a ``.tar`` bundle needs no temporary copy.
"""

from __future__ import annotations

import io
import os
import posixpath
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from config.errors import EXIT_NOINPUT, LiuhenError


class BundleNotFound(LiuhenError):
    exit_code = EXIT_NOINPUT


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
    def __init__(self, root: Path, name: str | None = None) -> None:
        self.location = root
        self.name = name or root.name
        self._odd: list[str] = []

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
                    self._odd.append(rel)
                    continue
                out[rel] = st.st_size
        return out

    def odd_entries(self) -> list[str]:
        return list(self._odd)

    def open(self, path: str) -> BinaryIO:
        return open(self.location / path, "rb")

    def read(self, path: str) -> bytes:
        return (self.location / path).read_bytes()

    def media_url(self, path: str) -> str:
        # Absolute: cannot be mistaken for an option or an ffmpeg protocol.
        return os.path.abspath(self.location / path)


class TarBag:
    """A bag inside a tar file: one top-level directory (the bag's name)."""

    def __init__(self, path: Path) -> None:
        self.location = path
        self._members: dict[str, tuple[int, int]] = {}
        self._odd: list[str] = []
        tops: set[str] = set()
        try:
            with tarfile.open(path, "r:") as tar:
                for m in tar:
                    top, _, rest = m.name.partition("/")
                    if rest and ".." not in rest.split("/"):
                        # As extraction resolves it: 'bag/./data/x' and 'bag//data/x' are
                        # 'bag/data/x' ('..' is refused below, unresolved).
                        rest = posixpath.normpath(rest).lstrip("/")
                        rest = "" if rest == "." else rest
                    tops.add(top)
                    if m.isdir():
                        continue
                    if not m.isfile() or not rest or ".." in rest.split("/") \
                            or m.name.startswith("/"):
                        self._odd.append(m.name)
                        continue
                    if rest in self._members:
                        # A later copy replaces the first on extraction.
                        self._odd.append(f"{m.name} (a second member for {top}/{rest})")
                        continue
                    self._members[rest] = (m.offset_data, m.size)
        except (tarfile.TarError, OSError) as exc:
            raise BundleNotFound(f"{path}: not a readable tar file ({exc})",
                                 hint="give a bag directory or the .tar an export wrote") from exc
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
    if path.is_dir():
        return DirBag(path)
    if path.is_file():
        return TarBag(path)
    raise BundleNotFound(f"{path}: no such bundle",
                         hint="give a bag directory or the .tar an export wrote")


def iter_chunks(f: BinaryIO, size: int = 4 << 20) -> Iterator[bytes]:
    while chunk := f.read(size):
        yield chunk
