"""HEIF (HEIC) photos: the one reader of their item tables.

A HEIF file is an ISO base media file with image *items* instead of tracks: ``pitm``
names the primary item, ``iinf`` each item's type, ``iloc`` where its bytes are,
``ipco``/``ipma`` its properties (size ``ispe``, rotation ``irot``, decoder configuration
``hvcC``), ``iref`` how items refer to each other (a ``grid``'s tiles, by ``dimg``) and
``idat`` small items kept inside the ``meta`` box (ISO/IEC 23008-12). An iPhone HEIC is
a grid of 512x512 tiles, each an HEVC intra frame; the last row and column are cropped
to the picture's size. Its EXIF is an ``Exif`` item.

Two readers use these tables, both here so that the tables are read one way only:

* :func:`heif_info`, for the probe: the brand, the primary image's type, size and
  rotation, its EXIF, and structural problems (items whose data lies past the end of the
  file: a photo cut short is damaged, not unsupported). Never raises on malformed bytes.
* :func:`read_heif` and :func:`write_tiles`, for the photo copies: ffmpeg before 6.1 has
  no HEIF demuxer, but it has the HEVC decoder, so the tiles are written as one raw
  HEVC stream (parameter sets, then each tile as a frame), which ffmpeg decodes and its
  ``tile`` filter puts back together. :func:`decodable` says whether that works for a
  file (the primary image is HEVC, alone or as a grid of HEVC tiles).

Boxes are walked with :mod:`formats.mp4box`; the original is only read.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Final

from formats import mp4box
from formats.mp4box import Box
from ingest.media.embedded import exif_from_tiff

__all__ = [
    "HEIF_BRANDS",
    "HeifError",
    "HeifImage",
    "HeifInfo",
    "decodable",
    "ftyp_heif_brand",
    "heif_brand",
    "heif_info",
    "is_heif",
    "read_heif",
    "write_tiles",
]

# ftyp brands of HEIF images: HEVC-coded ("heic" ...), AV1-coded ("avif", "avis") and
# the generic image brands; "msf1"/"hevc" are HEIF image sequences.
HEIF_BRANDS: Final = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis"}
)
_START_CODE: Final = b"\x00\x00\x00\x01"
_MAX_META: Final = 16 << 20  # a meta box larger than this is not read
_MAX_EXIF: Final = 1 << 20


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


@dataclass(frozen=True)
class HeifInfo:
    """What a HEIF file's ``meta`` box says, read without decoding any image."""

    brand: str
    primary_type: str | None = None  # item type of the primary image: "hvc1", "av01", "grid"
    width: int | None = None
    height: int | None = None
    rotation: int = 0  # degrees anti-clockwise (irot)
    exif: dict[str, Any] = field(default_factory=dict)
    problems: tuple[str, ...] = ()  # structure that cannot be right: items beyond the end


# More than any real ftyp box (a few dozen brands): the bound on what heif_brand reads.
_FTYP_MAX: Final = 4096


def ftyp_heif_brand(data: bytes | mmap.mmap, ftyp: Box) -> str | None:
    """The major brand of an ``ftyp`` box whose brands (the major one or any compatible
    one) name a HEIF image, else None: the one test of "is this a HEIF image"."""
    major = bytes(data[ftyp.payload : ftyp.payload + 4])
    # After the major brand comes the minor version (not a brand), then the compatibles.
    compatible = range(ftyp.payload + 8, ftyp.end - 3, 4)
    brands = {major} | {bytes(data[at : at + 4]) for at in compatible}
    if len(major) < 4 or not brands & HEIF_BRANDS:
        return None
    return major.decode("latin-1")


def heif_brand(path: Path) -> str | None:
    """The ``ftyp`` major brand of a file whose brands name a HEIF image, else None."""
    try:
        with path.open("rb") as f:
            head = f.read(_FTYP_MAX)
    except OSError:
        return None
    ftyp = next(mp4box.walk(head), None)
    if ftyp is None or ftyp.start != 0 or ftyp.type != b"ftyp":
        return None
    return ftyp_heif_brand(head, ftyp)


def is_heif(path: Path) -> bool:
    """An ISO base media file whose ftyp names a HEIF image brand."""
    return heif_brand(path) is not None


def _u(data: bytes, at: int, n: int) -> int:
    if at + n > len(data):
        raise IndexError(f"a field at {at} runs past its box")
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


@dataclass(frozen=True)
class _Tables:
    """The item tables of a ``meta`` box (``meta``: its bytes, from its header on)."""

    meta: bytes
    root: Box
    primary: int
    types: dict[int, bytes]
    places: dict[int, tuple[int, tuple[tuple[int, int], ...]]]
    props: list[Box]
    assoc: dict[int, list[int]]

    def prop(self, item: int, kind: bytes) -> Box | None:
        found = (self.props[i - 1] for i in self.assoc.get(item, []) if 0 < i <= len(self.props))
        return next((b for b in found if b.type == kind), None)

    def idat(self) -> bytes:
        box = mp4box.child(self.meta, self.root, b"idat")
        return bytes(self.meta[box.payload : box.end]) if box is not None else b""

    def item_bytes(self, f: BinaryIO, item: int, limit: int) -> bytes:
        """An item's data (from the file, or from ``idat``), at most ``limit`` bytes."""
        method, extents = self.places[item]
        source = self.idat() if method == 1 else None
        data = b""
        for offset, length in extents:
            n = min(length, limit - len(data))
            if source is not None:
                data += source[offset : offset + n]
            else:
                f.seek(offset)
                data += f.read(n)
        return data


def _meta_bytes(f: BinaryIO) -> bytes:
    meta_box = next((b for b in mp4box.walk(f) if b.type == b"meta"), None)
    if meta_box is None:
        raise HeifError("no meta box: the image items are missing")
    if meta_box.cut:
        raise HeifError(f"the meta box ends at {meta_box.declared_end}, past the file end")
    if meta_box.size > _MAX_META:
        raise HeifError(f"a meta box of {meta_box.size} bytes")
    f.seek(meta_box.start)
    return f.read(meta_box.size)


def _tables(f: BinaryIO) -> _Tables:
    """The item tables of the file's ``meta`` box; :class:`HeifError` when unreadable."""
    meta = _meta_bytes(f)
    header = 8 if _u(meta, 0, 4) != 1 else 16
    root = Box(b"meta", 0, header + 4, len(meta), len(meta))  # a full box: version, flags
    try:
        need = {k: mp4box.child(meta, root, k) for k in (b"pitm", b"iinf", b"iloc", b"iprp")}
        missing = [k.decode() for k, v in need.items() if v is None]
        if missing:
            raise HeifError(f"no {', '.join(missing)} box")
        pitm, iinf, iloc, iprp = (need[k] for k in (b"pitm", b"iinf", b"iloc", b"iprp"))
        assert pitm is not None and iinf is not None and iloc is not None and iprp is not None
        props, assoc = _properties(meta, iprp)
        return _Tables(
            meta=meta,
            root=root,
            primary=_u(meta, pitm.payload + 4, 2 if meta[pitm.payload] == 0 else 4),
            types=_items(meta, iinf),
            places=_locations(meta, iloc),
            props=props,
            assoc=assoc,
        )
    except (IndexError, struct.error) as exc:
        raise HeifError(f"malformed HEIF item tables: {exc}") from exc


def read_heif(path: Path) -> HeifImage:
    """The primary picture's layout; :class:`HeifError` when it is not HEVC tiles."""
    with path.open("rb") as f:
        tables = _tables(f)
    try:
        return _layout(tables)
    except (IndexError, struct.error, KeyError, StopIteration) as exc:
        raise HeifError(f"malformed HEIF item tables: {exc!r}") from exc


def decodable(path: Path) -> str | None:
    """None when the photo's primary image can be decoded here from its HEVC tiles, else
    why not (an AV1 image, a layout this reader does not handle)."""
    try:
        read_heif(path)
    except (HeifError, OSError) as exc:
        return str(exc)
    return None


def _grid(tables: _Tables) -> tuple[list[int], int, int, int, int]:
    """A grid item's tiles, rows, columns, width and height."""
    meta, primary = tables.meta, tables.primary
    tiles = _references(meta, mp4box.child(meta, tables.root, b"iref"), b"dimg")[primary]
    method, extents = tables.places[primary]
    idat = tables.idat()
    grid = idat[extents[0][0] : extents[0][0] + extents[0][1]] if method == 1 else b""
    if len(grid) < 8:
        raise HeifError("the grid item's description is missing")
    wide = 4 if grid[1] & 1 else 2
    rows, columns = grid[2] + 1, grid[3] + 1
    return tiles, rows, columns, _u(grid, 4, wide), _u(grid, 4 + wide, wide)


def _layout(tables: _Tables) -> HeifImage:
    meta, primary, types, places = tables.meta, tables.primary, tables.types, tables.places
    irot = tables.prop(primary, b"irot")
    rotation = meta[irot.payload] & 3 if irot is not None else 0
    kind = types.get(primary)
    if kind == b"grid":
        tiles_ids, rows, columns, width, height = _grid(tables)
    elif kind == b"hvc1":
        tiles_ids, rows, columns = [primary], 1, 1
        ispe = tables.prop(primary, b"ispe")
        if ispe is None:
            raise HeifError("the image has no size (ispe)")
        width, height = _u(meta, ispe.payload + 4, 4), _u(meta, ispe.payload + 8, 4)
    else:
        raise HeifError(f"the primary image is {kind!r}, not HEVC ('hvc1' or a grid of them)")
    if len(tiles_ids) != rows * columns or any(types.get(t) != b"hvc1" for t in tiles_ids):
        raise HeifError("the grid's tiles are not all HEVC images")
    config = tables.prop(tiles_ids[0], b"hvcC")
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


def heif_info(path: Path) -> HeifInfo | None:
    """The primary image, EXIF and structural problems of a HEIF file, or None when it is
    not one (no HEIF brand). Never raises for malformed bytes: they are its problems."""
    brand = heif_brand(path)
    if brand is None:
        return None
    size = path.stat().st_size
    with path.open("rb") as f:
        try:
            tables = _tables(f)
        except HeifError as exc:
            return HeifInfo(brand, problems=(str(exc),))
        problems = tuple(
            f"item {item} ({tables.types.get(item, b'?').decode('latin-1')}) data at "
            f"{start}+{length} lies past the file end ({size} bytes)"
            for item, (method, extents) in sorted(tables.places.items())
            if method == 0
            for start, length in extents
            if start + length > size
        )
        try:
            exif = {} if problems else _exif(f, tables)
            width, height = _size(tables)
        except (HeifError, IndexError, KeyError, struct.error) as exc:
            return HeifInfo(brand, problems=(*problems, f"malformed HEIF item tables: {exc}"))
    irot = tables.prop(tables.primary, b"irot")
    kind = tables.types.get(tables.primary)
    return HeifInfo(
        brand=brand,
        primary_type=kind.decode("latin-1") if kind is not None else None,
        width=width,
        height=height,
        rotation=(tables.meta[irot.payload] & 3) * 90 if irot is not None else 0,
        exif=exif,
        problems=problems,
    )


def _size(tables: _Tables) -> tuple[int | None, int | None]:
    """The primary image's size: a grid's output size, else its ``ispe``."""
    if tables.types.get(tables.primary) == b"grid":
        _tiles, _rows, _columns, width, height = _grid(tables)
        return width, height
    ispe = tables.prop(tables.primary, b"ispe")
    if ispe is None:
        return None, None
    return _u(tables.meta, ispe.payload + 4, 4), _u(tables.meta, ispe.payload + 8, 4)


def _exif(f: BinaryIO, tables: _Tables) -> dict[str, Any]:
    """The kept EXIF tags of the ``Exif`` item (after its 4-byte header offset)."""
    item = next((i for i, t in tables.types.items() if t == b"Exif"), None)
    if item is None or item not in tables.places:
        return {}
    payload = tables.item_bytes(f, item, _MAX_EXIF)
    if len(payload) < 4:
        return {}
    skip = struct.unpack(">I", payload[:4])[0]
    return exif_from_tiff(payload[4 + skip :])


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
