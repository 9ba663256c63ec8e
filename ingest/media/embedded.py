"""Metadata read from a recording's own bytes where ffprobe does not give it.

ffprobe reads what it can decode; some facts a person relies on are outside that:

* EXIF of a photo (a JPEG's APP1 segment, a HEIF file's ``Exif`` item): the capture
  time the camera wrote (``DateTimeOriginal``, its ``OffsetTimeOriginal`` when present),
  the camera make and model, and the orientation.
* The structure of a HEIF/HEIC photo (an ISO base media file with image items instead of
  tracks), which ffmpeg before 7.1 cannot open at all: its brand, the primary image's
  size and codec, and whether every item's data lies inside the file, so that a valid
  photo this ffmpeg cannot read is told apart from a damaged one.
* The movie header (``mvhd``) creation time of an MP4/MOV as stored: ffmpeg leaves out a
  stored zero (1904-01-01, the QuickTime epoch), which means the recorder never set it.

Only headers are read (at most a few hundred KiB of a file), never the media data; every
reader gives ``None`` or an empty result for anything it does not recognise, and never
raises for malformed bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Final

__all__ = [
    "HEIF_BRANDS",
    "HeifInfo",
    "avi_idit",
    "exif_from_jpeg",
    "exif_from_tiff",
    "file_brand",
    "heif_info",
    "mvhd_creation_time",
]

# ftyp brands of HEIF still images (HEVC-coded "heic", AV1-coded "avif", and the generic
# image brands); "msf1"/"hevc" are HEIF image sequences.
HEIF_BRANDS: Final = frozenset(
    {"heic", "heix", "heim", "heis", "hevc", "hevx", "mif1", "msf1", "avif", "avis"}
)
QUICKTIME_EPOCH: Final = datetime(1904, 1, 1, tzinfo=UTC)
_MAX_HEADER: Final = 1 << 20  # bytes of a file read to find its header boxes or APP1
_MAX_META: Final = 4 << 20  # a HEIF meta box larger than this is not read

# EXIF tags kept, by IFD: 0th IFD, then the Exif sub-IFD (pointer 0x8769).
_IFD0_TAGS: Final = {0x010F: "Make", 0x0110: "Model", 0x0112: "Orientation", 0x0132: "DateTime"}
_EXIF_TAGS: Final = {
    0x9003: "DateTimeOriginal",
    0x9004: "DateTimeDigitized",
    0x9010: "OffsetTime",
    0x9011: "OffsetTimeOriginal",
    0x9291: "SubSecTimeOriginal",
}
_EXIF_POINTER: Final = 0x8769
_TYPE_SIZES: Final = {1: 1, 2: 1, 3: 2, 4: 4, 7: 1}  # BYTE, ASCII, SHORT, LONG, UNDEFINED


# --- EXIF ----------------------------------------------------------------------------


def exif_from_tiff(data: bytes) -> dict[str, Any]:
    """The kept EXIF tags of a TIFF-structured EXIF block ("II*\\0" or "MM\\0*" first)."""
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    if order is None or len(data) < 8:
        return {}
    try:
        if struct.unpack(order + "H", data[2:4])[0] != 42:
            return {}
        ifd0 = _ifd(data, struct.unpack(order + "I", data[4:8])[0], order)
        out = {name: ifd0[tag] for tag, name in _IFD0_TAGS.items() if tag in ifd0}
        pointer = ifd0.get(_EXIF_POINTER)
        if isinstance(pointer, int):
            sub = _ifd(data, pointer, order)
            out.update({name: sub[tag] for tag, name in _EXIF_TAGS.items() if tag in sub})
    except (struct.error, IndexError, ValueError):
        return {}
    return out


def _ifd(data: bytes, offset: int, order: str) -> dict[int, Any]:
    """One IFD's entries of the kinds kept: ASCII as text, SHORT/LONG as their first value."""
    count = struct.unpack(order + "H", data[offset : offset + 2])[0]
    entries: dict[int, Any] = {}
    for i in range(min(count, 512)):
        at = offset + 2 + 12 * i
        tag, kind, n = struct.unpack(order + "HHI", data[at : at + 8])
        size = _TYPE_SIZES.get(kind, 0) * n
        if size == 0:
            continue
        if size <= 4:
            raw = data[at + 8 : at + 8 + size]
        else:
            start = struct.unpack(order + "I", data[at + 8 : at + 12])[0]
            raw = data[start : start + size]
        if len(raw) < size:
            continue  # points past the block: a damaged entry, skipped
        if kind == 2:
            entries[tag] = raw.split(b"\0", 1)[0].decode("ascii", errors="replace").strip()
        elif kind == 3:
            entries[tag] = struct.unpack(order + "H", raw[:2])[0]
        elif kind == 4:
            entries[tag] = struct.unpack(order + "I", raw[:4])[0]
    return entries


def exif_from_jpeg(path: Path) -> dict[str, Any]:
    """The kept EXIF tags of a JPEG file (its APP1 "Exif" segment), or {}."""
    with open(path, "rb") as f:
        head = f.read(_MAX_HEADER)
    if head[:2] != b"\xff\xd8":
        return {}
    at = 2
    while at + 4 <= len(head) and head[at] == 0xFF:
        marker = head[at + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            at += 2
            continue
        if marker == 0xDA:  # start of scan: no metadata segment after it
            break
        length = struct.unpack(">H", head[at + 2 : at + 4])[0]
        segment = head[at + 4 : at + 2 + length]
        if marker == 0xE1 and segment.startswith(b"Exif\0\0"):
            return exif_from_tiff(segment[6:])
        at += 2 + length
    return {}


# --- AVI -----------------------------------------------------------------------------


def avi_idit(path: Path) -> str | None:
    """The text of an AVI's ``IDIT`` chunk ("MON SEP 10 20:52:00 2012"), or None.

    Cameras put it in the header list (``LIST hdrl``) or beside it; ffmpeg reformats it
    into its ``creation_time`` tag, so the chunk itself is read to keep the raw value.
    """
    with open(path, "rb") as f:
        head = f.read(_MAX_HEADER)
    if head[:4] != b"RIFF" or head[8:12] not in (b"AVI ", b"AVIX"):
        return None
    return _riff_find(head, 12, len(head), b"IDIT")


def _riff_find(data: bytes, start: int, end: int, wanted: bytes) -> str | None:
    at = start
    while at + 8 <= end:
        kind = data[at : at + 4]
        size = struct.unpack("<I", data[at + 4 : at + 8])[0]
        body_end = min(at + 8 + size, end)
        if kind == wanted:
            return data[at + 8 : body_end].split(b"\0", 1)[0].decode("latin-1").strip()
        if kind == b"LIST" and data[at + 8 : at + 12] in (b"hdrl", b"INFO"):
            found = _riff_find(data, at + 12, body_end, wanted)
            if found is not None:
                return found
        at += 8 + size + (size & 1)  # chunks are padded to an even size
    return None


# --- ISO base media boxes ------------------------------------------------------------


def _boxes(f: BinaryIO, start: int, end: int) -> Iterator[tuple[str, int, int]]:
    """(type, payload offset, payload end) of the boxes between ``start`` and ``end``."""
    at = start
    while at + 8 <= end:
        f.seek(at)
        header = f.read(16)
        if len(header) < 8:
            return
        size, kind = struct.unpack(">I4s", header[:8])
        body = at + 8
        if size == 1:
            if len(header) < 16:
                return
            size = struct.unpack(">Q", header[8:16])[0]
            body = at + 16
        elif size == 0:
            size = end - at
        if size < body - at:
            return  # a size smaller than its own header: stop, nothing sensible follows
        yield kind.decode("latin-1"), body, at + size
        at += size


def file_brand(path: Path) -> tuple[str, frozenset[str]] | None:
    """The ``ftyp`` major brand and compatible brands of an ISO base media file, or None."""
    with open(path, "rb") as f:
        head = f.read(64)
    if len(head) < 16 or head[4:8] != b"ftyp":
        return None
    size = min(struct.unpack(">I", head[:4])[0], len(head))
    major = head[8:12].decode("latin-1")
    compatible = {head[i : i + 4].decode("latin-1") for i in range(16, size - 3, 4)}
    return major, frozenset(compatible | {major})


def mvhd_creation_time(path: Path) -> datetime | None:
    """The movie header's creation time as stored (aware UTC; 1904-01-01 for zero), or None."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        for kind, body, end in _boxes(f, 0, size):
            if kind != "moov":
                continue
            for child, cbody, _cend in _boxes(f, body, min(end, size)):
                if child != "mvhd":
                    continue
                f.seek(cbody)
                head = f.read(12)
                if len(head) < 12:
                    return None
                seconds = (
                    struct.unpack(">Q", head[4:12])[0]
                    if head[0] == 1
                    else struct.unpack(">I", head[4:8])[0]
                )
                try:
                    return QUICKTIME_EPOCH + timedelta(seconds=seconds)
                except OverflowError:
                    return None
            return None
    return None


@dataclass(frozen=True)
class HeifInfo:
    """What a HEIF file's ``meta`` box says, read without decoding any image."""

    brand: str
    primary_type: str | None = None  # item type of the primary image: "hvc1", "av01", "grid"
    width: int | None = None
    height: int | None = None
    rotation: int | None = None  # degrees anti-clockwise (irot), 0 when none
    exif: dict[str, Any] = field(default_factory=dict)
    problems: tuple[str, ...] = ()  # structure that cannot be right: items beyond the end


def heif_info(path: Path) -> HeifInfo | None:
    """The primary image, EXIF and structural problems of a HEIF file, or None when it is
    not one (no HEIF brand)."""
    brand = file_brand(path)
    if brand is None or not (brand[1] & HEIF_BRANDS):
        return None
    size = path.stat().st_size
    with open(path, "rb") as f:
        meta = next(((b, e) for k, b, e in _boxes(f, 0, size) if k == "meta"), None)
        if meta is None:
            return HeifInfo(brand[0], problems=("no meta box: the image items are missing",))
        body, end = meta
        if end > size:
            return HeifInfo(brand[0], problems=(f"meta box ends at {end}, past the file end",))
        if end - body > _MAX_META:
            return HeifInfo(brand[0], problems=(f"meta box of {end - body} bytes",))
        f.seek(body)
        data = f.read(end - body)
        try:
            return _heif_meta(f, brand[0], data, size)
        except (struct.error, IndexError, ValueError) as exc:
            return HeifInfo(brand[0], problems=(f"meta box cannot be read: {exc}",))


def _children(data: bytes, start: int, end: int) -> Iterator[tuple[str, int, int]]:
    at = start
    while at + 8 <= end:
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        if size < 8:
            return
        yield kind.decode("latin-1"), at + 8, at + size
        at += size


def _heif_meta(f: BinaryIO, brand: str, data: bytes, file_size: int) -> HeifInfo:
    boxes = {kind: (b, e) for kind, b, e in _children(data, 4, len(data))}  # 4: full box
    primary = None
    if "pitm" in boxes:
        b, _e = boxes["pitm"]
        primary = int.from_bytes(data[b + 4 : b + (6 if data[b] == 0 else 8)], "big")
    types = _item_types(data, *boxes["iinf"]) if "iinf" in boxes else {}
    locations = _item_locations(data, *boxes["iloc"]) if "iloc" in boxes else {}
    problems = [
        f"item {item} ({types.get(item, '?')}) data at {start}+{length} lies past the file "
        f"end ({file_size} bytes)"
        for item, extents in sorted(locations.items())
        for start, length in extents
        if start + length > file_size
    ]
    exif: dict[str, Any] = {}
    exif_item = next((i for i, t in types.items() if t == "Exif"), None)
    if exif_item is not None and exif_item in locations and not problems:
        payload = b""
        for start, length in locations[exif_item]:
            f.seek(start)
            payload += f.read(min(length, _MAX_HEADER))
        if len(payload) >= 4:
            skip = struct.unpack(">I", payload[:4])[0]
            exif = exif_from_tiff(payload[4 + skip :])
    width = height = None
    rotation = 0
    if "iprp" in boxes and primary is not None:
        width, height, rotation = _primary_properties(data, *boxes["iprp"], primary)
    return HeifInfo(
        brand=brand,
        primary_type=types.get(primary) if primary is not None else None,
        width=width,
        height=height,
        rotation=rotation,
        exif=exif,
        problems=tuple(problems),
    )


def _item_types(data: bytes, b: int, e: int) -> dict[int, str]:
    version = data[b]
    at = b + 4 + (2 if version == 0 else 4)
    types: dict[int, str] = {}
    for kind, cb, _ce in _children(data, at, e):
        if kind != "infe" or data[cb] < 2:
            continue
        if data[cb] == 2:
            item, kind4 = struct.unpack(">H", data[cb + 4 : cb + 6])[0], data[cb + 8 : cb + 12]
        else:
            item, kind4 = struct.unpack(">I", data[cb + 4 : cb + 8])[0], data[cb + 10 : cb + 14]
        types[item] = kind4.decode("latin-1")
    return types


def _item_locations(data: bytes, b: int, _e: int) -> dict[int, list[tuple[int, int]]]:
    """File extents (offset, length) of each item stored in the file itself (method 0)."""
    version = data[b]
    offset_size, length_size = data[b + 4] >> 4, data[b + 4] & 15
    base_size, index_size = data[b + 5] >> 4, (data[b + 5] & 15 if version in (1, 2) else 0)
    at = b + 6

    def read(n: int) -> int:
        nonlocal at
        value = int.from_bytes(data[at : at + n], "big") if n else 0
        if at + n > len(data):
            raise ValueError("iloc box cut short")
        at += n
        return value

    locations: dict[int, list[tuple[int, int]]] = {}
    for _ in range(read(2 if version < 2 else 4)):
        item = read(2 if version < 2 else 4)
        method = read(2) & 15 if version in (1, 2) else 0
        read(2)  # data_reference_index
        base = read(base_size)
        extents = []
        for _ in range(read(2)):
            read(index_size)
            extents.append((base + read(offset_size), read(length_size)))
        if method == 0:  # 1: inside the idat box, 2: another item; both already read
            locations[item] = extents
    return locations


def _primary_properties(
    data: bytes, b: int, e: int, primary: int
) -> tuple[int | None, int | None, int]:
    """Size (ispe) and rotation (irot) of the primary item, by its property associations."""
    boxes = {kind: (cb, ce) for kind, cb, ce in _children(data, b, e)}
    if "ipco" not in boxes or "ipma" not in boxes:
        return None, None, 0
    properties = list(_children(data, *boxes["ipco"]))
    mb = boxes["ipma"][0]
    version, flags = data[mb], int.from_bytes(data[mb + 1 : mb + 4], "big")
    entries = struct.unpack(">I", data[mb + 4 : mb + 8])[0]
    at = mb + 8
    width = height = None
    rotation = 0
    for _ in range(entries):
        id_size = 2 if version < 1 else 4
        item = int.from_bytes(data[at : at + id_size], "big")
        count = data[at + id_size]
        at += id_size + 1
        indices = []
        for _j in range(count):
            if flags & 1:
                indices.append(struct.unpack(">H", data[at : at + 2])[0] & 0x7FFF)
                at += 2
            else:
                indices.append(data[at] & 0x7F)
                at += 1
        if item != primary:
            continue
        for index in indices:
            if not 1 <= index <= len(properties):
                continue
            kind, pb, _pe = properties[index - 1]
            if kind == "ispe":
                width, height = struct.unpack(">II", data[pb + 4 : pb + 12])
            elif kind == "irot":
                rotation = (data[pb] & 3) * 90
    return width, height, rotation
