"""A quick structural read of an MP4 written by ffmpeg: tracks, codecs, duration, faststart.

Checking a stream-copied output with ffprobe costs a process start (~50 ms here), which
is most of the cost of a remux. ffmpeg has just written this file and exited 0; what we
need to know is that it is a complete MP4 whose index (moov) comes first and that it
holds the tracks and codecs we asked for, for as long as the source lasted. The boxes
say that directly. Anything unexpected returns None and the caller uses ffprobe.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from formats import mp4box

_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}
_CODECS = {
    b"avc1": "h264",
    b"avc3": "h264",
    b"hvc1": "hevc",
    b"hev1": "hevc",
    b"mp4a": "aac",
    b".mp3": "mp3",
    b"mp4v": "mpeg4",
}
_HANDLERS = {b"vide": "video", b"soun": "audio"}
MAX_MOOV = 64 << 20  # an index larger than this is not what ffmpeg writes for our outputs


@dataclass(frozen=True)
class Mp4Summary:
    streams: tuple[tuple[str, str], ...]  # (codec_type, codec_name)
    duration_s: float | None
    moov_first: bool


def _boxes(f: BinaryIO, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, payload offset, payload end) of the boxes in [start, end); a box that runs
    past its parent (the file was cut, or is not what ffmpeg wrote) is an error."""
    out = []
    reached = start
    for box in mp4box.walk(f, start, end, fourcc_only=False):
        if box.cut:
            raise ValueError("box runs past its parent")
        out.append((box.type, box.payload, box.end))
        reached = box.end
    if end - reached >= 8:  # the walk stopped at a header that is not a box
        raise ValueError("malformed box header")
    return out


def summarise(path: Path) -> Mp4Summary | None:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            top = _boxes(f, 0, size)
            kinds = [k for k, _s, _e in top]
            if not kinds or kinds[0] != b"ftyp" or b"moov" not in kinds or b"mdat" not in kinds:
                return None
            moov = next((s, e) for k, s, e in top if k == b"moov")
            if moov[1] - moov[0] > MAX_MOOV:
                return None
            duration = None
            streams: list[tuple[str, str]] = []
            for kind, s, e in _boxes(f, *moov):
                if kind == b"mvhd":
                    duration = _mvhd_duration(f, s)
                elif kind == b"trak":
                    track = _track(f, s, e)
                    if track is not None:
                        streams.append(track)
            return Mp4Summary(tuple(streams), duration, kinds.index(b"moov") < kinds.index(b"mdat"))
    except (OSError, ValueError, struct.error, StopIteration):
        return None


def _mvhd_duration(f: BinaryIO, start: int) -> float | None:
    f.seek(start)
    version = f.read(1)[0]
    if version == 1:
        f.seek(start + 4 + 16)
        timescale, duration = struct.unpack(">IQ", f.read(12))
    else:
        f.seek(start + 4 + 8)
        timescale, duration = struct.unpack(">II", f.read(8))
    return duration / timescale if timescale else None


def _track(f: BinaryIO, start: int, end: int) -> tuple[str, str] | None:
    handler = codec = None
    stack = [(start, end)]
    while stack:
        s, e = stack.pop()
        for kind, cs, ce in _boxes(f, s, e):
            if kind in _CONTAINERS:
                stack.append((cs, ce))
            elif kind == b"hdlr":
                f.seek(cs + 8)
                handler = _HANDLERS.get(f.read(4))
            elif kind == b"stsd":
                f.seek(cs + 8 + 4)  # version/flags, entry count, then the entry's size
                codec = _CODECS.get(f.read(4))
    if handler is None or codec is None:
        return None
    return handler, codec


def jpeg_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of a complete baseline or progressive JPEG, else None.

    Complete: starts with SOI, ends with EOI, and a start-of-frame segment is found
    before the image data.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 20)
            f.seek(-2, 2)
            tail = f.read(2)
    except OSError:
        return None
    if data[:2] != b"\xff\xd8" or tail != b"\xff\xd9":
        return None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in (0xC0, 0xC1, 0xC2) and pos + 9 <= len(data):
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return (width, height) if width and height else None
        if marker == 0xDA:  # image data before any frame header
            return None
        pos += 2 + length
    return None
