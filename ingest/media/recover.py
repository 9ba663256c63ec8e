"""Best-effort salvage of a truncated MP4: the recorder lost power before writing ``moov``.

Without its ``moov`` atom an MP4 has no index: no codec configuration, no sample sizes,
no timestamps, so no player opens it. The samples themselves are still in ``mdat``. This
module does what the ``untrunc`` tool does, for H.264 video only:

1. From a *healthy reference* MP4 recorded by the same device with the same settings,
   read the H.264 codec configuration (``avcC``: NAL length size, SPS and PPS) and the
   frame rate (``mdhd`` timescale over the commonest ``stts`` delta).
2. Find every position of the truncated file's ``mdat`` payload that holds a plausible
   length-prefixed NAL unit (4-byte big-endian length per ``lengthSizeMinusOne``;
   forbidden_zero_bit 0; a type with a consistent nal_ref_idc; a length that fits and
   is at most 4x the reference's largest frame; and a body that parses for its type: a
   slice header agreeing with the reference's SPS/PPS, a well-formed SEI, ...). Audio
   samples are interleaved with the video and now and then look like a NAL unit, so
   the units kept are the chain of non-overlapping candidates with the most units and,
   among those, the fewest bytes skipped between them (real units follow one another
   with only audio chunks between them; a false one ends inside real data). The bytes
   after the last whole unit (the cut-off one) are dropped.
3. Write an Annex-B elementary stream (start codes; the reference's SPS/PPS first) and
   let ffmpeg mux it (stream copy) into a fast-start MP4 at the reference frame rate.
4. Check the result: ffprobe opens it as H.264 and ffmpeg decodes at least one frame.

The output is *not* the original and says so: title ``[RECOVERED] <stem>`` and comment
``RECOVERED from truncated original <name> sha256:<hex>; not the original``. Audio is
not recovered (its samples are skipped). Timestamps are regenerated at the reference
frame rate, so a variable-rate recording plays at the wrong pace, and with B-frames the
last frame or two may not decode (a raw stream carries no presentation times). The
truncated original is only ever opened for reading (``mmap`` with ``ACCESS_READ``).

:func:`recover_truncated_mp4` returns ``None`` (and logs why) when nothing can be
salvaged: no reference, a reference that is not H.264, no ``mdat``, no plausible NAL
units, or nothing ffmpeg can decode. A missing ffmpeg or a timeout still raises.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import math
import mmap
import os
import secrets
import struct
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Final

from formats import mp4box
from formats.mp4box import Box
from ingest.media.derive import (
    STDERR_TAIL_BYTES,
    TIMEOUTS,
    Derivation,
    DerivationError,
    FfmpegMissingError,
    FfmpegRun,
    OutputProbe,
    ffmpeg_version,
    probe_output,
    run_ffmpeg,
)
from storage import fsync_dir

__all__ = [
    "RECOVERED_COMMENT_PREFIX",
    "RECOVERED_TITLE_PREFIX",
    "ReferenceCandidate",
    "ReferenceChoice",
    "ReferenceFit",
    "choose_reference",
    "recover_truncated_mp4",
]

log = logging.getLogger(__name__)

RECOVERED_TITLE_PREFIX: Final = "[RECOVERED]"
RECOVERED_COMMENT_PREFIX: Final = "RECOVERED from truncated original"

_START_CODE: Final = b"\x00\x00\x00\x01"
_MAX_MOOV_BYTES: Final = 256 << 20  # a reference's moov is KB to a few MB
# NAL types that never have nal_ref_idc != 0 (SEI, AUD, end of sequence/stream, filler).
_UNREFERENCED_TYPES: Final = frozenset({6, 9, 10, 11, 12})
_SLICE_TYPES: Final = frozenset({1, 5})
_CHUNK: Final = 1 << 20
_VISUAL_SAMPLE_ENTRY_FIELDS: Final = 78  # bytes before a visual sample entry's child boxes


# --- boxes --------------------------------------------------------------------------


def _boxes(data: bytes, start: int, end: int) -> Iterator[Box]:
    """Boxes in ``data[start:end]`` (ends clamped; the walk stops at a non-box header)."""
    return mp4box.walk(data, start, end)


def _top_level(f: BinaryIO, file_size: int) -> Iterator[Box]:
    """Top-level boxes of a file, read header by header (a truncated ``mdat`` usually
    claims more bytes than the file has: its end is clamped to the file size)."""
    return mp4box.walk(f, 0, file_size)


def _child(data: bytes, box: Box, kind: bytes, skip: int = 0) -> Box | None:
    return mp4box.child(data, box, kind, skip=skip)


@dataclass(frozen=True)
class _AvcConfig:
    length_size: int
    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]
    frame_rate: Fraction
    width: int
    height: int
    rules: _SliceRules | None  # None: the SPS did not parse; NAL checks are looser
    largest_sample: int  # the reference's largest video sample (access unit), bytes


class _NotSalvageable(Exception):
    """A reason why nothing can be recovered (logged, then ``None`` is returned)."""


def _read_moov(path: Path) -> bytes:
    size = path.stat().st_size
    with path.open("rb") as f:
        for box in _top_level(f, size):
            if box.type == b"moov":
                if box.end - box.start > _MAX_MOOV_BYTES:
                    raise _NotSalvageable(f"reference {path.name}: moov is implausibly large")
                f.seek(box.start)
                return f.read(box.end - box.start)
    raise _NotSalvageable(f"reference {path.name} has no moov atom (is it truncated too?)")


def _parse_avcc(data: bytes, box: Box) -> tuple[int, tuple[bytes, ...], tuple[bytes, ...]]:
    at = box.payload
    if box.end - at < 7 or data[at] != 1:
        raise _NotSalvageable("the reference's avcC box is malformed")
    length_size = (data[at + 4] & 0x03) + 1
    if length_size == 3:
        raise _NotSalvageable("the reference's avcC declares a 3-byte NAL length (invalid)")
    at += 5
    sets: list[tuple[bytes, ...]] = []
    for mask in (0x1F, 0xFF):  # SPS count is 5 bits, PPS count 8 bits
        if at >= box.end:
            raise _NotSalvageable("the reference's avcC box is cut short")
        count = data[at] & mask
        at += 1
        items: list[bytes] = []
        for _ in range(count):
            if at + 2 > box.end:
                raise _NotSalvageable("the reference's avcC box is cut short")
            (n,) = struct.unpack_from(">H", data, at)
            if at + 2 + n > box.end:
                raise _NotSalvageable("the reference's avcC box is cut short")
            items.append(bytes(data[at + 2 : at + 2 + n]))
            at += 2 + n
        sets.append(tuple(items))
    sps, pps = sets
    if not sps or not pps:
        raise _NotSalvageable("the reference's avcC holds no SPS or no PPS")
    return length_size, sps, pps


def _frame_rate(data: bytes, mdia: Box, stbl: Box) -> Fraction:
    mdhd = _child(data, mdia, b"mdhd")
    stts = _child(data, stbl, b"stts")
    if mdhd is None or stts is None:
        raise _NotSalvageable("the reference's video track has no mdhd or stts")
    version = data[mdhd.payload]
    timescale_at = mdhd.payload + (20 if version == 1 else 12)
    (timescale,) = struct.unpack_from(">I", data, timescale_at)
    (entries,) = struct.unpack_from(">I", data, stts.payload + 4)
    deltas: Counter[int] = Counter()
    at = stts.payload + 8
    for _ in range(entries):
        if at + 8 > stts.end:
            break
        count, delta = struct.unpack_from(">II", data, at)
        deltas[delta] += count
        at += 8
    if not timescale or not deltas:
        raise _NotSalvageable("the reference's video track has no usable timing")
    delta = deltas.most_common(1)[0][0]
    if delta <= 0:
        raise _NotSalvageable("the reference's video track has no usable timing")
    return Fraction(timescale, delta)


def _largest_sample(data: bytes, stbl: Box) -> int:
    stsz = _child(data, stbl, b"stsz")
    if stsz is None or stsz.end - stsz.payload < 12:
        return 0
    uniform, count = struct.unpack_from(">II", data, stsz.payload + 4)
    if uniform:
        return int(uniform)
    count = min(count, (stsz.end - stsz.payload - 12) // 4)
    sizes = struct.unpack_from(f">{count}I", data, stsz.payload + 12)
    return max(sizes, default=0)


def _reference_config(reference: Path) -> _AvcConfig:
    data = _read_moov(reference)
    moov = next(mp4box.walk(data), None)
    if moov is None or moov.type != b"moov":
        raise _NotSalvageable(f"reference {reference.name}: moov is malformed")
    seen: list[str] = []
    for trak in (b for b in _boxes(data, moov.payload, moov.end) if b.type == b"trak"):
        mdia = _child(data, trak, b"mdia")
        hdlr = _child(data, mdia, b"hdlr") if mdia else None
        if mdia is None or hdlr is None or data[hdlr.payload + 8 : hdlr.payload + 12] != b"vide":
            continue
        minf = _child(data, mdia, b"minf")
        stbl = _child(data, minf, b"stbl") if minf else None
        stsd = _child(data, stbl, b"stsd") if stbl else None
        if stbl is None or stsd is None:
            continue
        # stsd is a full box (4 bytes) with an entry count (4 bytes) before its entries.
        for entry in _boxes(data, stsd.payload + 8, stsd.end):
            seen.append(entry.type.decode("ascii", "replace"))
            if entry.type not in (b"avc1", b"avc3"):
                continue
            width, height = struct.unpack_from(">HH", data, entry.payload + 24)
            avcc = _child(data, entry, b"avcC", skip=_VISUAL_SAMPLE_ENTRY_FIELDS)
            if avcc is None:
                raise _NotSalvageable(f"reference {reference.name}: avc1 without an avcC box")
            length_size, sps, pps = _parse_avcc(data, avcc)
            fps = _frame_rate(data, mdia, stbl)
            try:
                rules: _SliceRules | None = _slice_rules(sps[0], pps)
            except ValueError:
                log.warning("reference %s: SPS not parsed; slice checks are off", reference.name)
                rules = None
            largest = _largest_sample(data, stbl)
            return _AvcConfig(length_size, sps, pps, fps, width, height, rules, largest)
    what = ", ".join(seen) or "no video track"
    raise _NotSalvageable(
        f"reference {reference.name} is not H.264 ({what}); only H.264 can be salvaged"
    )


# --- H.264 syntax, just enough to tell a NAL unit from audio bytes --------------------


def _unescape(data: bytes) -> bytes:
    """RBSP from a NAL payload: drop the emulation-prevention 0x03 of each 00 00 03."""
    return data.replace(b"\x00\x00\x03", b"\x00\x00") if b"\x00\x00\x03" in data else data


class _Bits:
    """An MSB-first bit reader with Exp-Golomb codes; raises ``ValueError`` past the end."""

    def __init__(self, data: bytes) -> None:
        self._value = int.from_bytes(data, "big")
        self._left = len(data) * 8

    def u(self, n: int) -> int:
        if n > self._left:
            raise ValueError("read past the end")
        self._left -= n
        return self._value >> self._left & ((1 << n) - 1)

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("Exp-Golomb code too long")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k % 2 else -(k // 2)


_EXTENDED_PROFILE: Final = 88
_HIGH_PROFILES: Final = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


@dataclass(frozen=True)
class _SliceRules:
    """What every slice header of the stream must agree with (from the reference)."""

    profile_idc: int
    pic_size_in_mbs: int
    log2_max_frame_num: int
    separate_colour_plane: bool
    pps_ids: frozenset[int]
    # What the SPS itself displays: the coded size less its cropping (H.264 7.4.2.1.1).
    width: int = 0
    height: int = 0
    crop_unit: tuple[int, int] = (2, 2)  # (x, y) luma samples per cropping unit
    cropped: bool = False


def _slice_rules(sps: bytes, pps: tuple[bytes, ...]) -> _SliceRules:
    """Parse the fields of the SPS (H.264 7.3.2.1.1) that a slice header depends on."""
    r = _Bits(_unescape(sps[1:]))
    profile_idc = r.u(8)
    r.u(16)  # constraint flags, level_idc
    r.ue()  # seq_parameter_set_id
    separate = False
    chroma_format_idc = 1  # 4:2:0 unless a High profile says otherwise
    if profile_idc in _HIGH_PROFILES:
        chroma_format_idc = r.ue()
        if chroma_format_idc == 3:
            separate = bool(r.u(1))
        r.ue()  # bit_depth_luma_minus8
        r.ue()  # bit_depth_chroma_minus8
        r.u(1)  # qpprime_y_zero_transform_bypass_flag
        if r.u(1):  # seq_scaling_matrix_present_flag
            for i in range(12 if chroma_format_idc == 3 else 8):
                if r.u(1):
                    last = nxt = 8
                    for _ in range(16 if i < 6 else 64):
                        if nxt:
                            nxt = (last + r.se() + 256) % 256
                        last = nxt or last
    log2_max_frame_num = r.ue() + 4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()
    elif poc_type == 1:
        r.u(1)
        r.se()
        r.se()
        for _ in range(r.ue()):
            r.se()
    r.ue()  # max_num_ref_frames
    r.u(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue() + 1
    height_map_units = r.ue() + 1
    frame_mbs_only = r.u(1)
    if not frame_mbs_only:
        r.u(1)  # mb_adaptive_frame_field_flag
    r.u(1)  # direct_8x8_inference_flag
    crop = (r.ue(), r.ue(), r.ue(), r.ue()) if r.u(1) else (0, 0, 0, 0)  # l, r, t, b
    pps_ids = frozenset(_Bits(_unescape(p[1:])).ue() for p in pps)
    if log2_max_frame_num > 16 or not pps_ids:
        raise ValueError("implausible SPS")
    chroma = 0 if separate else chroma_format_idc
    unit_x = 1 if chroma in (0, 3) else 2
    unit_y = (2 - frame_mbs_only) * (2 if chroma == 1 else 1)
    return _SliceRules(
        profile_idc=profile_idc,
        pic_size_in_mbs=width_mbs * height_map_units * (2 - frame_mbs_only),
        log2_max_frame_num=log2_max_frame_num,
        separate_colour_plane=separate,
        pps_ids=pps_ids,
        width=width_mbs * 16 - unit_x * (crop[0] + crop[1]),
        height=height_map_units * 16 * (2 - frame_mbs_only) - unit_y * (crop[2] + crop[3]),
        crop_unit=(unit_x, unit_y),
        cropped=any(crop),
    )


def _crop_filter(config: _AvcConfig) -> list[str]:
    """A bitstream filter that crops the SPS's picture to the reference's display size.

    Some recorders (GoPro) code 864x480 without SPS cropping and give the real 854x480
    only in the MP4 sample entry, which a raw stream loses; without this the salvaged
    copy would be 864 wide, with 10 columns of padding the camera never showed. The
    crop is written into the SPS (the standard way to say it), only when the SPS crops
    nothing and the reference is smaller by whole cropping units.
    """
    rules = config.rules
    if rules is None or rules.cropped:
        return []
    right, bottom = rules.width - config.width, rules.height - config.height
    unit_x, unit_y = rules.crop_unit
    if (right, bottom) == (0, 0) or right < 0 or bottom < 0 or right % unit_x or bottom % unit_y:
        return []
    return ["-bsf:v", f"h264_metadata=crop_right={right}:crop_bottom={bottom}"]


def _sei_well_formed(rbsp: bytes) -> bool:
    """SEI messages (type, size, payload) that end exactly at the RBSP stop bit."""
    at = 0
    while at < len(rbsp) - 1 or (at == len(rbsp) - 1 and rbsp[at] != 0x80):
        for _ in range(2):  # payloadType, then payloadSize: 0xFF bytes plus a last byte
            value = 0
            while at < len(rbsp) and rbsp[at] == 0xFF:
                value += 255
                at += 1
            if at >= len(rbsp):
                return False
            value += rbsp[at]
            at += 1
        at += value  # the payload (its size is the last value read)
    return at == len(rbsp) - 1 and rbsp[at] == 0x80


# --- walking mdat -------------------------------------------------------------------

_MIN_BOUND: Final = 1 << 20
_MAX_BOUND: Final = 64 << 20
_BOUND_FACTOR: Final = 4  # a NAL may be this many times the reference's largest frame
_PARAMETER_SET_MAX: Final = 1024
_SEI_MAX: Final = 64 << 10
_SLICE_HEADER_BYTES: Final = 24  # enough of a slice for its first few header fields


class _NalCheck:
    """Is there a plausible length-prefixed NAL unit at a position of ``mdat``?

    Plausible: the length fits (and is at most ``bound``), the header has
    forbidden_zero_bit 0, a type of 1..12 with a consistent nal_ref_idc, and the body
    parses for its type: a slice header that agrees with the reference's SPS and PPS
    (first macroblock inside the picture, slice type 0..9, a known PPS id, an IDR that
    is an I slice with frame_num 0), a well-formed SEI, a two-byte access unit
    delimiter, an SPS or PPS identical to the reference's. Audio bytes still pass now
    and then (a low-bit-rate AAC frame has runs of zero bytes); :func:`_best_path`
    sorts those out.
    """

    def __init__(
        self,
        data: mmap.mmap,
        length_size: int,
        rules: _SliceRules | None,
        parameter_sets: frozenset[bytes],
        bound: int,
    ) -> None:
        self.data = data
        self.n = length_size
        self.rules = rules
        self.parameter_sets = parameter_sets
        self.bound = bound

    def length_at(self, at: int, end: int) -> int:
        """The NAL length when the unit at ``at`` is plausible, else -1."""
        data, n = self.data, self.n
        if at + n + 1 > end:
            return -1
        length = int.from_bytes(data[at : at + n], "big")
        if length < 1 or length > self.bound or at + n + length > end:
            return -1
        header = data[at + n]
        nal_type = header & 0x1F
        ref_idc = header >> 5 & 0x03
        if header & 0x80 or not 1 <= nal_type <= 12:
            return -1
        if (nal_type == 5 and ref_idc == 0) or (nal_type in _UNREFERENCED_TYPES and ref_idc):
            return -1
        body = at + n + 1
        if nal_type in _SLICE_TYPES:
            head = data[body : body + min(length - 1, _SLICE_HEADER_BYTES)]
            return length if self._slice_ok(head, idr=nal_type == 5) else -1
        if nal_type == 6:
            if length > _SEI_MAX:
                return -1
            return length if _sei_well_formed(_unescape(data[body : at + n + length])) else -1
        if nal_type == 9:
            return length if length == 2 and data[body] & 0x1F == 0x10 else -1
        if nal_type in (7, 8):
            unit = data[at + n : at + n + length] if length <= _PARAMETER_SET_MAX else b""
            return length if unit in self.parameter_sets else -1
        if nal_type in (10, 11):
            return length if length == 1 else -1
        if nal_type == 12:  # filler data: 0xFF bytes, then the stop bit
            tail = data[body : at + n + length]
            return length if tail[-1:] == b"\x80" and not tail[:-1].strip(b"\xff") else -1
        # Data partitions (2..4) exist only in the Extended profile; the length must do.
        rules = self.rules
        return length if rules is None or rules.profile_idc == _EXTENDED_PROFILE else -1

    def _slice_ok(self, head: bytes, *, idr: bool) -> bool:
        rules = self.rules
        if rules is None:
            return True
        try:
            r = _Bits(_unescape(head))
            first_mb = r.ue()
            slice_type = r.ue()
            pps_id = r.ue()
            if rules.separate_colour_plane:
                r.u(2)
            frame_num = r.u(rules.log2_max_frame_num)
        except ValueError:
            return False
        if first_mb >= rules.pic_size_in_mbs or slice_type > 9 or pps_id not in rules.pps_ids:
            return False
        return not idr or (slice_type % 5 in (2, 4) and frame_num == 0)


def _candidates(check: _NalCheck, start: int, end: int) -> tuple[list[int], list[int]]:
    """Every position in ``[start, end)`` holding a plausible NAL unit: (starts, ends)."""
    starts: list[int] = []
    ends: list[int] = []
    data, n = check.data, check.n
    # A length prefix below 2**(8*(n-1)) starts with a zero byte: jump from zero to zero.
    zero_first = check.bound < 1 << (8 * (n - 1))
    at = start
    while at < end:
        if zero_first:
            at = data.find(b"\x00", at, end)
            if at < 0:
                break
        length = check.length_at(at, end)
        if length > 0:
            starts.append(at)
            ends.append(at + n + length)
        at += 1
    return starts, ends


def _best_path(starts: list[int], ends: list[int], start: int, end: int) -> list[int]:
    """The chain of non-overlapping candidates with the most NAL units, and among those
    the fewest bytes skipped between them (dynamic programming, O(K log K)).

    Why this picks the real units: real NAL units follow one another with only audio
    chunks between them. A false one found in audio either overlaps the real unit after
    it (same count, but more bytes skipped, since it ends inside a real unit) or, being
    long, swallows several real units (fewer units). Only a false unit that fits wholly
    inside an audio gap survives, which is rare.
    """
    k = len(starts)
    count = [0] * k
    skipped = [0] * k
    following = [-1] * k
    best_from = [-1] * (k + 1)  # best_from[i]: the best candidate index among i..k-1

    def key(i: int) -> tuple[int, int]:
        # Comparable across candidates: the start is added so the skip before it counts.
        return count[i], -(skipped[i] + starts[i])

    for i in range(k - 1, -1, -1):
        j = best_from[bisect.bisect_left(starts, ends[i])]
        count[i], skipped[i] = 1, end - ends[i]  # the last unit: the rest is cut off
        if j >= 0 and (count[j] + 1, -(skipped[j] + starts[j] - ends[i])) > (count[i], -skipped[i]):
            count[i] = count[j] + 1
            skipped[i] = skipped[j] + starts[j] - ends[i]
            following[i] = j
        nxt = best_from[i + 1]
        best_from[i] = i if nxt < 0 or key(i) > key(nxt) else nxt
    path: list[int] = []
    i = best_from[0]
    while i >= 0:
        path.append(i)
        i = following[i]
    return path


@dataclass
class _Walk:
    nal_units: int = 0
    slices: int = 0
    idr_slices: int = 0
    skipped_bytes: int = 0
    gaps: int = 0
    candidates: int = 0


def _walk_mdat(check: _NalCheck, start: int, end: int, out: BinaryIO, walk: _Walk) -> None:
    starts, ends = _candidates(check, start, end)
    walk.candidates += len(starts)
    at = start
    for i in _best_path(starts, ends, start, end):
        if starts[i] > at:
            walk.gaps += 1
            walk.skipped_bytes += starts[i] - at
        nal = check.data[starts[i] + check.n : ends[i]]
        out.write(_START_CODE)
        out.write(nal)
        walk.nal_units += 1
        nal_type = nal[0] & 0x1F
        if nal_type in _SLICE_TYPES:
            walk.slices += 1
            walk.idr_slices += nal_type == 5
        at = ends[i]
    walk.skipped_bytes += end - at


def _extract_stream(src: Path, config: _AvcConfig, out: Path) -> _Walk:
    size = src.stat().st_size
    walk = _Walk()
    bound = min(_MAX_BOUND, max(_MIN_BOUND, _BOUND_FACTOR * config.largest_sample))
    with src.open("rb") as f:
        mdats = [b for b in _top_level(f, size) if b.type == b"mdat"]
        if not mdats:
            raise _NotSalvageable(f"{src.name}: no mdat box (not an MP4, or cut before data)")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data, out.open("wb") as w:
            check = _NalCheck(
                data,
                config.length_size,
                config.rules,
                frozenset((*config.sps, *config.pps)),
                bound,
            )
            for unit in (*config.sps, *config.pps):
                w.write(_START_CODE + unit)
            for box in mdats:
                _walk_mdat(check, box.payload, box.end, w, walk)
            # No fsync: this raw stream is only ffmpeg's input and is deleted once muxed.
    if walk.slices == 0:
        raise _NotSalvageable(f"{src.name}: no plausible H.264 slices in mdat")
    return walk


# --- choosing a reference -----------------------------------------------------------

# How much of the damaged mdat is read to test a candidate's codec parameters: enough
# for several GOPs at body-cam bit rates, little enough to test a handful quickly.
_FIT_SAMPLE_BYTES: Final = 2 << 20
# The share of the sampled bytes that must parse as H.264 units under the candidate's
# SPS/PPS. With the right parameters the video is most of the bytes (GoPro: 90 %, the
# rest is audio); with another camera's, chance alignments cover a few percent at most.
_MIN_COVERAGE: Final = 0.5


@dataclass(frozen=True)
class ReferenceCandidate:
    """A healthy recording that might lend its codec configuration to a damaged one.

    ``key`` is the caller's id for it (a recording id); ``path`` a local, readable copy
    of its original; ``same_device`` whether the same device recorded it (False when
    either device is unknown); ``seconds_apart`` the distance between the two capture
    times (None when either is unknown).
    """

    key: int
    path: Path
    same_device: bool
    seconds_apart: float | None = None


@dataclass(frozen=True)
class ReferenceFit:
    """How one candidate fits: ``reason`` says why it was refused (None: it fits)."""

    key: int
    coverage: float  # share of the sampled mdat bytes that parse under its SPS/PPS
    slices: int
    width: int
    height: int
    profile: str
    reason: str | None


@dataclass(frozen=True)
class ReferenceChoice:
    """The chosen candidate's ``key`` (None: none fits), why, and every candidate's fit."""

    key: int | None
    reason: str
    fits: tuple[ReferenceFit, ...]


_SPS_HEADERS: Final = frozenset({0x27, 0x47, 0x67})  # NAL type 7, nal_ref_idc 1..3


def _inband_sps(data: mmap.mmap, start: int, stop: int) -> bytes | None:
    """The first SPS the recorder wrote into the media data itself (most cameras repeat
    it before each keyframe), found as a 4-byte length prefix followed by an SPS that
    parses; None when there is none in ``[start, stop)``."""
    at = start
    while (at := data.find(b"\x00\x00\x00", at, stop)) >= 0 and at + 5 <= stop:
        length = int.from_bytes(data[at : at + 4], "big")
        if 4 <= length <= _PARAMETER_SET_MAX and data[at + 4] in _SPS_HEADERS:
            unit = bytes(data[at + 4 : at + 4 + length])
            try:
                _slice_rules(unit, (b"\x68\x80",))  # any PPS: only the SPS must parse
            except ValueError:
                pass
            else:
                if len(unit) == length:
                    return unit
        at += 1
    return None


_PROFILE_NAMES: Final = {66: "Baseline", 77: "Main", 88: "Extended", 100: "High", 110: "High 10"}


def _profile_text(config: _AvcConfig) -> str:
    sps = config.sps[0]
    if len(sps) < 4:
        return "unknown profile"
    name = _PROFILE_NAMES.get(sps[1], f"profile {sps[1]}")
    return f"{name}@L{sps[3] / 10:g}"


def _fit(damaged: Path, candidate: ReferenceCandidate) -> ReferenceFit:
    """Parse the start of the damaged file's mdat with the candidate's SPS/PPS."""
    try:
        config = _reference_config(candidate.path)
    except (_NotSalvageable, struct.error, IndexError, ValueError, OSError) as exc:
        return ReferenceFit(candidate.key, 0.0, 0, 0, 0, "", f"unusable: {exc}")
    profile = _profile_text(config)
    dims = (config.width, config.height)
    if config.rules is None:
        return ReferenceFit(candidate.key, 0.0, 0, *dims, profile, "its SPS does not parse")
    size = damaged.stat().st_size
    bound = min(_MAX_BOUND, max(_MIN_BOUND, _BOUND_FACTOR * config.largest_sample))
    sets = frozenset((*config.sps, *config.pps))
    covered = sampled = slices = 0
    with damaged.open("rb") as f:
        mdats = [b for b in _top_level(f, size) if b.type == b"mdat"]
        if not mdats or size == 0:
            return ReferenceFit(candidate.key, 0.0, 0, *dims, profile, "no mdat to test")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            first = mdats[0]
            sps = _inband_sps(data, first.payload, min(first.end, first.payload + (1 << 20)))
            if sps is not None and sps not in config.sps:
                # The damaged file names its own parameters: only the same SPS will do
                # (slice headers alone cannot tell 480p from 1080p).
                return ReferenceFit(
                    candidate.key,
                    0.0,
                    0,
                    *dims,
                    profile,
                    f"its SPS ({config.width}x{config.height}, {profile}) differs from "
                    "the one in the damaged data",
                )
            check = _NalCheck(data, config.length_size, config.rules, sets, bound)
            for box in mdats:
                stop = min(box.end, box.payload + _FIT_SAMPLE_BYTES - sampled)
                starts, ends = _candidates(check, box.payload, stop)
                for i in _best_path(starts, ends, box.payload, stop):
                    covered += ends[i] - starts[i]
                    slices += data[starts[i] + check.n] & 0x1F in _SLICE_TYPES
                sampled += stop - box.payload
                if sampled >= _FIT_SAMPLE_BYTES:
                    break
    coverage = covered / sampled if sampled else 0.0
    reason = None
    if slices == 0 or coverage < _MIN_COVERAGE:
        reason = (
            f"its codec parameters ({config.width}x{config.height}, {profile}) explain "
            f"only {coverage:.0%} of the damaged data"
        )
    return ReferenceFit(candidate.key, coverage, slices, *dims, profile, reason)


def choose_reference(damaged: Path, candidates: Sequence[ReferenceCandidate]) -> ReferenceChoice:
    """The candidate to recover ``damaged`` (a truncated MP4 without its index) with.

    A candidate must be an H.264 MP4 whose SPS/PPS (which fix resolution, profile and
    slice syntax) make most of the damaged file's media data parse as H.264 units: that
    is the test of "the same codec parameters" that does not need the lost index. Among
    those that fit, one from the same device comes first, then the one closest in
    capture time, then the best fit. With none, ``key`` is None and ``reason`` says why
    (for ``show``). Each candidate costs a read of its moov and a scan of 2 MB of the
    damaged file: give a handful, already narrowed to healthy H.264 video.
    """
    fits = tuple(_fit(damaged, c) for c in candidates)
    by_key = {c.key: c for c in candidates}
    usable = [f for f in fits if f.reason is None]
    if not candidates:
        return ReferenceChoice(None, "no healthy H.264 recording to take codec settings from", fits)
    if not usable:
        why = "; ".join(f"#{f.key}: {f.reason}" for f in fits[:5])
        return ReferenceChoice(None, f"no recording has matching codec parameters ({why})", fits)

    def rank(fit: ReferenceFit) -> tuple[bool, float, float]:
        cand = by_key[fit.key]
        apart = cand.seconds_apart
        return (not cand.same_device, math.inf if apart is None else abs(apart), -fit.coverage)

    best = min(usable, key=rank)
    cand = by_key[best.key]
    device = "same device" if cand.same_device else "device not known to match"
    apart = "" if cand.seconds_apart is None else f", {abs(cand.seconds_apart):.0f} s apart"
    return ReferenceChoice(
        best.key,
        f"#{best.key}: {best.width}x{best.height} {best.profile}, {device}{apart}, "
        f"codec parameters explain {best.coverage:.0%} of the damaged data",
        fits,
    )


# --- muxing and checking ------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _decoded_frames(ffmpeg: str, path: Path, timeout_s: float) -> tuple[int, str]:
    command = [
        ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-v",
        "error",
        "-progress",
        "pipe:1",
        "-nostats",
        "-i",
        str(path),
        "-map",
        "0:v:0",
        "-f",
        "null",
        "-",
    ]
    run = run_ffmpeg(command, timeout_s=timeout_s)
    if run.returncode != 0:
        return 0, run.stderr_tail
    return run.frames or 0, run.stderr_tail


def _fps_text(fps: Fraction) -> str:
    return str(fps.numerator) if fps.denominator == 1 else f"{fps.numerator}/{fps.denominator}"


def _log_walk(src: Path, reference: Path, config: _AvcConfig, walk: _Walk) -> None:
    log.info(
        "recover %s: %d NAL units (%d slices, %d IDR), %d bytes skipped in %d gaps; "
        "%dx%d at %s fps from %s",
        src.name,
        walk.nal_units,
        walk.slices,
        walk.idr_slices,
        walk.skipped_bytes,
        walk.gaps,
        config.width,
        config.height,
        _fps_text(config.frame_rate),
        reference.name,
    )


def _mux_command(ffmpeg: str, src: Path, config: _AvcConfig, stream: Path, tmp: Path) -> list[str]:
    """ffmpeg muxing the salvaged raw stream into a fast-start MP4 that says what it is."""
    comment = f"{RECOVERED_COMMENT_PREFIX} {src.name} sha256:{_sha256(src)}; not the original"
    return [
        ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-y",
        "-progress",
        "pipe:1",
        "-nostats",
        "-fflags",
        "+genpts",
        "-r",
        _fps_text(config.frame_rate),
        "-f",
        "h264",
        "-i",
        str(stream),
        # A raw stream has no presentation times: with B-frames ffmpeg gives the first
        # frames negative ones, which the MP4 edit list would hide; start at zero.
        "-map",
        "0:v:0",
        "-c",
        "copy",
        *_crop_filter(config),
        "-avoid_negative_ts",
        "make_zero",
        "-map_metadata",
        "-1",
        "-metadata",
        f"title={RECOVERED_TITLE_PREFIX} {src.stem}",
        "-metadata",
        f"comment={comment}",
        "-movflags",
        "+faststart",
        "-f",
        "mp4",
        str(tmp),
    ]


def _check_salvage(
    ffmpeg: str, ffprobe: str, tmp: Path, run: FfmpegRun, decode_timeout_s: float
) -> tuple[OutputProbe, int, str]:
    """The muxed file opens as H.264 and decodes: (probe, frames, log tail), else
    :class:`_NotSalvageable` with the reason."""
    if run.returncode != 0:
        raise _NotSalvageable(
            f"ffmpeg could not mux the salvaged stream: {run.stderr_tail[-1000:]}"
        )
    try:
        probed = probe_output(ffprobe, tmp)
    except FfmpegMissingError:
        raise
    except DerivationError as exc:
        raise _NotSalvageable(f"the salvaged MP4 does not open: {exc.message}") from exc
    if "h264" not in probed.codecs("video"):
        raise _NotSalvageable(f"the salvaged MP4 has no H.264 video ({probed.codecs('video')})")
    frames, decode_log = _decoded_frames(ffmpeg, tmp, decode_timeout_s)
    if frames < 1:
        raise _NotSalvageable(f"no frame decodes: {decode_log[-1000:] or 'no output'}")
    tail = run.stderr_tail
    if decode_log:
        tail = f"{tail}\n--- decode check ({frames} frames) ---\n{decode_log}"
    return probed, frames, tail[-STDERR_TAIL_BYTES:]


def _final_path(src: Path, out_dir: Path, name: str | None) -> Path:
    if name is not None and (not name or name.startswith(".") or "/" in name):
        raise ValueError(f"output name {name!r} must be a plain, non-hidden file name")
    return out_dir / (name or f"{src.stem}.recovered.mp4")


def recover_truncated_mp4(
    src: Path,
    reference: Path | None,
    out_dir: Path,
    *,
    ffmpeg: str = "ffmpeg",
    ffprobe: str = "ffprobe",
    timeout_factor: float = 1.0,
    name: str | None = None,
    durable: bool = True,
) -> Derivation | None:
    """Salvage the H.264 video of a truncated MP4 into ``out_dir/<stem>.recovered.mp4``.

    ``reference`` is a healthy MP4 from the same recorder with the same settings (its
    SPS/PPS must match the lost ones). Returns a :class:`Derivation` (kind and method
    ``"recovered"``), or ``None`` with the reason logged when nothing can be salvaged.
    The original is never modified; nothing is left in ``out_dir`` on failure.
    Raises :class:`~ingest.media.derive.FfmpegMissingError` when ffmpeg cannot run and
    :class:`~ingest.media.derive.DerivationTimeout` when it runs past its limit.
    ``durable=False`` renames the checked output into place without the fsyncs, as for
    the functions of :mod:`ingest.media.derive`: the caller makes it durable.
    """
    started = time.monotonic()

    def give_up(reason: str) -> None:
        log.warning("recover %s: nothing salvaged: %s", src.name, reason)

    if reference is None:
        give_up("no healthy reference recording from the same device and settings")
        return None
    final = _final_path(src, out_dir, name)
    version = ffmpeg_version(ffmpeg)
    out_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(4)
    stream = out_dir / f".{final.name}.{token}.h264"
    tmp = out_dir / f".{final.name}.{token}.partial"
    try:
        try:
            config = _reference_config(reference)
            walk = _extract_stream(src, config, stream)
            _log_walk(src, reference, config, walk)
            command = _mux_command(ffmpeg, src, config, stream, tmp)
            estimate_s = float(walk.slices / config.frame_rate)
            run = run_ffmpeg(command, timeout_s=TIMEOUTS.limit("remux", estimate_s, timeout_factor))
            probed, frames, tail = _check_salvage(
                ffmpeg, ffprobe, tmp, run, TIMEOUTS.limit("reencode", estimate_s, timeout_factor)
            )
        except _NotSalvageable as exc:
            give_up(str(exc))
            return None
        except (struct.error, IndexError, ValueError) as exc:  # a box cut short, or empty
            give_up(f"cannot parse: {exc}")
            return None
        if durable:
            with tmp.open("rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, final)
        if durable:
            fsync_dir(out_dir)
    finally:
        stream.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    elapsed = time.monotonic() - started
    # An outcome, not a warning: the recording's flags and derivatives say it (-v shows it).
    log.info("recover %s: RECOVERED %d frames (video only) into %s", src.name, frames, final)
    return Derivation(
        kind="recovered",
        path=final,
        method="recovered",
        command=tuple(command),
        ffmpeg_version=version,
        duration_s=probed.duration_s,
        elapsed_s=elapsed,
        stderr_tail=tail,
        sources=(src, reference),
    )
