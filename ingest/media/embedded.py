"""Metadata read from a recording's own bytes where ffprobe does not give it.

ffprobe reads what it can decode; some facts a person relies on are outside that:

* EXIF of a photo (a JPEG's APP1 segment; a HEIF file's ``Exif`` item is found by
  :mod:`ingest.media.heif` and read here): the capture time the camera wrote
  (``DateTimeOriginal``, its ``OffsetTimeOriginal`` when present), the camera make and
  model, and the orientation.
* The movie header (``mvhd``) creation time of an MP4/MOV as stored: ffmpeg leaves out a
  stored zero (1904-01-01, the QuickTime epoch), which means the recorder never set it.

Only headers are read (at most a few hundred KiB of a file), never the media data; every
reader gives ``None`` or an empty result for anything it does not recognise, and never
raises for malformed bytes.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from formats import mp4box

__all__ = [
    "avi_idit",
    "exif_from_jpeg",
    "exif_from_tiff",
    "mvhd_creation_time",
]

QUICKTIME_EPOCH: Final = datetime(1904, 1, 1, tzinfo=UTC)
_MAX_HEADER: Final = 1 << 20  # bytes of a file read to find its header boxes or APP1

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


def mvhd_creation_time(path: Path) -> datetime | None:
    """The movie header's creation time as stored (aware UTC; 1904-01-01 for zero), or None."""
    with open(path, "rb") as f:
        moov = next((b for b in mp4box.walk(f) if b.type == b"moov"), None)
        mvhd = mp4box.child(f, moov, b"mvhd") if moov is not None else None
        if mvhd is None:
            return None
        head = mp4box.read(f, mvhd.payload, 12)
    if len(head) < 12:
        return None
    wide = head[0] == 1  # version 1: 64-bit times
    seconds = struct.unpack(">Q", head[4:12])[0] if wide else struct.unpack(">I", head[4:8])[0]
    try:
        return QUICKTIME_EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        return None
