"""Is a recording whole? Its container's own structure, checked against the file's size.

ffprobe reads what it can and is silent about what is missing: a phone MP4 cut at 60%
with its index first still probes with its full duration, and a QuickTime file whose
media data lives in another file probes as 41 s of MJPEG. Derivation then fails, or
makes copies shorter than the probe said. The containers say exactly where their data
is, so this module compares that with the bytes present:

* MP4/MOV: a top-level box (``mdat``, ``moov``) that claims more than the file holds;
  no ``moov`` (the index, written last by most recorders); a track whose media data
  is in another file (a QuickTime alias or URL reference); a track whose chunks
  (``stco``/``co64`` offsets, ``stsc`` samples per chunk, ``stsz`` sizes) end past the
  end of the file. A HEIF image (HEIC) has no ``moov`` by design and is not checked
  for one.
* WAV (RIFF/WAVE): no ``data`` chunk, an empty one, or one larger than the file.
* AVI (RIFF/AVI): a ``movi`` list larger than the file, no index (neither ``idx1``
  nor an OpenDML ``indx``), or an ``idx1`` entry that points past the end.
* MPEG-TS/M2TS: the last few MB (where a recording that lost power ends): a packet
  cut short, or a PES packet whose declared length runs past the end of the file.

:func:`damage_reason` returns the reason in plain words (for ``show`` and the custody
event), or None when nothing is wrong or the format is not one it knows. It only reads.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from formats import mp4box
from formats.mp4box import Box
from ingest.media.heif import ftyp_heif_brand

__all__ = ["damage_reason"]

_MP4_FIRST: Final = frozenset({b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"})
_HANDLERS: Final = {b"vide": "video", b"soun": "audio"}
# Space a writer reserved: cut short, it loses nothing of the recording.
_PADDING: Final = frozenset({b"free", b"skip", b"wide"})
_MAX_TABLE_BYTES: Final = 512 << 20  # a moov larger than this is not read into memory
_TS_TAIL_BYTES: Final = 4 << 20


def damage_reason(path: Path) -> str | None:
    """Why the recording at ``path`` is damaged (a sentence), or None."""
    with path.open("rb") as f:
        size = mp4box.file_size(f)
        if size == 0:
            return "the file is empty"
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            head = bytes(data[:12])
            if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
                return _wav_reason(data, rf64=head[:4] == b"RF64")
            if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
                return _avi_reason(data)
            if head[4:8] in _MP4_FIRST:
                return _mp4_reason(data)
            packet = _ts_packet_size(data)
            if packet:
                return _ts_reason(data, packet)
    return None


def _mb(n: int) -> str:
    return f"{n:,} bytes"


# --- MP4 / MOV ----------------------------------------------------------------------


def _mp4_reason(data: mmap.mmap) -> str | None:
    size = len(data)
    top = list(mp4box.walk(data))
    for box in top:
        if box.cut and box.type not in _PADDING:
            what = "media data (mdat)" if box.type == b"mdat" else f"'{box.name}' box"
            return (
                f"cut short: the {what} at byte {box.start:,} claims "
                f"{_mb(box.declared_end - box.start)}, but the file ends after {_mb(size)}"
            )
    kinds = {b.type for b in top}
    moov = next((b for b in top if b.type == b"moov"), None)
    if moov is None:
        ftyp = next((b for b in top if b.type == b"ftyp"), None)
        if ftyp is not None and ftyp_heif_brand(data, ftyp) is not None:
            return None  # an image: its index is the meta box, not a moov
        return "no index (moov box): the recorder stopped before writing it"
    if moov.size > _MAX_TABLE_BYTES or b"mvex" in {
        b.type for b in mp4box.walk(data, moov.payload, moov.end)
    }:
        return None  # fragmented, or too large to vouch for: no claim either way
    for number, trak in enumerate(
        (b for b in mp4box.walk(data, moov.payload, moov.end) if b.type == b"trak"), 1
    ):
        reason = _track_reason(data, trak, size)
        if reason is not None:
            return f"track {number} {reason}"
    if b"mdat" not in kinds and _any_samples(data, moov):
        return "no media data (mdat box): only the index is present"
    return None


def _handler(data: mmap.mmap, trak: Box) -> str:
    hdlr = mp4box.descend(data, trak, b"mdia", b"hdlr")
    if hdlr is None:
        return "(no handler)"
    kind = bytes(data[hdlr.payload + 8 : hdlr.payload + 12])
    return f"({_HANDLERS.get(kind, kind.decode('latin-1'))})"


def _track_reason(data: mmap.mmap, trak: Box, size: int) -> str | None:
    what = _handler(data, trak)
    minf = mp4box.descend(data, trak, b"mdia", b"minf")
    if minf is None:
        return f"{what} has no media information (minf box)"
    dref = mp4box.descend(data, minf, b"dinf", b"dref")
    if dref is not None:
        for entry in mp4box.walk(data, dref.payload + 8, dref.end, fourcc_only=False):
            flags = int.from_bytes(data[entry.payload + 1 : entry.payload + 4], "big")
            if not flags & 1:  # not "self-contained": the samples are in another file
                return f"{what}: its media data is in another file ('{entry.name}' reference)"
    stbl = mp4box.child(data, minf, b"stbl")
    if stbl is None:
        return f"{what} has no sample table (stbl box)"
    sizes = _sample_sizes(data, stbl)
    chunks = _chunk_offsets(data, stbl)
    if sizes is None or chunks is None:
        if sizes:
            missing = "stco/co64" if chunks is None else "stsz"
            return f"{what}: its sample table has no {missing} box"
        return None
    last_end, placed = _last_chunk_end(data, stbl, sizes, chunks)
    if placed < len(sizes):
        return (
            f"{what}: only {placed:,} of its {len(sizes):,} samples are placed in the file "
            "(the chunk table is incomplete: the media data was stripped or never written)"
        )
    if last_end > size:
        return (
            f"{what}: its samples run to byte {last_end:,}, past the end of the file "
            f"at {size:,} (the media data was cut or stripped)"
        )
    return None


def _sample_sizes(data: mmap.mmap, stbl: Box) -> list[int] | None:
    stsz = mp4box.child(data, stbl, b"stsz")
    if stsz is None or stsz.size < 20:
        return None
    uniform, count = struct.unpack_from(">II", data, stsz.payload + 4)
    if uniform:
        return [uniform] * count
    count = min(count, (stsz.end - stsz.payload - 12) // 4)
    return list(struct.unpack_from(f">{count}I", data, stsz.payload + 12))


def _chunk_offsets(data: mmap.mmap, stbl: Box) -> list[int] | None:
    for kind, width in ((b"stco", 4), (b"co64", 8)):
        box = mp4box.child(data, stbl, kind)
        if box is not None and box.size >= 16:
            (count,) = struct.unpack_from(">I", data, box.payload + 4)
            count = min(count, (box.end - box.payload - 8) // width)
            code = "I" if width == 4 else "Q"
            return list(struct.unpack_from(f">{count}{code}", data, box.payload + 8))
    return None


def _samples_per_chunk(data: mmap.mmap, stbl: Box, chunks: int) -> Iterator[int]:
    """Samples in each chunk 1..chunks, from the stsc runs."""
    stsc = mp4box.child(data, stbl, b"stsc")
    runs: list[tuple[int, int]] = []
    if stsc is not None and stsc.size >= 16:
        (count,) = struct.unpack_from(">I", data, stsc.payload + 4)
        count = min(count, (stsc.end - stsc.payload - 8) // 12)
        for i in range(count):
            first, per, _desc = struct.unpack_from(">III", data, stsc.payload + 8 + 12 * i)
            runs.append((first, per))
    if not runs:
        runs = [(1, 1)]
    for i, (first, per) in enumerate(runs):
        last = runs[i + 1][0] - 1 if i + 1 < len(runs) else chunks
        for _ in range(max(0, min(last, chunks) - first + 1)):
            yield per


def _last_chunk_end(
    data: mmap.mmap, stbl: Box, sizes: list[int], chunks: list[int]
) -> tuple[int, int]:
    """The furthest byte any chunk's samples reach, and how many samples the chunks hold."""
    furthest = 0
    sample = 0
    for offset, per in zip(chunks, _samples_per_chunk(data, stbl, len(chunks)), strict=False):
        length = sum(sizes[sample : sample + per])
        sample += per
        if length:
            furthest = max(furthest, offset + length)
    return furthest, min(sample, len(sizes))


def _any_samples(data: mmap.mmap, moov: Box) -> bool:
    for trak in mp4box.walk(data, moov.payload, moov.end):
        stbl = (
            mp4box.descend(data, trak, b"mdia", b"minf", b"stbl") if trak.type == b"trak" else None
        )
        if stbl is not None and _sample_sizes(data, stbl):
            return True
    return False


# --- RIFF: WAV and AVI --------------------------------------------------------------


def _riff_chunks(data: mmap.mmap, start: int, end: int) -> Iterator[tuple[bytes, int, int, int]]:
    """(id, header offset, payload offset, declared payload size) of each chunk."""
    at = start
    while at + 8 <= end:
        ckid, length = struct.unpack_from("<4sI", data, at)
        yield ckid, at, at + 8, length
        at += 8 + length + (length & 1)  # chunks are padded to an even size


def _wav_reason(data: mmap.mmap, *, rf64: bool) -> str | None:
    size = len(data)
    for ckid, _at, payload, length in _riff_chunks(data, 12, size):
        if ckid != b"data":
            continue
        if rf64 and length == 0xFFFFFFFF:
            return None  # the real size is in ds64; RF64 exists for files past 4 GB
        if length == 0:
            return "WAV data chunk holds no audio samples (a header-only file)"
        if payload + length > size:
            return (
                f"cut short: the WAV data chunk claims {_mb(length)} of audio, but only "
                f"{_mb(size - payload)} follow it"
            )
        return None
    return "no WAV data chunk: the file holds no audio samples"


def _avi_reason(data: mmap.mmap) -> str | None:
    size = len(data)
    movi: tuple[int, int] | None = None  # position of the 'movi' fourcc, declared end
    has_idx1 = has_indx = False
    idx1: tuple[int, int] = (0, 0)
    for ckid, _at, payload, length in _riff_chunks(data, 12, size):
        kind = bytes(data[payload : payload + 4]) if ckid == b"LIST" else b""
        if kind == b"movi":
            movi = (payload, payload + length)
        elif kind == b"hdrl":
            has_indx = data.find(b"indx", payload, min(size, payload + length)) >= 0
        elif ckid == b"idx1":
            has_idx1, idx1 = True, (payload, min(size, payload + length))
    if movi is None:
        return "no AVI movi list: the file holds no frames"
    if movi[1] > size:
        return (
            f"cut short: the AVI movi list claims {_mb(movi[1] - movi[0])}, but the file "
            f"ends after {_mb(size)}"
        )
    if not has_idx1:
        return None if has_indx else "no AVI index (idx1): the recorder stopped before writing it"
    return _idx1_reason(data, idx1, movi[0], size)


def _idx1_reason(data: mmap.mmap, idx1: tuple[int, int], movi: int, size: int) -> str | None:
    start, end = idx1
    count = (end - start) // 16
    if count == 0:
        return None if _has_frames(data, movi) else "the AVI index (idx1) is empty"
    first_offset = struct.unpack_from("<I", data, start + 8)[0]
    # Offsets count from the 'movi' fourcc (the standard) or, from some writers, from the
    # start of the file: the first entry tells which.
    base = 0 if first_offset >= movi else movi
    furthest = 0
    for i in range(count):
        _ckid, _flags, offset, length = struct.unpack_from("<4sIII", data, start + 16 * i)
        furthest = max(furthest, base + offset + 8 + length)
    if furthest > size:
        return (
            f"the AVI index (idx1) points to byte {furthest:,}, past the end of the file "
            f"at {size:,} (the file was cut)"
        )
    return None


def _has_frames(data: mmap.mmap, movi: int) -> bool:
    return data.find(b"dc", movi, min(len(data), movi + (1 << 20))) >= 0


# --- MPEG-TS ------------------------------------------------------------------------


def _ts_packet_size(data: mmap.mmap) -> int:
    """188 (TS) or 192 (M2TS, a 4-byte timestamp first) when the sync bytes line up."""
    for packet, sync in ((188, 0), (192, 4)):
        count = min(5, len(data) // packet)
        if count and all(data[i * packet + sync] == 0x47 for i in range(count)):
            return packet
    return 0


def _ts_reason(data: mmap.mmap, packet: int) -> str | None:
    size = len(data)
    sync = packet - 188
    if size % packet:
        return (
            f"cut short: the last transport packet is incomplete "
            f"({size % packet} of {packet} bytes)"
        )
    start = max(0, size - _TS_TAIL_BYTES) // packet * packet
    open_pes: dict[int, tuple[int, int]] = {}  # pid -> (declared bytes, bytes seen)
    for at in range(start, size, packet):
        p = at + sync
        if data[p] != 0x47:
            return f"transport packet at byte {at:,} has lost its sync byte"
        pid = (data[p + 1] & 0x1F) << 8 | data[p + 2]
        unit_start = data[p + 1] & 0x40
        control = data[p + 3] >> 4 & 0x3
        body = p + 4
        if control & 0x2:
            body += 1 + data[p + 4]
        if not control & 0x1 or body >= p + 188:
            continue
        payload = p + 188 - body
        if unit_start:
            if bytes(data[body : body + 3]) == b"\x00\x00\x01":
                declared = int.from_bytes(data[body + 4 : body + 6], "big")
                open_pes[pid] = (declared + 6 if declared else 0, payload)
            else:
                open_pes.pop(pid, None)
        elif pid in open_pes:
            declared, seen = open_pes[pid]
            open_pes[pid] = (declared, seen + payload)
    for pid, (declared, seen) in sorted(open_pes.items()):
        if declared and seen < declared:
            return (
                f"cut short: the last PES packet of stream PID 0x{pid:04x} declares "
                f"{_mb(declared)} but only {_mb(seen)} are present"
            )
    return None
