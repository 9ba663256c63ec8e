"""A synthetic body-worn camera (执法记录仪), for tests, benchmarks and the demo.

:func:`make_recorder` writes a directory that looks like a recorder docked at a station
(采集站), with real media made by ffmpeg from its built-in ``lavfi`` sources
(``testsrc2``, ``sine``), so nothing is downloaded. :func:`make_bulk_files` writes many
files of pseudo-random bytes (or a few very large ones) for offload benchmarks.

Layout under the recorder root (the names are the module constants below)::

    DEVICE.INF                      DEVICE_INFO_NAME   device information (optional)
    DCIM/100RECORD/*.MP4            VIDEO_DIR          H.264, H.265, split and truncated videos
    DCIM/100PHOTO/*.JPG             PHOTO_DIR          photos, and make_bulk_files output
    RECORD/*.WAV                    AUDIO_DIR          audio-only recordings

File names follow the GA/T 947 vendor practice of device serial, 警号 and start time
(the exact vendor pattern is unverified, so ingest parses names with a configurable
list of patterns; this generator writes exactly one)::

    <serial>_<officer_number>_<YYYYMMDDHHMMSS>_<NNNN>.<EXT>
    A123456_010203_20261126083000_0001.MP4

``FILENAME_RE`` matches these names. The time is the capture start as the recorder's
clock shows it: a naive wall-clock time in China Standard Time (Asia/Shanghai, UTC+8,
no daylight saving since 1991). ``NNNN`` is the recorder's running file counter: it
increases by one for every file the recorder writes (1 to 9999, then it wraps to 1),
so the segments of one split recording carry consecutive numbers. ``EXT`` is upper case.

A shift is written in this order, each recording starting a pseudo-random gap (drawn
from ``seed``) after the previous one ended: H.264 recordings, H.265 recordings, the
recording split into ``segments`` segments, audio recordings, photos, and last the
truncated recording (the battery died). The segments of the split recording are
contiguous: segment k+1 starts exactly when segment k ends (so with segments,
``duration_s`` must be a whole number of seconds, the resolution of the names).

Media (tiny by default: 320x240, 2 s, 25 fps):

* ``video-h264`` and ``segment``: MP4, H.264 (libx264) + AAC mono 16 kHz, moov atom at
  the end as a camera writes it (no faststart). ``creation_time`` is the name's start
  time converted to UTC; ``title`` is the file name's stem.
* ``video-h265``: the same with H.265 (libx265, tagged ``hvc1``).
* ``audio-wav``: WAV, pcm_s16le mono 16 kHz sine; ``title`` (RIFF INAM) is the stem.
* ``photo-jpeg``: JPEG, one ``testsrc2`` frame, with a COM segment naming the file.
* ``video-truncated``: an H.264 MP4 cut inside its ``mdat`` so that the ``moov`` atom is
  missing, as when a recorder loses power mid-recording; ffprobe fails on it (checked
  when it is made). Its ``duration_s`` is ``None``: the file holds no duration.

Every file's content is unique (its name is embedded, and the test pattern's hue, frame
and tone are derived from it), so no two files of a recorder, nor of two recorders with
different devices, start times or seeds, are stored as duplicates of each other.

Same arguments give the same names and, with this ffmpeg build, the same bytes: encoders
run single-threaded with ``+bitexact`` and all metadata is explicit.

The device information file ``DEVICE.INF`` is UTF-8 text (no BOM), one ``key=value``
per line, ``\\n`` line ends, in this order: ``serial``, ``officer_number``,
``officer_name``, ``unit_number``, ``unit_name``, ``model``, ``clock_offset_s`` (the
recorder clock's offset in seconds that the station measured; always ``0`` here)::

    serial=A123456
    officer_number=010203
    officer_name=张三
    unit_number=310104000000
    unit_name=徐汇区市场监督管理局
    model=DSJ-V9
    clock_offset_s=0
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import re
import shutil
import struct
import subprocess
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from config.errors import EXIT_UNAVAILABLE, LiuhenError
from config.settings import CHINA_STANDARD_TIME
from storage.digest import Hasher, new_hasher

__all__ = [
    "AUDIO_DIR",
    "CHINA_STANDARD_TIME",
    "DEFAULT_DEVICE",
    "DEFAULT_START",
    "DEVICE_INFO_KEYS",
    "DEVICE_INFO_NAME",
    "EXT_AUDIO",
    "EXT_PHOTO",
    "EXT_VIDEO",
    "FILENAME_RE",
    "FILENAME_TIME_FORMAT",
    "KIND_AUDIO_WAV",
    "KIND_DEVICE_INFO",
    "KIND_OTHER",
    "KIND_PHOTO_JPEG",
    "KIND_SEGMENT",
    "KIND_VIDEO_H264",
    "KIND_VIDEO_H265",
    "KIND_VIDEO_TRUNCATED",
    "PHOTO_DIR",
    "SEQUENCE_MAX",
    "VIDEO_DIR",
    "DeviceInfo",
    "SyntheticFile",
    "SyntheticMediaError",
    "SyntheticRecorder",
    "make_bulk_files",
    "make_recorder",
    "recorder_filename",
]

# --- layout and naming -------------------------------------------------------------

DEVICE_INFO_NAME: Final = "DEVICE.INF"
VIDEO_DIR: Final = "DCIM/100RECORD"
PHOTO_DIR: Final = "DCIM/100PHOTO"
AUDIO_DIR: Final = "RECORD"

EXT_VIDEO: Final = "MP4"
EXT_AUDIO: Final = "WAV"
EXT_PHOTO: Final = "JPG"

FILENAME_TIME_FORMAT: Final = "%Y%m%d%H%M%S"
FILENAME_RE: Final = re.compile(
    r"^(?P<serial>[0-9A-Z]{7})_(?P<officer_number>[0-9]{6})_(?P<start>[0-9]{14})"
    r"_(?P<sequence>[0-9]{4})\.(?P<ext>MP4|WAV|JPG)$"
)
# The recorder's file counter: four digits, wrapping from 9999 back to 1.
SEQUENCE_MAX: Final = 9999

DEVICE_INFO_KEYS: Final = (
    "serial",
    "officer_number",
    "officer_name",
    "unit_number",
    "unit_name",
    "model",
    "clock_offset_s",
)

KIND_VIDEO_H264: Final = "video-h264"
KIND_VIDEO_H265: Final = "video-h265"
KIND_AUDIO_WAV: Final = "audio-wav"
KIND_PHOTO_JPEG: Final = "photo-jpeg"
KIND_VIDEO_TRUNCATED: Final = "video-truncated"
KIND_SEGMENT: Final = "segment"
KIND_DEVICE_INFO: Final = "device-info"
KIND_OTHER: Final = "other"  # make_bulk_files: pseudo-random bytes under a .JPG name

DEFAULT_START: Final = datetime(2026, 11, 26, 8, 30, 0)

# --- media parameters ----------------------------------------------------------------

FRAME_RATE: Final = 25
AUDIO_RATE: Final = 16_000
FFMPEG_TIMEOUT_S: Final = 300.0
# Pause between the end of one recording and the start of the next, in seconds.
_RECORDING_GAP_S: Final = (60, 900)
_PHOTO_GAP_S: Final = (5, 120)

# make_bulk_files: data is drawn from one pseudo-random pool at shifting offsets, so
# generating it costs nothing and memory stays at one pool whatever the file size.
BULK_CHUNK: Final = 8 << 20
_BULK_SLACK: Final = 1 << 20
_READ_CHUNK: Final = 1 << 20
_BACKGROUND_MIN: Final = 256 << 10


class SyntheticMediaError(LiuhenError):
    """ffmpeg or ffprobe failed, or is missing, while making synthetic media."""

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        command: Sequence[str] = (),
        stderr: str = "",
    ) -> None:
        super().__init__(message, hint=hint)
        self.command = tuple(command)
        self.stderr = stderr


class _ToolMissing(SyntheticMediaError):
    exit_code = EXIT_UNAVAILABLE


# --- public data --------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceInfo:
    """What a station reads from a docked recorder (de-facto station SDK fields)."""

    serial: str  # 7 characters, e.g. "A123456"
    officer_number: str  # 警号, 6 digits
    officer_name: str
    unit_number: str  # 12 digits
    unit_name: str
    model: str

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not re.fullmatch(r"[0-9A-Z]{7}", self.serial):
            problems.append(f"serial {self.serial!r} is not 7 characters A-Z/0-9")
        if not re.fullmatch(r"[0-9]{6}", self.officer_number):
            problems.append(f"officer_number {self.officer_number!r} is not 6 digits")
        if not re.fullmatch(r"[0-9]{12}", self.unit_number):
            problems.append(f"unit_number {self.unit_number!r} is not 12 digits")
        for name in ("officer_name", "unit_name", "model"):
            value: str = getattr(self, name)
            if not value or "=" in value or any(c in value for c in "\r\n\0"):
                problems.append(f"{name} {value!r} is empty or holds '=', a newline or NUL")
        if problems:
            raise ValueError("invalid DeviceInfo: " + "; ".join(problems))

    def info_text(self, clock_offset_s: int = 0) -> str:
        """The content of the ``DEVICE.INF`` file for this device."""
        values = (
            self.serial,
            self.officer_number,
            self.officer_name,
            self.unit_number,
            self.unit_name,
            self.model,
            str(clock_offset_s),
        )
        return "".join(f"{k}={v}\n" for k, v in zip(DEVICE_INFO_KEYS, values, strict=True))


DEFAULT_DEVICE: Final = DeviceInfo(
    serial="A123456",
    officer_number="010203",
    officer_name="张三",
    unit_number="310104000000",
    unit_name="徐汇区市场监督管理局",
    model="DSJ-V9",
)


@dataclass(frozen=True)
class SyntheticFile:
    relpath: str  # relative to the recorder root, '/' separators
    kind: str  # one of the KIND_* constants
    size: int
    sha256: str
    sm3: str
    start: datetime | None  # capture start from the name: naive, China Standard Time
    duration_s: float | None
    group: str | None  # split recordings: shared by the segments (first segment's stem)
    sequence: int | None  # split recordings: 1-based segment number within the group


@dataclass(frozen=True)
class SyntheticRecorder:
    root: Path
    device: DeviceInfo
    files: tuple[SyntheticFile, ...]  # the device info file first (if any), then media

    def media(self) -> tuple[SyntheticFile, ...]:
        """The files without the device information file."""
        return tuple(f for f in self.files if f.kind != KIND_DEVICE_INFO)


def recorder_filename(device: DeviceInfo, start: datetime, counter: int, ext: str) -> str:
    """``<serial>_<officer_number>_<YYYYMMDDHHMMSS>_<NNNN>.<EXT>``."""
    if not 1 <= counter <= SEQUENCE_MAX:
        raise ValueError(f"file counter {counter} is outside 1..{SEQUENCE_MAX}")
    stamp = start.strftime(FILENAME_TIME_FORMAT)
    return f"{device.serial}_{device.officer_number}_{stamp}_{counter:04d}.{ext.upper()}"


# --- planning -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    relpath: str
    kind: str
    start: datetime
    duration_s: float | None
    group: str | None
    sequence: int | None

    @property
    def stem(self) -> str:
        return self.relpath.rsplit("/", 1)[-1].rsplit(".", 1)[0]


class _Counter:
    """The recorder's four-digit running file counter."""

    def __init__(self) -> None:
        self._next = 1

    def take(self) -> int:
        value = self._next
        self._next = value % SEQUENCE_MAX + 1
        return value


def _wall_clock(start: datetime | None) -> datetime:
    if start is None:
        return DEFAULT_START
    if start.tzinfo is not None:
        start = start.astimezone(CHINA_STANDARD_TIME).replace(tzinfo=None)
    # Names carry whole seconds; keep `start` equal to what the name says.
    return start.replace(microsecond=0)


def _plan_shift(
    device: DeviceInfo,
    start: datetime,
    *,
    h264: int,
    h265: int,
    wav: int,
    jpeg: int,
    truncated: int,
    segments: int,
    duration_s: float,
    seed: int,
) -> list[_Plan]:
    rng = random.Random(seed)
    counter = _Counter()
    clock = start
    plans: list[_Plan] = []
    step = timedelta(seconds=math.ceil(duration_s))

    def add(kind: str, folder: str, ext: str, *, recorded: bool, duration: float | None) -> None:
        """One file at the clock; the clock moves past its recording and a pause."""
        nonlocal clock
        name = recorder_filename(device, clock, counter.take(), ext)
        plans.append(_Plan(f"{folder}/{name}", kind, clock, duration, None, None))
        low, high = _RECORDING_GAP_S if recorded else _PHOTO_GAP_S
        clock += (step if recorded else timedelta()) + timedelta(seconds=rng.randint(low, high))

    for _ in range(h264):
        add(KIND_VIDEO_H264, VIDEO_DIR, EXT_VIDEO, recorded=True, duration=duration_s)
    for _ in range(h265):
        add(KIND_VIDEO_H265, VIDEO_DIR, EXT_VIDEO, recorded=True, duration=duration_s)
    if segments:
        group: str | None = None
        for k in range(1, segments + 1):
            name = recorder_filename(device, clock, counter.take(), EXT_VIDEO)
            group = group or name.rsplit(".", 1)[0]
            plans.append(_Plan(f"{VIDEO_DIR}/{name}", KIND_SEGMENT, clock, duration_s, group, k))
            clock += timedelta(seconds=duration_s)  # the next segment starts at once
        clock += timedelta(seconds=rng.randint(*_RECORDING_GAP_S))
    for _ in range(wav):
        add(KIND_AUDIO_WAV, AUDIO_DIR, EXT_AUDIO, recorded=True, duration=duration_s)
    for _ in range(jpeg):
        add(KIND_PHOTO_JPEG, PHOTO_DIR, EXT_PHOTO, recorded=False, duration=None)
    for _ in range(truncated):
        # Recorded for duration_s, but the file lost its index: it holds no duration.
        add(KIND_VIDEO_TRUNCATED, VIDEO_DIR, EXT_VIDEO, recorded=True, duration=None)
    return plans


# --- ffmpeg -------------------------------------------------------------------------


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise _ToolMissing(
            f"{name} not found on PATH",
            hint="install ffmpeg (it provides ffmpeg and ffprobe), e.g. apt-get install ffmpeg",
        )
    return path


def _run(command: list[str], what: str) -> None:
    try:
        proc = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
            timeout=FFMPEG_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        raise SyntheticMediaError(
            f"{what}: ffmpeg did not finish within {FFMPEG_TIMEOUT_S:.0f} s",
            hint="the machine may be overloaded; make smaller media (size, duration_s)",
            command=command,
        ) from exc
    if proc.returncode == 0:
        return
    stderr = proc.stderr.decode("utf-8", "replace").strip()
    if "libx265" in stderr and ("Unknown encoder" in stderr or "not found" in stderr):
        raise _ToolMissing(
            f"{what}: this ffmpeg has no libx265 encoder",
            hint="install an ffmpeg built with --enable-libx265, or pass h265=0",
            command=command,
            stderr=stderr,
        )
    raise SyntheticMediaError(
        f"{what}: ffmpeg exited with status {proc.returncode}: {stderr[-2000:]}",
        hint="see the ffmpeg message; check that ffmpeg has libx264, libx265 and lavfi",
        command=command,
        stderr=stderr,
    )


@dataclass(frozen=True)
class _Look:
    """Per-file variation of the test pattern and tone, derived from the file name."""

    hue: int
    frame: int
    tone_hz: int

    @classmethod
    def of(cls, stem: str, seed: int) -> _Look:
        h = int.from_bytes(hashlib.sha256(f"{seed}:{stem}".encode()).digest()[:8], "big")
        return cls(hue=h % 360, frame=(h >> 16) % 50, tone_hz=300 + (h >> 32) % 1500)


_COMMON_OUT: Final = ("-map_metadata", "-1", "-fflags", "+bitexact")


def _mp4_command(
    ffmpeg: str,
    plan: _Plan,
    out: Path,
    codec: str,
    duration_s: float,
    size: tuple[int, int],
    device: DeviceInfo,
    look: _Look,
) -> list[str]:
    width, height = size
    seconds = f"{duration_s:.3f}"
    if codec == "libx265":
        video = [
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-crf",
            "32",
            "-tag:v",
            "hvc1",
            "-x265-params",
            "log-level=error:pools=none:frame-threads=1",
        ]
    else:
        video = ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "28", "-threads", "1"]
    creation = (
        plan.start.replace(tzinfo=CHINA_STANDARD_TIME)
        .astimezone(UTC)
        .strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    )
    return [
        ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={width}x{height}:rate={FRAME_RATE}:duration={seconds}",
        "-f",
        "lavfi",
        "-i",
        f"sine=frequency={look.tone_hz}:sample_rate={AUDIO_RATE}:duration={seconds}",
        "-map",
        "0:v:0",
        "-map",
        "1:a:0",
        "-vf",
        f"hue=h={look.hue}",
        "-pix_fmt",
        "yuv420p",
        "-g",
        str(FRAME_RATE),
        *video,
        "-c:a",
        "aac",
        "-ac",
        "1",
        "-b:a",
        "32k",
        *_COMMON_OUT,
        "-flags:v",
        "+bitexact",
        "-flags:a",
        "+bitexact",
        "-metadata",
        f"creation_time={creation}",
        "-metadata",
        f"title={plan.stem}",
        "-metadata",
        f"comment=serial={device.serial} officer={device.officer_number}",
        "-f",
        "mp4",
        str(out),
    ]


def _wav_command(
    ffmpeg: str, plan: _Plan, out: Path, duration_s: float, device: DeviceInfo, look: _Look
) -> list[str]:
    return [
        ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"sine=frequency={look.tone_hz}:sample_rate={AUDIO_RATE}:duration={duration_s:.3f}",
        "-c:a",
        "pcm_s16le",
        "-ac",
        "1",
        "-ar",
        str(AUDIO_RATE),
        *_COMMON_OUT,
        "-flags:a",
        "+bitexact",
        "-metadata",
        f"title={plan.stem}",
        "-metadata",
        f"comment=serial={device.serial} officer={device.officer_number}",
        "-f",
        "wav",
        str(out),
    ]


def _jpeg_command(ffmpeg: str, out: Path, size: tuple[int, int], look: _Look) -> list[str]:
    width, height = size
    return [
        ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={width}x{height}:rate={FRAME_RATE}",
        "-vf",
        f"trim=start_frame={look.frame},hue=h={look.hue}",
        "-frames:v",
        "1",
        "-c:v",
        "mjpeg",
        "-q:v",
        "3",
        "-pix_fmt",
        "yuvj420p",
        *_COMMON_OUT,
        "-flags:v",
        "+bitexact",
        "-f",
        "mjpeg",
        str(out),
    ]


def _add_jpeg_comment(path: Path, text: str) -> None:
    """Insert a COM segment after SOI (and the JFIF APP0 that must follow SOI)."""
    data = path.read_bytes()
    if data[:2] != b"\xff\xd8":
        raise SyntheticMediaError(f"{path}: ffmpeg did not write a JPEG (no SOI marker)")
    at = 2
    if data[2:4] == b"\xff\xe0":
        at = 4 + struct.unpack(">H", data[4:6])[0]
    payload = text.encode("utf-8")
    segment = b"\xff\xfe" + struct.pack(">H", len(payload) + 2) + payload
    path.write_bytes(data[:at] + segment + data[at:])


def _moov_offset(path: Path) -> tuple[int, int]:
    """(start of the mdat payload, offset of the moov box) among the top-level boxes."""
    mdat_payload = moov = -1
    size_total = path.stat().st_size
    with path.open("rb") as f:
        offset = 0
        while offset < size_total:
            f.seek(offset)
            header = f.read(16)
            box_size, box_type = struct.unpack(">I4s", header[:8])
            header_len = 8
            if box_size == 1:
                box_size = struct.unpack(">Q", header[8:16])[0]
                header_len = 16
            elif box_size == 0:
                box_size = size_total - offset
            if box_type == b"mdat":
                mdat_payload = offset + header_len
            elif box_type == b"moov":
                moov = offset
            if box_size < header_len:
                break
            offset += box_size
    return mdat_payload, moov


def _truncate_mp4(ffprobe: str, path: Path) -> None:
    mdat_payload, moov = _moov_offset(path)
    if mdat_payload < 0 or moov < mdat_payload:
        raise SyntheticMediaError(
            f"{path}: expected an MP4 with its moov atom after mdat (no faststart)",
            hint="this ffmpeg's mp4 muxer wrote an unexpected layout",
        )
    # Power died three quarters of the way through: part of mdat, no moov.
    cut = mdat_payload + (moov - mdat_payload) * 3 // 4
    with path.open("r+b") as f:
        f.truncate(cut)
    command = [ffprobe, "-v", "error", "-of", "json", "-show_format", str(path)]
    proc = subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
        timeout=FFMPEG_TIMEOUT_S,
    )
    if proc.returncode == 0:
        raise SyntheticMediaError(
            f"{path}: ffprobe still reads the truncated MP4",
            hint="the truncated file must be unreadable; check the ffprobe version",
            command=command,
        )


def _render(
    plan: _Plan,
    root: Path,
    *,
    device: DeviceInfo,
    duration_s: float,
    size: tuple[int, int],
    seed: int,
    ffmpeg: str,
    ffprobe: str,
) -> None:
    final = root / plan.relpath
    # ffmpeg writes beside the final name; only a complete file gets the real name.
    partial = final.with_name(f".{final.name}.partial")
    look = _Look.of(plan.stem, seed)
    what = f"making {plan.relpath} ({plan.kind})"
    try:
        if plan.kind in (KIND_VIDEO_H264, KIND_SEGMENT, KIND_VIDEO_TRUNCATED):
            cmd = _mp4_command(ffmpeg, plan, partial, "libx264", duration_s, size, device, look)
            _run(cmd, what)
            if plan.kind == KIND_VIDEO_TRUNCATED:
                _truncate_mp4(ffprobe, partial)
        elif plan.kind == KIND_VIDEO_H265:
            cmd = _mp4_command(ffmpeg, plan, partial, "libx265", duration_s, size, device, look)
            _run(cmd, what)
        elif plan.kind == KIND_AUDIO_WAV:
            _run(_wav_command(ffmpeg, plan, partial, duration_s, device, look), what)
        elif plan.kind == KIND_PHOTO_JPEG:
            _run(_jpeg_command(ffmpeg, partial, size, look), what)
            _add_jpeg_comment(
                partial,
                f"liuhen synthetic {plan.stem} serial={device.serial} "
                f"officer={device.officer_number}",
            )
        else:  # pragma: no cover - plans only hold the kinds above
            raise AssertionError(plan.kind)
        partial.rename(final)
    finally:
        partial.unlink(missing_ok=True)


# --- hashing and writing ------------------------------------------------------------


def _digest_file(path: Path) -> tuple[int, str, str]:
    sha256, sm3 = hashlib.sha256(), new_hasher("sm3")
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(_READ_CHUNK):
            size += len(chunk)
            sha256.update(chunk)
            sm3.update(chunk)
    return size, sha256.hexdigest(), sm3.hexdigest()


def _check_free(root: Path, relpaths: Sequence[str]) -> None:
    taken = [p for p in relpaths if (root / p).exists()]
    if taken:
        raise FileExistsError(
            f"{root}: would overwrite {len(taken)} existing file(s), e.g. {taken[0]}; "
            "use an empty directory"
        )


def _write_device_info(root: Path, device: DeviceInfo) -> SyntheticFile:
    path = root / DEVICE_INFO_NAME
    path.write_bytes(device.info_text().encode("utf-8"))
    size, sha256, sm3 = _digest_file(path)
    return SyntheticFile(
        DEVICE_INFO_NAME, KIND_DEVICE_INFO, size, sha256, sm3, None, None, None, None
    )


def _validate_counts(**counts: int) -> None:
    bad = [f"{k}={v}" for k, v in counts.items() if v < 0]
    if bad:
        raise ValueError("counts must not be negative: " + ", ".join(bad))


def _validate_shape(duration_s: float, segments: int, size: tuple[int, int]) -> None:
    """Refuse a duration or frame size the recorder cannot write, before writing anything."""
    if not (math.isfinite(duration_s) and 0.1 <= duration_s <= 3600):
        raise ValueError(f"duration_s must be between 0.1 and 3600 seconds, not {duration_s}")
    if segments and not float(duration_s).is_integer():
        raise ValueError(
            f"duration_s={duration_s} must be a whole number of seconds when segments > 0: "
            "names have one-second resolution and segments must be contiguous"
        )
    width, height = size
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise ValueError(f"size {size} must be even and at least 16x16 (yuv420p)")


def _finish_file(root: Path, plan: _Plan, duration_s: float) -> SyntheticFile:
    """Digest a rendered file and date it the way a recorder does."""
    nbytes, sha256, sm3 = _digest_file(root / plan.relpath)
    # A recorder closes a file when the recording ends: its mtime is the end time.
    end = plan.start + timedelta(seconds=plan.duration_s or duration_s)
    stamp = end.replace(tzinfo=CHINA_STANDARD_TIME).timestamp()
    os.utime(root / plan.relpath, (stamp, stamp))
    return SyntheticFile(
        relpath=plan.relpath,
        kind=plan.kind,
        size=nbytes,
        sha256=sha256,
        sm3=sm3,
        start=plan.start,
        duration_s=plan.duration_s,
        group=plan.group,
        sequence=plan.sequence,
    )


def make_recorder(
    root: Path,
    *,
    device: DeviceInfo | None = None,
    start: datetime | None = None,
    h264: int = 1,
    h265: int = 1,
    wav: int = 1,
    jpeg: int = 1,
    truncated: int = 1,
    segments: int = 2,
    with_device_info: bool = True,
    duration_s: float = 2.0,
    size: tuple[int, int] = (320, 240),
    seed: int = 0,
) -> SyntheticRecorder:
    """Write a synthetic docked recorder under ``root`` (created if missing).

    ``start`` is the first recording's start as the recorder's clock shows it: naive
    China Standard Time (an aware datetime is converted); microseconds are dropped.
    ``segments`` is the number of segments of the one split recording (0: none).
    Raises ``FileExistsError`` rather than overwrite a file, ``ValueError`` for bad
    arguments (before writing anything) and :class:`SyntheticMediaError` when ffmpeg
    fails or is missing (files already made are then left in place).
    """
    device = device or DEFAULT_DEVICE
    _validate_counts(
        h264=h264, h265=h265, wav=wav, jpeg=jpeg, truncated=truncated, segments=segments
    )
    _validate_shape(duration_s, segments, size)

    plans = _plan_shift(
        device,
        _wall_clock(start),
        h264=h264,
        h265=h265,
        wav=wav,
        jpeg=jpeg,
        truncated=truncated,
        segments=segments,
        duration_s=duration_s,
        seed=seed,
    )
    relpaths = [p.relpath for p in plans]
    if with_device_info:
        relpaths.append(DEVICE_INFO_NAME)
    root.mkdir(parents=True, exist_ok=True)
    _check_free(root, relpaths)
    ffmpeg = _tool("ffmpeg") if plans else ""
    ffprobe = _tool("ffprobe") if truncated else ""
    for folder in sorted({p.relpath.rsplit("/", 1)[0] for p in plans}):
        (root / folder).mkdir(parents=True, exist_ok=True)

    # Each ffmpeg runs single-threaded (for reproducible bytes); run several at once.
    workers = max(1, min(len(plans), os.cpu_count() or 2, 8))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="synthetic") as pool:
        futures = [
            pool.submit(
                _render,
                plan,
                root,
                device=device,
                duration_s=duration_s,
                size=size,
                seed=seed,
                ffmpeg=ffmpeg,
                ffprobe=ffprobe,
            )
            for plan in plans
        ]
        for future in futures:
            future.result()

    files: list[SyntheticFile] = []
    if with_device_info:
        files.append(_write_device_info(root, device))
    files += [_finish_file(root, plan, duration_s) for plan in plans]
    return SyntheticRecorder(root=root, device=device, files=tuple(files))


def _write_bulk_file(
    path: Path,
    size: int,
    header: bytes,
    pool: memoryview,
    index: int,
    hash_in_background: Callable[[Hasher, memoryview], Future[None]],
) -> tuple[str, str]:
    """Write ``size`` bytes, hashing them as they are written (no second read)."""
    sha256, sm3 = hashlib.sha256(), new_hasher("sm3")
    written = 0
    chunk_no = 0
    with path.open("xb") as f:
        while written < size:
            n = min(BULK_CHUNK, size - written)
            offset = (index * 1_000_003 + chunk_no * 7_919) % _BULK_SLACK
            chunk = pool[offset : offset + n]
            if written == 0:
                # A per-file header keeps every file's bytes (and digest) unique.
                head = header[:n]
                chunk = memoryview(head + bytes(chunk[len(head) :]))
            # SM3 is the slow one; it runs on another thread while SHA-256 and the write
            # happen here (hashlib releases the GIL on large buffers).
            if n >= _BACKGROUND_MIN:
                pending = hash_in_background(sm3, chunk)
                sha256.update(chunk)
                f.write(chunk)
                pending.result()
            else:  # a thread hand-off costs more than hashing a small buffer
                sm3.update(chunk)
                sha256.update(chunk)
                f.write(chunk)
            written += n
            chunk_no += 1
    return sha256.hexdigest(), sm3.hexdigest()


def make_bulk_files(
    root: Path,
    count: int,
    size: int,
    *,
    seed: int = 0,
    device: DeviceInfo | None = None,
) -> SyntheticRecorder:
    """Write ``count`` files of exactly ``size`` pseudo-random bytes, for benchmarks.

    The files are named like photos (``<serial>_<officer>_<time>_<NNNN>.JPG`` under
    ``PHOTO_DIR``, one per second from ``DEFAULT_START``, the counter wrapping after
    9999) but are not JPEGs: their kind is ``"other"``. A ``DEVICE.INF`` is written too.
    Each file starts with a unique header (8-byte index, then its name), so files of
    at least 8 bytes never share a digest; the rest is drawn from a seeded
    pseudo-random pool at shifting offsets (incompressible to ordinary compressors,
    generated at memory speed). Memory stays at about 9 MiB whatever ``size`` is;
    SHA-256 and SM3 are computed while writing.
    """
    device = device or DEFAULT_DEVICE
    if count < 0 or size < 0:
        raise ValueError(f"count ({count}) and size ({size}) must not be negative")
    counter = _Counter()
    plans = [
        _Plan(
            relpath=f"{PHOTO_DIR}/{recorder_filename(device, t, counter.take(), EXT_PHOTO)}",
            kind=KIND_OTHER,
            start=t,
            duration_s=None,
            group=None,
            sequence=None,
        )
        for t in (DEFAULT_START + timedelta(seconds=i) for i in range(count))
    ]
    root.mkdir(parents=True, exist_ok=True)
    _check_free(root, [DEVICE_INFO_NAME, *(p.relpath for p in plans)])
    (root / PHOTO_DIR).mkdir(parents=True, exist_ok=True)

    pool = memoryview(random.Random(seed).randbytes(min(size, BULK_CHUNK) + _BULK_SLACK))
    files = [_write_device_info(root, device)]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="synthetic-sm3") as hasher:

        def hash_in_background(h: Hasher, data: memoryview) -> Future[None]:
            return hasher.submit(h.update, data)

        for index, plan in enumerate(plans):
            header = struct.pack(">Q", index) + plan.stem.encode("ascii") + b"\n"
            sha256, sm3 = _write_bulk_file(
                root / plan.relpath, size, header, pool, index, hash_in_background
            )
            files.append(
                SyntheticFile(
                    relpath=plan.relpath,
                    kind=KIND_OTHER,
                    size=size,
                    sha256=sha256,
                    sm3=sm3,
                    start=plan.start,
                    duration_s=None,
                    group=None,
                    sequence=None,
                )
            )
    return SyntheticRecorder(root=root, device=device, files=tuple(files))
