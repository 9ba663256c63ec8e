"""The one ISO base media (MP4/MOV/HEIF) box walker of the project.

Every reader of MP4 boxes (the quick output check in :mod:`ingest.media.mp4check`, the
structure check in :mod:`ingest.media.structure`, the salvage in
:mod:`ingest.media.recover`, the archive's encryption check) walks the same headers: a
32-bit size and a four-character type, a 64-bit size when the 32-bit one is 1, and a
size of 0 meaning "to the end of the parent". They differ only in what they want back,
so each :class:`Box` carries all of it: where the header starts, where the payload
starts, where the box ends within what exists, and where its header says it ends.

The source is either bytes held in memory (``bytes``, ``bytearray``, ``memoryview``,
``mmap``) or a binary file open for reading (only the headers are read from it). A
walk never reads past ``end`` and never raises on malformed input: it stops at the
first header that cannot be a box (smaller than its own header or, by default, a type
that is not four printable characters). A box whose header claims more than its parent
holds is still yielded, with ``end`` clamped and ``cut`` true, and the walk stops after
it: callers decide whether that is damage (a truncated recording) or expected.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Final, TypeAlias

__all__ = [
    "CONTAINERS",
    "Box",
    "Source",
    "child",
    "descend",
    "file_size",
    "read",
    "walk",
    "walk_tree",
]

Source: TypeAlias = bytes | bytearray | memoryview | mmap.mmap | BinaryIO

# Boxes whose payload is nothing but child boxes, down to the sample table.
CONTAINERS: Final = frozenset(
    {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"udta", b"mvex", b"moof"}
)


@dataclass(frozen=True)
class Box:
    """One box: ``type``, header ``start``, ``payload`` offset, ``end`` within what exists.

    ``declared_end`` is where the header says the box ends; it is past ``end`` when the
    box runs beyond its parent or the end of the file (``cut``).
    """

    type: bytes
    start: int
    payload: int
    end: int
    declared_end: int

    @property
    def size(self) -> int:
        """Bytes of the box that exist (header included)."""
        return self.end - self.start

    @property
    def cut(self) -> bool:
        return self.declared_end > self.end

    @property
    def name(self) -> str:
        return self.type.decode("latin-1")


def _is_fourcc(value: bytes) -> bool:
    return len(value) == 4 and all(32 <= c < 127 for c in value)


def file_size(f: BinaryIO) -> int:
    """The size of an open file (its position is left at the end)."""
    return f.seek(0, 2)


def read(src: Source, at: int, n: int) -> bytes:
    """``n`` bytes at ``at`` (fewer at the end), from memory or from the file."""
    if isinstance(src, bytes | bytearray | memoryview | mmap.mmap):
        return bytes(src[at : at + n])
    src.seek(at)
    return src.read(n)


def _end_of(src: Source) -> int:
    if isinstance(src, bytes | bytearray | memoryview | mmap.mmap):
        return len(src)
    return file_size(src)


def walk(
    src: Source, start: int = 0, end: int | None = None, *, fourcc_only: bool = True
) -> Iterator[Box]:
    """The boxes one after another in ``[start, end)`` (``end``: the source's end)."""
    stop = _end_of(src) if end is None else end
    at = start
    while at + 8 <= stop:
        head = read(src, at, 16)
        size, kind = struct.unpack_from(">I4s", head, 0)
        header = 8
        if size == 1:
            if len(head) < 16 or at + 16 > stop:
                return
            size = struct.unpack_from(">Q", head, 8)[0]
            header = 16
        elif size == 0:
            size = stop - at
        if size < header or (fourcc_only and not _is_fourcc(kind)):
            return
        declared = at + size
        yield Box(kind, at, at + header, min(declared, stop), declared)
        if declared > stop:
            return
        at = declared


def child(src: Source, parent: Box, kind: bytes, *, skip: int = 0) -> Box | None:
    """The first child box of ``parent`` of type ``kind``; ``skip`` bytes of fields first
    (a full box's version and flags, a sample entry's fixed fields)."""
    return next((b for b in walk(src, parent.payload + skip, parent.end) if b.type == kind), None)


def descend(src: Source, parent: Box, *path: bytes) -> Box | None:
    """Follow a path of child types, e.g. ``descend(f, trak, b"mdia", b"minf", b"stbl")``."""
    box: Box | None = parent
    for kind in path:
        if box is None:
            return None
        box = child(src, box, kind)
    return box


def walk_tree(
    src: Source,
    start: int = 0,
    end: int | None = None,
    *,
    containers: Iterable[bytes] = CONTAINERS,
    fourcc_only: bool = True,
) -> Iterator[Box]:
    """Every box depth first, entering the ``containers`` (a parent before its children)."""
    enter = frozenset(containers)
    stack = [walk(src, start, end, fourcc_only=fourcc_only)]
    while stack:
        box = next(stack[-1], None)
        if box is None:
            stack.pop()
            continue
        yield box
        if box.type in enter:
            stack.append(walk(src, box.payload, box.end, fourcc_only=fourcc_only))
