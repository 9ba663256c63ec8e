"""HEIF (HEIC) photos, read far enough for ffmpeg to decode them.

ffmpeg before 6.1 has no HEIF demuxer, but it has the HEVC decoder, and an iPhone HEIC
is nothing more than HEVC: the picture is a grid of 512x512 tiles, each an HEVC
intra frame stored as an item of the file's ``meta`` box (``iloc`` says where its
bytes are, ``ipma`` ties it to its ``hvcC`` decoder configuration), and a ``grid``
item that says how many rows and columns there are and how large the whole picture is
(the last row and column of tiles are cropped). A single-image HEIF has one item.

:func:`read_heif` reads that layout (ISO/IEC 23008-12, with the box walker of
:mod:`ingest.media.mp4box`); :func:`write_tiles` writes the tiles as one raw HEVC stream
(parameter sets, then each tile as a frame), which ffmpeg decodes and its ``tile``
filter puts back together. The original is only read.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from ingest.media import mp4box
from ingest.media.mp4box import Box

__all__ = ["HeifImage", "is_heif", "read_heif", "write_tiles"]

HEIF_BRANDS: Final = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
)
_START_CODE: Final = b"\x00\x00\x00\x01"
_MAX_META: Final = 16 << 20


class HeifError(ValueError):
    """The HEIF layout is not one this reader handles (the reason is the message)."""


@dataclass(frozen=True)
class HeifImage:
    """The primary picture: its tiles in raster order, the grid, size and rotation."""

    tiles: tuple[tuple[tuple[int, int], ...], ...]  # per tile: its (offset, length) extents
    parameter_sets: tuple[bytes, ...]  # VPS, SPS, PPS NAL units from hvcC
    length_size: int  # bytes of each NAL length prefix in the tile data
    rows: int
    columns: int
    width: int
    height: int
    rotation: int  # counter-clockwise quarter turns (irot)


def is_heif(path: Path) -> bool:
    """An ISO base media file whose ftyp names a HEIF image brand."""
    try:
        with path.open("rb") as f:
            head = f.read(64)
    except OSError:
        return False
    if head[4:8] != b"ftyp":
        return False
    size = min(len(head), int.from_bytes(head[:4], "big"))
    brands = {head[at : at + 4] for at in range(8, size - 3, 4)}
    return bool(brands & HEIF_BRANDS)


def _u(data: bytes, at: int, n: int) -> int:
    return int.from_bytes(data[at : at + n], "big") if n else 0


def _items(meta: bytes, iinf: Box) -> dict[int, bytes]:
    """item id -> item type, from the infe entries (version 2 or 3)."""
    version = meta[iinf.payload]
    skip = 4 + (2 if version == 0 else 4)
    out: dict[int, bytes] = {}
    for infe in mp4box.walk(meta, iinf.payload + skip, iinf.end):
        v = meta[infe.payload]
        if infe.type != b"infe" or v < 2:
            continue
        width = 2 if v == 2 else 4
        item = _u(meta, infe.payload + 4, width)
        out[item] = meta[infe.payload + 4 + width + 2 : infe.payload + 4 + width + 6]
    return out


def _locations(meta: bytes, iloc: Box) -> dict[int, tuple[int, tuple[tuple[int, int], ...]]]:
    """item id -> (construction method, extents as (offset, length)), from iloc."""
    at = iloc.payload
    version = meta[at]
    at += 4
    offset_size, length_size = meta[at] >> 4, meta[at] & 15
    base_size = meta[at + 1] >> 4
    index_size = meta[at + 1] & 15 if version in (1, 2) else 0
    at += 2
    count_width = 2 if version < 2 else 4
    count = _u(meta, at, count_width)
    at += count_width
    out: dict[int, tuple[int, tuple[tuple[int, int], ...]]] = {}
    for _ in range(count):
        item = _u(meta, at, count_width)
        at += count_width
        method = meta[at + 1] & 15 if version in (1, 2) else 0
        at += 2 if version in (1, 2) else 0
        at += 2  # data_reference_index
        base = _u(meta, at, base_size)
        at += base_size
        extents = []
        extent_count = _u(meta, at, 2)
        at += 2
        for _ in range(extent_count):
            at += index_size
            offset = _u(meta, at, offset_size)
            length = _u(meta, at + offset_size, length_size)
            at += offset_size + length_size
            extents.append((base + offset, length))
        out[item] = (method, tuple(extents))
    return out


def _properties(meta: bytes, iprp: Box) -> tuple[list[Box], dict[int, list[int]]]:
    """The ipco property boxes, and item id -> property indexes (1-based) from ipma."""
    ipco = mp4box.child(meta, iprp, b"ipco")
    ipma = mp4box.child(meta, iprp, b"ipma")
    if ipco is None or ipma is None:
        raise HeifError("no item properties (ipco/ipma)")
    boxes = list(mp4box.walk(meta, ipco.payload, ipco.end, fourcc_only=False))
    version, flags = meta[ipma.payload], _u(meta, ipma.payload + 1, 3)
    entries = _u(meta, ipma.payload + 4, 4)
    at = ipma.payload + 8
    assoc: dict[int, list[int]] = {}
    for _ in range(entries):
        width = 2 if version < 1 else 4
        item = _u(meta, at, width)
        at += width
        n = meta[at]
        at += 1
        indexes = []
        for _ in range(n):
            if flags & 1:
                indexes.append(_u(meta, at, 2) & 0x7FFF)
                at += 2
            else:
                indexes.append(meta[at] & 0x7F)
                at += 1
        assoc[item] = indexes
    return boxes, assoc


def _references(meta: bytes, iref: Box | None, kind: bytes) -> dict[int, list[int]]:
    if iref is None:
        return {}
    width = 2 if meta[iref.payload] == 0 else 4
    out: dict[int, list[int]] = {}
    for ref in mp4box.walk(meta, iref.payload + 4, iref.end):
        if ref.type != kind:
            continue
        source = _u(meta, ref.payload, width)
        count = _u(meta, ref.payload + width, 2)
        at = ref.payload + width + 2
        out[source] = [_u(meta, at + i * width, width) for i in range(count)]
    return out


def _hvcc(meta: bytes, box: Box) -> tuple[int, tuple[bytes, ...]]:
    # HEVCDecoderConfigurationRecord: 21 bytes of profile and format fields, then
    # lengthSizeMinusOne in the low bits of byte 21, then the arrays of NAL units.
    length_size = (meta[box.payload + 21] & 3) + 1
    arrays = meta[box.payload + 22]
    at = box.payload + 23
    units: list[bytes] = []
    for _ in range(arrays):
        count = _u(meta, at + 1, 2)  # after array_completeness and the NAL type
        at += 3
        for _ in range(count):
            n = _u(meta, at, 2)
            units.append(bytes(meta[at + 2 : at + 2 + n]))
            at += 2 + n
    return length_size, tuple(units)


def read_heif(path: Path) -> HeifImage:
    """The primary picture's layout; :class:`HeifError` when it is not HEVC tiles."""
    with path.open("rb") as f:
        meta_box = next((b for b in mp4box.walk(f) if b.type == b"meta"), None)
        if meta_box is None or meta_box.size > _MAX_META:
            raise HeifError("no meta box of a plausible size")
        f.seek(meta_box.start)
        meta = f.read(meta_box.size)
        idat_data = _idat(meta)
    root = Box(b"meta", 0, 12, len(meta), len(meta))  # a full box: 4 bytes of version
    try:
        return _layout(meta, root, idat_data)
    except (IndexError, struct.error, KeyError, StopIteration) as exc:
        raise HeifError(f"malformed HEIF item tables: {exc!r}") from exc


def _idat(meta: bytes) -> bytes:
    box = mp4box.child(meta, Box(b"meta", 0, 12, len(meta), len(meta)), b"idat")
    return bytes(meta[box.payload : box.end]) if box is not None else b""


def _layout(meta: bytes, root: Box, idat: bytes) -> HeifImage:
    need = {k: mp4box.child(meta, root, k) for k in (b"pitm", b"iinf", b"iloc", b"iprp")}
    missing = [k.decode() for k, v in need.items() if v is None]
    if missing:
        raise HeifError(f"no {', '.join(missing)} box")
    pitm, iinf, iloc, iprp = (need[k] for k in (b"pitm", b"iinf", b"iloc", b"iprp"))
    assert pitm is not None and iinf is not None and iloc is not None and iprp is not None
    primary = _u(meta, pitm.payload + 4, 2 if meta[pitm.payload] == 0 else 4)
    types = _items(meta, iinf)
    places = _locations(meta, iloc)
    props, assoc = _properties(meta, iprp)

    def prop(item: int, kind: bytes) -> Box | None:
        return next((props[i - 1] for i in assoc.get(item, []) if props[i - 1].type == kind), None)

    rotation = 0
    irot = prop(primary, b"irot")
    if irot is not None:
        rotation = meta[irot.payload] & 3
    kind = types.get(primary)
    if kind == b"grid":
        tiles_ids = _references(meta, mp4box.child(meta, root, b"iref"), b"dimg")[primary]
        method, extents = places[primary]
        grid = idat[extents[0][0] : extents[0][0] + extents[0][1]] if method == 1 else b""
        if len(grid) < 8:
            raise HeifError("the grid item's description is missing")
        wide = 4 if grid[1] & 1 else 2
        rows, columns = grid[2] + 1, grid[3] + 1
        width, height = _u(grid, 4, wide), _u(grid, 4 + wide, wide)
    elif kind == b"hvc1":
        tiles_ids, rows, columns = [primary], 1, 1
        ispe = prop(primary, b"ispe")
        if ispe is None:
            raise HeifError("the image has no size (ispe)")
        width, height = _u(meta, ispe.payload + 4, 4), _u(meta, ispe.payload + 8, 4)
    else:
        raise HeifError(f"the primary image is {kind!r}, not HEVC ('hvc1' or a grid of them)")
    if len(tiles_ids) != rows * columns or any(types.get(t) != b"hvc1" for t in tiles_ids):
        raise HeifError("the grid's tiles are not all HEVC images")
    config = prop(tiles_ids[0], b"hvcC")
    if config is None:
        raise HeifError("the tiles have no decoder configuration (hvcC)")
    length_size, units = _hvcc(meta, config)
    if any(places[t][0] != 0 for t in tiles_ids):
        raise HeifError("tile data outside the file's mdat is not supported")
    return HeifImage(
        tiles=tuple(places[t][1] for t in tiles_ids),
        parameter_sets=units,
        length_size=length_size,
        rows=rows,
        columns=columns,
        width=width,
        height=height,
        rotation=rotation,
    )


def _nal_units(data: bytes, length_size: int) -> Iterator[bytes]:
    at = 0
    while at + length_size <= len(data):
        n = _u(data, at, length_size)
        if n == 0 or at + length_size + n > len(data):
            raise HeifError("a tile's NAL unit runs past its item")
        yield data[at + length_size : at + length_size + n]
        at += length_size + n


def write_tiles(src: BinaryIO, image: HeifImage, out: BinaryIO) -> None:
    """The tiles as one Annex-B HEVC stream: parameter sets, then one frame per tile."""
    for unit in image.parameter_sets:
        out.write(_START_CODE + unit)
    for extents in image.tiles:
        data = b""
        for offset, length in extents:
            src.seek(offset)
            data += src.read(length)
        for unit in _nal_units(data, image.length_size):
            out.write(_START_CODE + unit)
