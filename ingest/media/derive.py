"""Derivatives of a recording: access copy, browser proxy, poster frame, audio access, joins.

Pure functions over local files (no catalog, no store). The camera original is the
evidence master and is never modified: ffmpeg only ever opens it for reading, and every
output is a new file. Each function returns a :class:`Derivation` that records how the
file was made (the exact ffmpeg argument list, the ffmpeg version, the tail of its log),
which is what evidence practice (ISO/IEC 27037, SWGDE) asks for a derivative.

Outputs are atomic: ffmpeg writes a hidden temporary name in the output directory; only
when ffmpeg exited 0 *and* ffprobe opened the result and found the expected codecs (and,
for time-based media, not less duration than the source) is it fsynced and renamed to its
final name. On a failure, a timeout or an exception from the progress callback, the
temporary file is removed, so no partial derivative is ever visible. With
``durable=False`` (every public function takes it) the fsyncs are left to the caller: the
worker writes into private scratch that a crash discards, and makes each derivative
durable while it hashes it, so ffmpeg's path does not wait for the disk (an fsync of a
100 MB remux costs about as much as the remux itself).

GB/T 18894-2016 accepts MP4 (H.264) for video and WAV/MP3 for audio, so an H.264/AAC
original only needs a stream copy into a fast-start MP4 (:func:`plan_access` says
``"remux"``); anything else (HEVC, MJPEG, PCM or AMR audio in a video, ...) is re-encoded
to H.264/AAC. Where only the audio is unfriendly (H.264 with PCM audio, common in MOV/AVI
recorders), the video is still copied bit for bit and only the audio is encoded.

ffmpeg runs with an argument list (never a shell string), ``-progress pipe:1`` feeds the
optional progress callback, stderr is drained on a thread (no pipe deadlock) and its last
4 KB are kept. Time limits are proportional to the duration (:data:`TIMEOUTS`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import queue
import re
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, Literal, NoReturn

from config.errors import EXIT_DATAERR, EXIT_TEMPFAIL, EXIT_UNAVAILABLE, LiuhenError
from config.settings import X264_PRESETS
from ingest.media import heif, mp4check
from storage import fsync_dir, fsync_file

__all__ = [
    "PLAN_REENCODE",
    "PLAN_REMUX",
    "STDERR_TAIL_BYTES",
    "TIMEOUTS",
    "AccessProfile",
    "AudioProfile",
    "DamagedSourceError",
    "Derivation",
    "DerivationError",
    "DerivationTimeout",
    "FfmpegMissingError",
    "FfmpegRun",
    "OutputProbe",
    "PhotoProfile",
    "PosterProfile",
    "ProxyProfile",
    "Timeouts",
    "VideoTiming",
    "ffmpeg_version",
    "join_segments",
    "make_access_copy",
    "make_audio_access",
    "make_photo_access",
    "make_poster",
    "make_proxy",
    "make_thumbnail",
    "plan_access",
    "probe_output",
    "run_ffmpeg",
    "video_timing",
]

log = logging.getLogger(__name__)

DerivationKind = Literal["access", "proxy", "poster", "audio", "joined", "recovered", "thumbnail"]
DerivationMethod = Literal["remux", "reencode", "extract", "recovered"]
ProgressCallback = Callable[[float], None]

PLAN_REMUX: Final = "remux"
PLAN_REENCODE: Final = "reencode"

STDERR_TAIL_BYTES: Final = 4096
_PROBE_TIMEOUT_S: Final = 60.0
_VERSION_TIMEOUT_S: Final = 30.0
# A derivative may be a little longer than its source (AAC priming), never much shorter:
# a shorter access copy would silently drop part of the evidence.
_DURATION_SHORTFALL_S: Final = 0.5
_DURATION_SHORTFALL_RATIO: Final = 0.02

_BROWSER_VIDEO: Final = frozenset({"h264"})
_BROWSER_PIX_FMTS: Final = frozenset({"yuv420p", "yuvj420p"})
_BROWSER_AUDIO_IN_VIDEO: Final = frozenset({"aac"})
_BROWSER_AUDIO_ONLY: Final = frozenset({"aac", "mp3"})
_X264_PRESETS: Final = frozenset(X264_PRESETS)  # the list the settings loader checks
_BITRATE_RE: Final = re.compile(r"^[1-9][0-9]*[kM]?$")
# Even output dimensions: libx264 with yuv420p refuses odd widths and heights.
_EVEN: Final = "scale=trunc(iw/2)*2:trunc(ih/2)*2"


# --- errors -------------------------------------------------------------------------


class DerivationError(LiuhenError):
    """ffmpeg could not make a derivative, or what it made failed the output check.

    ``command`` is the exact argument list and ``stderr_tail`` the end of ffmpeg's log.
    The original is never touched, and nothing is left under the output name.
    """

    exit_code = EXIT_DATAERR

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        command: Sequence[str] = (),
        stderr_tail: str = "",
    ) -> None:
        super().__init__(message, hint=hint)
        self.command = tuple(command)
        self.stderr_tail = stderr_tail


class DerivationTimeout(DerivationError):
    """ffmpeg ran past its time limit and was killed."""

    exit_code = EXIT_TEMPFAIL


class DamagedSourceError(DerivationError):
    """The derivative came out shorter than the original's streams say they last: the
    original is damaged part-way (its data ends before its index says it does).

    Deterministic: trying again makes the same short copy. ``reason`` is a sentence for
    the DAMAGED flag and its custody event.
    """

    def __init__(self, message: str, *, reason: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.reason = reason


class FfmpegMissingError(DerivationError):
    """ffmpeg or ffprobe (or an encoder it needs) is not available."""

    exit_code = EXIT_UNAVAILABLE


_INSTALL_HINT: Final = (
    "install ffmpeg built with libx264 (it provides ffmpeg and ffprobe), e.g. "
    "apt-get install ffmpeg, or configure the path to the ffmpeg binary"
)


# --- profiles -----------------------------------------------------------------------


def _check_x264(crf: int, preset: str) -> None:
    if not 0 <= crf <= 51:
        raise ValueError(f"crf {crf} is outside 0..51")
    if preset not in _X264_PRESETS:
        raise ValueError(f"preset {preset!r} is not an x264 preset ({sorted(_X264_PRESETS)})")


def _check_bitrate(name: str, value: str) -> None:
    if not _BITRATE_RE.match(value):
        raise ValueError(f"{name} {value!r} is not a bit rate such as '128k'")


def _check_height(value: int | None) -> None:
    if value is not None and (value < 16 or value % 2):
        raise ValueError(f"max_height {value} must be even and at least 16")


@dataclass(frozen=True)
class AccessProfile:
    """The access copy, when it must be re-encoded (H.264/AAC MP4, full resolution)."""

    crf: int = 23
    preset: str = "veryfast"
    audio_bitrate: str = "128k"

    def __post_init__(self) -> None:
        _check_x264(self.crf, self.preset)
        _check_bitrate("audio_bitrate", self.audio_bitrate)


@dataclass(frozen=True)
class ProxyProfile:
    """A small browser proxy: at most ``max_height`` lines, never upscaled."""

    max_height: int = 720
    crf: int = 28
    preset: str = "veryfast"
    audio_bitrate: str = "64k"

    def __post_init__(self) -> None:
        _check_x264(self.crf, self.preset)
        _check_bitrate("audio_bitrate", self.audio_bitrate)
        _check_height(self.max_height)


@dataclass(frozen=True)
class PosterProfile:
    """A JPEG poster frame taken at ``min(offset_s, duration / 2)``."""

    offset_s: float = 1.0
    max_height: int | None = 720  # None: the source's own size
    quality: int = 3  # mjpeg -q:v, 2 (best) .. 31

    def __post_init__(self) -> None:
        if not (math.isfinite(self.offset_s) and self.offset_s >= 0):
            raise ValueError(f"offset_s {self.offset_s} must be a finite number >= 0")
        if not 2 <= self.quality <= 31:
            raise ValueError(f"quality {self.quality} is outside 2..31")
        _check_height(self.max_height)


@dataclass(frozen=True)
class AudioProfile:
    """The access copy of an audio-only recording: AAC in .m4a, or MP3."""

    codec: Literal["aac", "mp3"] = "aac"
    bitrate: str = "128k"

    def __post_init__(self) -> None:
        if self.codec not in ("aac", "mp3"):
            raise ValueError(f"audio codec {self.codec!r} is neither 'aac' nor 'mp3'")
        _check_bitrate("bitrate", self.bitrate)


@dataclass(frozen=True)
class Timeouts:
    """Time limits: ``max(min_s, per_s × duration)``; ``unknown_s`` without a duration."""

    remux_min_s: float = 30.0
    remux_per_s: float = 2.0
    reencode_min_s: float = 60.0
    reencode_per_s: float = 10.0
    unknown_s: float = 3600.0

    def limit(self, method: str, duration_s: float | None, factor: float) -> float:
        if not (math.isfinite(factor) and factor > 0):
            raise ValueError(f"timeout_factor {factor} must be a positive number")
        if duration_s is None or not math.isfinite(duration_s) or duration_s <= 0:
            return self.unknown_s * factor
        if method == PLAN_REENCODE:
            return max(self.reencode_min_s, self.reencode_per_s * duration_s) * factor
        return max(self.remux_min_s, self.remux_per_s * duration_s) * factor


TIMEOUTS: Final = Timeouts()


# --- results ------------------------------------------------------------------------


@dataclass(frozen=True)
class Derivation:
    """One derivative file and how it was made (for the derivation/custody record)."""

    kind: DerivationKind
    path: Path  # the final output
    method: DerivationMethod
    command: tuple[str, ...]  # the exact ffmpeg argv that wrote it
    ffmpeg_version: str  # first line of `ffmpeg -version`
    duration_s: float | None  # of the output, by ffprobe (None for a poster)
    elapsed_s: float  # wall time of the whole derivation, output check included
    stderr_tail: str  # last ~4 KB of ffmpeg's log
    sources: tuple[Path, ...] = field(default=())  # the input(s), as given


@dataclass(frozen=True)
class FfmpegRun:
    """What :func:`run_ffmpeg` saw: exit status, log tail, time, last progress values."""

    returncode: int
    stderr_tail: str
    elapsed_s: float
    frames: int | None  # the last ``frame=`` progress value
    out_time_s: float | None  # the last ``out_time_us=`` progress value


# --- running ffmpeg -----------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def ffmpeg_version(ffmpeg: str = "ffmpeg") -> str:
    """First line of ``ffmpeg -version`` (cached per binary)."""
    command = [ffmpeg, "-version"]
    try:
        proc = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
            timeout=_VERSION_TIMEOUT_S,
        )
    except OSError as exc:
        raise FfmpegMissingError(
            f"cannot run {ffmpeg!r}: {exc.strerror or exc}", hint=_INSTALL_HINT, command=command
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise DerivationTimeout(
            f"{ffmpeg} -version did not answer within {_VERSION_TIMEOUT_S:.0f} s",
            hint="the machine may be overloaded",
            command=command,
        ) from exc
    text = proc.stdout.decode("utf-8", "replace").strip()
    if proc.returncode != 0 or not text:
        raise FfmpegMissingError(
            f"{ffmpeg} -version failed with status {proc.returncode}",
            hint=_INSTALL_HINT,
            command=command,
            stderr_tail=_decode_tail(proc.stderr),
        )
    return text.splitlines()[0]


def _decode_tail(data: bytes) -> str:
    tail = data[-STDERR_TAIL_BYTES:]
    text = tail.decode("utf-8", "replace")
    if len(data) > STDERR_TAIL_BYTES and "\n" in text:
        text = text[text.index("\n") + 1 :]  # start at a whole line
    return text.strip()


def _drain_stderr(stream: IO[bytes], sink: list[bytes]) -> None:
    """Read stderr to EOF keeping only the last few KB (bounded memory on noisy logs)."""
    kept = b""
    for chunk in iter(lambda: stream.read(65536), b""):
        kept = (kept + chunk)[-2 * STDERR_TAIL_BYTES :]
    sink.append(kept)


@dataclass
class _Progress:
    frames: int | None = None
    out_time_s: float | None = None


def _read_progress(
    stream: IO[bytes],
    updates: queue.Queue[float | None],
    seen: _Progress,
    duration_s: float | None,
) -> None:
    """Parse ``-progress pipe:1`` key=value lines; queue fractions for the caller's thread."""
    last: float | None = None
    try:
        for raw in stream:
            key, _, value = raw.decode("ascii", "replace").strip().partition("=")
            if key == "frame":
                with contextlib.suppress(ValueError):
                    seen.frames = int(value)
            elif key in ("out_time_us", "out_time_ms"):
                # Both are microseconds (out_time_ms is misnamed in ffmpeg).
                try:
                    seconds = max(0, int(value)) / 1e6
                except ValueError:
                    continue  # "N/A" before the first packet
                seen.out_time_s = seconds
                if duration_s:
                    fraction = min(1.0, seconds / duration_s)
                    if fraction != last:
                        last = fraction
                        updates.put(fraction)
            elif key == "progress" and value == "end" and last != 1.0:
                last = 1.0
                updates.put(1.0)
    finally:
        updates.put(None)


def run_ffmpeg(
    command: Sequence[str],
    *,
    timeout_s: float,
    duration_s: float | None = None,
    on_progress: ProgressCallback | None = None,
) -> FfmpegRun:
    """Run one ffmpeg command (argument list); return its status, never raise on one.

    The command must write progress to ``pipe:1`` (``-progress pipe:1``) for
    ``on_progress``, which is called on the caller's thread with a fraction 0..1 when
    ``duration_s`` is known (and 1.0 at the end). Raises :class:`FfmpegMissingError`
    when the binary cannot be started and :class:`DerivationTimeout` (after killing
    ffmpeg) past ``timeout_s``. An exception from ``on_progress`` kills ffmpeg and
    propagates.
    """
    argv = list(command)
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except OSError as exc:
        raise FfmpegMissingError(
            f"cannot run {argv[0]!r}: {exc.strerror or exc}", hint=_INSTALL_HINT, command=argv
        ) from exc
    assert proc.stdout is not None and proc.stderr is not None
    updates: queue.Queue[float | None] = queue.Queue()
    seen = _Progress()
    err_sink: list[bytes] = []
    readers = [
        threading.Thread(
            target=_read_progress,
            args=(proc.stdout, updates, seen, duration_s),
            name="ffmpeg-progress",
            daemon=True,
        ),
        threading.Thread(
            target=_drain_stderr,
            args=(proc.stderr, err_sink),
            name="ffmpeg-stderr",
            daemon=True,
        ),
    ]
    for reader in readers:
        reader.start()
    deadline = started + timeout_s
    timed_out = False
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            try:
                item = updates.get(timeout=remaining)
            except queue.Empty:
                timed_out = True
                break
            if item is None:  # stdout closed: ffmpeg is exiting
                break
            if on_progress is not None:
                on_progress(item)
        if not timed_out:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out = True
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for reader in readers:
            reader.join()
        proc.stdout.close()
        proc.stderr.close()
    elapsed = time.monotonic() - started
    tail = _decode_tail(err_sink[0] if err_sink else b"")
    if timed_out:
        raise DerivationTimeout(
            f"ffmpeg timeout: killed after {timeout_s:.3g} s: {_short(argv)}",
            hint="the machine may be overloaded or the input unusually slow to decode; "
            "raise timeout_factor",
            command=argv,
            stderr_tail=tail,
        )
    return FfmpegRun(proc.returncode, tail, elapsed, seen.frames, seen.out_time_s)


def _short(argv: Sequence[str]) -> str:
    text = " ".join(argv)
    return text if len(text) <= 300 else text[:297] + "..."


def _base(ffmpeg: str) -> list[str]:
    return [ffmpeg, "-nostdin", "-hide_banner", "-y", "-progress", "pipe:1", "-nostats"]


# --- ffprobe ------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputProbe:
    """The few ffprobe fields the output checks and joins need."""

    streams: tuple[Mapping[str, Any], ...]
    duration_s: float | None

    def codecs(self, codec_type: str) -> list[str]:
        return [str(s.get("codec_name")) for s in self.streams if s.get("codec_type") == codec_type]

    def signature(self) -> tuple[tuple[Any, ...], ...]:
        """What must match for a stream-copy concatenation."""
        keys = (
            "codec_type",
            "codec_name",
            "width",
            "height",
            "pix_fmt",
            "sample_rate",
            "channels",
            "profile",
        )
        return tuple(
            tuple(s.get(k) for k in keys)
            for s in self.streams
            if s.get("codec_type") in ("video", "audio")
        )


def _quick_probe(path: Path) -> OutputProbe | None:
    """The same fields from the MP4's own boxes, for a fast-start MP4 (see mp4check)."""
    name = path.name.lower()  # temp names look like .<final name>.<hex>.partial
    if name.endswith((".jpg", ".jpeg")) or ".jpg." in name or ".jpeg." in name:
        size = mp4check.jpeg_size(path)
        if size is None:
            return None
        return OutputProbe(
            ({"codec_type": "video", "codec_name": "mjpeg", "width": size[0], "height": size[1]},),
            None,
        )
    summary = mp4check.summarise(path)
    if summary is None or not summary.moov_first or not summary.streams:
        return None
    streams = tuple({"codec_type": t, "codec_name": c} for t, c in summary.streams)
    return OutputProbe(streams, summary.duration_s)


def probe_output(ffprobe: str, path: Path) -> OutputProbe:
    """ffprobe a file (a derivative, or a segment to join); raise when it does not open."""
    command = [
        ffprobe,
        "-v",
        "error",
        "-of",
        "json",
        "-show_entries",
        "stream=codec_type,codec_name,width,height,pix_fmt,sample_rate,channels,profile"
        ":format=duration",
        str(path),
    ]
    try:
        proc = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
            timeout=_PROBE_TIMEOUT_S,
        )
    except OSError as exc:
        raise FfmpegMissingError(
            f"cannot run {ffprobe!r}: {exc.strerror or exc}", hint=_INSTALL_HINT, command=command
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise DerivationTimeout(
            f"ffprobe timeout on {path.name} after {_PROBE_TIMEOUT_S:.0f} s", command=command
        ) from exc
    tail = _decode_tail(proc.stderr)
    if proc.returncode != 0:
        raise DerivationError(
            f"ffprobe cannot read {path.name}: {tail or f'status {proc.returncode}'}",
            command=command,
            stderr_tail=tail,
        )
    try:
        data = json.loads(proc.stdout)
    except ValueError as exc:
        raise DerivationError(f"ffprobe printed no JSON for {path.name}", command=command) from exc
    streams = tuple(s for s in data.get("streams", ()) if isinstance(s, dict))
    duration: float | None = None
    try:
        duration = float(data.get("format", {}).get("duration"))
    except (TypeError, ValueError):
        duration = None
    if duration is not None and not math.isfinite(duration):
        duration = None
    return OutputProbe(streams, duration)


# --- planning -----------------------------------------------------------------------


def _norm(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip().lower()
    return text or None


def _info_kind(info: Mapping[str, Any]) -> str:
    kind = _norm(info.get("kind"))
    if kind in ("video", "audio", "image"):
        return kind
    if kind == "photo":  # what the probe calls a still image
        return "image"
    if _norm(info.get("video_codec")):
        return "video"
    if _norm(info.get("audio_codec")):
        return "audio"
    raise ValueError(f"cannot tell the kind of recording from {dict(info)!r}")


def _pix_fmt(info: Mapping[str, Any]) -> str | None:
    # "pixel_format" is what ingest.media.probe.ProbeResult calls it.
    return _norm(info.get("pix_fmt", info.get("pixel_format")))


def _video_friendly(info: Mapping[str, Any]) -> bool:
    return _norm(info.get("video_codec")) in _BROWSER_VIDEO and _pix_fmt(info) in _BROWSER_PIX_FMTS


def plan_access(probe_info: Mapping[str, Any]) -> str:
    """``"remux"`` when the original's codecs play in a browser and are archival, else
    ``"reencode"``.

    ``probe_info`` is a minimal dict: ``video_codec``, ``pix_fmt`` (or ``pixel_format``),
    ``audio_codec`` (``None`` when there is no audio) and ``kind`` (``"video"``,
    ``"audio"`` or ``"image"``; inferred from the codecs when missing). Video remuxes
    when it is H.264 in 4:2:0 8-bit (``yuv420p``/``yuvj420p``) with AAC or no audio;
    audio-only remuxes when it is AAC or MP3. An unknown pixel format is taken as
    unfriendly. Images get no access copy: ``ValueError``.
    """
    kind = _info_kind(probe_info)
    audio = _norm(probe_info.get("audio_codec"))
    if kind == "image":
        raise ValueError("images get no access copy: JPEG originals are archival as they are")
    if kind == "audio":
        return PLAN_REMUX if audio in _BROWSER_AUDIO_ONLY else PLAN_REENCODE
    if _video_friendly(probe_info) and (audio is None or audio in _BROWSER_AUDIO_IN_VIDEO):
        return PLAN_REMUX
    return PLAN_REENCODE


# --- the common driver --------------------------------------------------------------


def _final_path(src: Path, out_dir: Path, name: str | None, suffix: str) -> Path:
    if name is not None and (
        not name or name.startswith(".") or "/" in name or os.sep in name or "\0" in name
    ):
        raise ValueError(f"output name {name!r} must be a plain, non-hidden file name")
    final = out_dir / (name or f"{src.stem}{suffix}")
    if final.exists() and final.resolve() == src.resolve():
        raise ValueError(f"{final}: the output would overwrite the original")
    return final


def _temp_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.{secrets.token_hex(4)}.partial")


def _written(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False


def _check_output(
    ffprobe: str,
    tmp: Path,
    final: Path,
    *,
    expected: Mapping[str, str],
    expected_s: float | None,
    command: Sequence[str],
    stderr_tail: str,
) -> OutputProbe:
    try:
        probed = _quick_probe(tmp) or probe_output(ffprobe, tmp)
    except FfmpegMissingError:
        raise
    except DerivationError as exc:
        raise DerivationError(
            f"{final.name}: ffmpeg reported success but the output does not open: {exc.message}",
            hint="see the ffmpeg log; the original is unchanged",
            command=command,
            stderr_tail=stderr_tail,
        ) from exc
    for codec_type, codec in expected.items():
        found = probed.codecs(codec_type)
        if codec not in found:
            raise DerivationError(
                f"{final.name}: expected a {codec} {codec_type} stream, found {found or 'none'}",
                hint="see the ffmpeg log; the original is unchanged",
                command=command,
                stderr_tail=stderr_tail,
            )
    min_duration_s = _min_duration(expected_s)
    if expected_s is not None and min_duration_s is not None:
        got = probed.duration_s
        if got is None or got < min_duration_s:
            lasted = f"{got:.3f} s" if got is not None else "an unknown time"
            raise DamagedSourceError(
                f"{final.name}: output lasts {lasted}, "
                f"less than the expected {min_duration_s:.3f} s",
                reason=f"its streams decode to {lasted} of the {expected_s:.3f} s "
                "its index declares (the media data ends early)",
                hint="the original may be damaged part-way; the original is unchanged",
                command=command,
                stderr_tail=stderr_tail,
            )
    return probed


def _min_duration(duration_s: float | None) -> float | None:
    if duration_s is None or not math.isfinite(duration_s) or duration_s <= 0:
        return None
    return duration_s - max(_DURATION_SHORTFALL_S, _DURATION_SHORTFALL_RATIO * duration_s)


def _derive(
    *,
    kind: DerivationKind,
    method: DerivationMethod,
    sources: Sequence[Path],
    final: Path,
    build: Callable[[Path], list[str]],
    expected: Mapping[str, str],
    duration_s: float | None,
    check_duration: bool,
    timeout_s: float,
    on_progress: ProgressCallback | None,
    ffmpeg: str,
    ffprobe: str,
    durable: bool,
    fallbacks: Sequence[Callable[[Path], list[str]]] = (),
) -> Derivation:
    """Run ffmpeg into a temp name, check the result, then (``durable``) fsync and rename it.

    ffmpeg may exit 0 having written nothing (a poster asked for a time after the last
    frame it could decode). That is never success: the ``fallbacks`` (other commands
    for the same output) are tried in order, and when none writes anything the
    derivation fails, saying so.

    Without ``durable`` the checked file is renamed into place unsynced: still never
    visible before it is complete and checked, but a crash may lose it (or leave it
    short, on a filesystem that does not order the rename after the data). That is for a
    caller that makes the file durable itself, later and off ffmpeg's path (the worker
    syncs it while hashing it, before the store links it), or discards it on a crash.
    """
    started = time.monotonic()
    version = ffmpeg_version(ffmpeg)  # also fails fast, before any file, if ffmpeg is missing
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(final)
    try:
        command, run = _first_output(
            (build, *fallbacks),
            tmp,
            final,
            timeout_s=timeout_s,
            duration_s=duration_s,
            on_progress=on_progress,
        )
        probed = _check_output(
            ffprobe,
            tmp,
            final,
            expected=expected,
            expected_s=duration_s if check_duration else None,
            command=command,
            stderr_tail=run.stderr_tail,
        )
        if durable:
            fsync_file(tmp)
        os.replace(tmp, final)
        if durable:
            fsync_dir(final.parent)
    finally:
        tmp.unlink(missing_ok=True)
    elapsed = time.monotonic() - started
    log.info("%s %s of %s -> %s in %.2f s", method, kind, sources[0].name, final, elapsed)
    return Derivation(
        kind=kind,
        path=final,
        method=method,
        command=tuple(command),
        ffmpeg_version=version,
        duration_s=probed.duration_s if kind != "poster" else None,
        elapsed_s=elapsed,
        stderr_tail=run.stderr_tail,
        sources=tuple(sources),
    )


def _first_output(
    attempts: Sequence[Callable[[Path], list[str]]],
    tmp: Path,
    final: Path,
    *,
    timeout_s: float,
    duration_s: float | None,
    on_progress: ProgressCallback | None,
) -> tuple[list[str], FfmpegRun]:
    """Run the commands in order until one writes something; a failure raises at once."""
    command: list[str] = []
    run: FfmpegRun | None = None
    for attempt in attempts:
        command = attempt(tmp)
        run = run_ffmpeg(
            command, timeout_s=timeout_s, duration_s=duration_s, on_progress=on_progress
        )
        if run.returncode != 0:
            _raise_failed(command, run, final)
        if _written(tmp):
            return command, run
        log.info("%s: ffmpeg wrote nothing: %s", final.name, _short(command))
    raise DerivationError(
        f"{final.name}: ffmpeg exited 0 but wrote nothing "
        f"(tried {len(attempts)} way{'s' if len(attempts) > 1 else ''})",
        hint="the original may hold no decodable frame or sample; it is unchanged",
        command=command,
        stderr_tail=run.stderr_tail if run is not None else "",
    )


def _raise_failed(command: Sequence[str], run: FfmpegRun, final: Path) -> NoReturn:
    tail = run.stderr_tail
    last = tail[-1500:] if tail else "(no output)"
    decoder = re.search(r"Decoder \(codec (\w+)\) not found|No decoder for codec (\w+)", tail)
    if decoder is not None:
        missing = decoder.group(1) or decoder.group(2)
        raise FfmpegMissingError(
            f"{final.name}: unsupported here: this ffmpeg has no {missing} decoder",
            hint=f"install an ffmpeg built with the {missing} decoder; the original is kept",
            command=command,
            stderr_tail=tail,
        )
    if "Unknown encoder" in tail or "Encoder not found" in tail:
        raise FfmpegMissingError(
            f"{final.name}: this ffmpeg lacks an encoder it needs: {last}",
            hint=_INSTALL_HINT,
            command=command,
            stderr_tail=tail,
        )
    raise DerivationError(
        f"{final.name}: ffmpeg exited with status {run.returncode}: {last}",
        hint="the original may be damaged or in an unsupported format; it is unchanged",
        command=command,
        stderr_tail=tail,
    )


def _keep_frame_times(ffmpeg: str) -> list[str]:
    """Output options that keep every frame at its source time (variable frame rate).

    ffmpeg's default for MP4 output is a constant rate: it duplicates and drops frames
    to fill a grid at the stream's guessed rate, so a phone video whose first frame
    comes 0.27 s after its audio got a proxy 0.27 s longer than its video, its first
    picture shown before it was taken. ``vfr`` passes frames with their own times
    (dropping only exact duplicates). The option is ``-fps_mode`` since ffmpeg 5.1,
    ``-vsync`` before it.
    """
    match = re.search(r"version n?(\d+)\.(\d+)", ffmpeg_version(ffmpeg))
    old = match is not None and (int(match.group(1)), int(match.group(2))) < (5, 1)
    return ["-vsync" if old else "-fps_mode", "vfr"]


def _scale_to(max_height: int) -> str:
    # Never upscale; -2 keeps the aspect ratio with an even width; the height is even too.
    return f"scale=w=-2:h='trunc(min({max_height},ih)/2)*2'"


# --- public derivations -------------------------------------------------------------


def _access_codecs(
    plan: str, info: Mapping[str, Any], profile: AccessProfile, ffmpeg: str
) -> tuple[DerivationMethod, list[str]]:
    """The access copy's method and its stream and codec arguments."""
    if plan == PLAN_REMUX:
        method: DerivationMethod = "remux"
        codec_args = ["-map", "0:V?", "-map", "0:a?", "-c", "copy"]
    else:
        method = "reencode"
        # Encode only what is unfriendly: a stream that is already fine is copied bit for
        # bit (no generation loss, exact timing), e.g. the AAC of an HEVC recording or the
        # H.264 of a MOV with PCM audio.
        if _video_friendly(info):
            video = ["-c:v", "copy"]
        else:
            video = [
                "-vf",
                _EVEN,
                *_keep_frame_times(ffmpeg),
                "-c:v",
                "libx264",
                "-preset",
                profile.preset,
                "-crf",
                str(profile.crf),
                "-pix_fmt",
                "yuv420p",
            ]
        if _norm(info.get("audio_codec")) in _BROWSER_AUDIO_IN_VIDEO:
            audio = ["-c:a", "copy"]
        else:
            audio = ["-c:a", "aac", "-b:a", profile.audio_bitrate]
        codec_args = ["-map", "0:V:0", "-map", "0:a:0?", *video, *audio]
    return method, codec_args


def make_access_copy(
    src: Path,
    out_dir: Path,
    *,
    info: Mapping[str, Any],
    profile: AccessProfile = AccessProfile(),
    audio_profile: AudioProfile = AudioProfile(),
    ffmpeg: str = "ffmpeg",
    ffprobe: str = "ffprobe",
    duration_s: float | None = None,
    on_progress: ProgressCallback | None = None,
    timeout_factor: float = 1.0,
    name: str | None = None,
    durable: bool = True,
) -> Derivation:
    """An H.264/AAC MP4 (``-movflags +faststart``) next to, never instead of, the original.

    Stream copy when :func:`plan_access` says ``"remux"``; otherwise libx264 + AAC, with
    the video still copied when only the audio is unfriendly. Global metadata (title,
    creation_time, comment) is carried over. Audio-only recordings are handed to
    :func:`make_audio_access` (kind ``"audio"``), photos (``info["kind"]`` ``"image"``
    or ``"photo"``) to :func:`make_photo_access` (a JPEG). The default name is
    ``<stem>.access.mp4`` in ``out_dir``.
    """
    kind = _info_kind(info)
    if kind == "image":
        return make_photo_access(
            src,
            out_dir,
            ffmpeg=ffmpeg,
            ffprobe=ffprobe,
            timeout_factor=timeout_factor,
            name=name,
            durable=durable,
        )
    if kind == "audio":
        return make_audio_access(
            src,
            out_dir,
            info=info,
            profile=audio_profile,
            ffmpeg=ffmpeg,
            ffprobe=ffprobe,
            duration_s=duration_s,
            on_progress=on_progress,
            timeout_factor=timeout_factor,
            name=name,
            durable=durable,
        )
    if kind != "video":
        raise ValueError(f"{src.name}: no access copy for a {kind}")
    plan = plan_access(info)
    final = _final_path(src, out_dir, name, ".access.mp4")
    has_audio = _norm(info.get("audio_codec")) is not None
    expected = {"video": "h264", **({"audio": "aac"} if has_audio else {})}
    head = _base(ffmpeg)

    method, codec_args = _access_codecs(plan, info, profile, ffmpeg)
    container = ["-map_metadata", "0", "-movflags", "+faststart", "-f", "mp4"]

    def build(tmp: Path) -> list[str]:
        return [*head, "-i", str(src), *codec_args, *container, str(tmp)]

    return _derive(
        kind="access",
        method=method,
        sources=[src],
        final=final,
        build=build,
        expected=expected,
        duration_s=duration_s,
        check_duration=True,
        timeout_s=TIMEOUTS.limit(method, duration_s, timeout_factor),
        on_progress=on_progress,
        ffmpeg=ffmpeg,
        ffprobe=ffprobe,
        durable=durable,
    )


def make_proxy(
    src: Path,
    out_dir: Path,
    *,
    info: Mapping[str, Any] | None = None,
    profile: ProxyProfile = ProxyProfile(),
    ffmpeg: str = "ffmpeg",
    ffprobe: str = "ffprobe",
    duration_s: float | None = None,
    on_progress: ProgressCallback | None = None,
    timeout_factor: float = 1.0,
    name: str | None = None,
    durable: bool = True,
) -> Derivation:
    """A small H.264/AAC MP4 for the browser: at most ``profile.max_height`` lines.

    Scaled keeping the aspect ratio, never upscaled, even dimensions; the first video
    stream and the first audio stream (if any). ``info`` (as for :func:`plan_access`)
    only sharpens the output check: with an ``audio_codec`` the proxy must carry AAC.
    Default name ``<stem>.proxy.mp4``.
    """
    final = _final_path(src, out_dir, name, ".proxy.mp4")
    has_audio = info is not None and _norm(info.get("audio_codec")) is not None
    expected = {"video": "h264", **({"audio": "aac"} if has_audio else {})}
    head = _base(ffmpeg)
    frame_times = _keep_frame_times(ffmpeg)

    def build(tmp: Path) -> list[str]:
        return [
            *head,
            "-i",
            str(src),
            "-map",
            "0:V:0",
            "-map",
            "0:a:0?",
            "-vf",
            _scale_to(profile.max_height),
            *frame_times,
            "-c:v",
            "libx264",
            "-preset",
            profile.preset,
            "-crf",
            str(profile.crf),
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-b:a",
            profile.audio_bitrate,
            "-map_metadata",
            "0",
            "-movflags",
            "+faststart",
            "-f",
            "mp4",
            str(tmp),
        ]

    return _derive(
        kind="proxy",
        method="reencode",
        sources=[src],
        final=final,
        build=build,
        expected=expected,
        duration_s=duration_s,
        check_duration=True,
        timeout_s=TIMEOUTS.limit(PLAN_REENCODE, duration_s, timeout_factor),
        on_progress=on_progress,
        ffmpeg=ffmpeg,
        ffprobe=ffprobe,
        durable=durable,
    )


@dataclass(frozen=True)
class VideoTiming:
    """When the first video stream's frames are, from ffprobe's stream fields.

    ``offset_s``: its first frame after the start of the file (ffmpeg's ``-ss`` counts
    from the file's start, and an AVCHD clip's video starts 80 ms after its audio);
    ``duration_s``: from its first frame to the end of its last; ``frame_s``: one frame.
    """

    offset_s: float
    duration_s: float | None
    frame_s: float

    def poster_at(self, wanted_s: float) -> float:
        """``wanted_s`` into the video, but at most half way and never after the start
        of the last frame: a seek past it decodes nothing (ffmpeg still exits 0)."""
        if self.duration_s is None:
            return self.offset_s
        last_start = max(0.0, self.duration_s - self.frame_s)
        return self.offset_s + min(wanted_s, last_start / 2)


def _seconds(value: object) -> float | None:
    try:
        number = float(str(value))
    except ValueError:
        if "/" not in str(value):
            return None
        top, _, bottom = str(value).partition("/")
        try:
            number = float(top) / float(bottom)
        except (ValueError, ZeroDivisionError):
            return None
    return number if math.isfinite(number) else None


def video_timing(ffprobe: str, src: Path, duration_s: float | None = None) -> VideoTiming | None:
    """The first video stream's :class:`VideoTiming`; None when ffprobe finds none."""
    command = [
        ffprobe,
        "-v",
        "error",
        "-select_streams",
        "V:0",
        "-of",
        "json",
        "-show_entries",
        "stream=start_time,duration,avg_frame_rate,r_frame_rate:format=start_time,duration",
        str(src),
    ]
    try:
        proc = subprocess.run(
            command, stdin=subprocess.DEVNULL, capture_output=True, timeout=_PROBE_TIMEOUT_S
        )
        data = json.loads(proc.stdout) if proc.returncode == 0 else {}
    except OSError as exc:
        raise FfmpegMissingError(
            f"cannot run {ffprobe!r}: {exc.strerror or exc}", hint=_INSTALL_HINT, command=command
        ) from exc
    except (subprocess.TimeoutExpired, ValueError):
        return None
    streams = data.get("streams") or []
    if not streams:
        return None
    stream, fmt = streams[0], data.get("format") or {}
    file_start = _seconds(fmt.get("start_time")) or 0.0
    start = _seconds(stream.get("start_time"))
    offset = max(0.0, start - file_start) if start is not None else 0.0
    length = _seconds(stream.get("duration"))
    if length is None or length <= 0:
        whole = _seconds(fmt.get("duration")) or duration_s
        length = whole - offset if whole is not None and whole > offset else None
    rate = _seconds(stream.get("avg_frame_rate")) or _seconds(stream.get("r_frame_rate"))
    return VideoTiming(offset, length, 1.0 / rate if rate and rate > 0 else 0.0)


def make_poster(
    src: Path,
    out_dir: Path,
    *,
    profile: PosterProfile = PosterProfile(),
    ffmpeg: str = "ffmpeg",
    ffprobe: str = "ffprobe",
    duration_s: float | None = None,
    on_progress: ProgressCallback | None = None,
    timeout_factor: float = 1.0,
    name: str | None = None,
    durable: bool = True,
) -> Derivation:
    """A JPEG poster frame ``profile.offset_s`` into the video, at most half way through
    its frames (see :meth:`VideoTiming.poster_at`), at most ``profile.max_height``
    lines. The time comes from the video stream's own timing, not the container's
    duration (a 0.17 s phone clip has three frames, the last starting at 0.067 s).
    When the seek decodes nothing (a clip whose only keyframe is its first), the first
    decodable frame is taken; when even that gives nothing, :class:`DerivationError`.
    Default name ``<stem>.poster.jpg``.
    """
    final = _final_path(src, out_dir, name, ".poster.jpg")
    timing = video_timing(ffprobe, src, duration_s)
    if timing is not None:
        at = timing.poster_at(profile.offset_s)
    else:
        at = 0.0 if not duration_s or duration_s <= 0 else min(profile.offset_s, duration_s / 2)
    scale = ["-vf", _scale_to(profile.max_height)] if profile.max_height else []
    head = _base(ffmpeg)

    def one_frame(seek: list[str]) -> Callable[[Path], list[str]]:
        def build(tmp: Path) -> list[str]:
            # -ss before -i seeks in the demuxer and decodes from the previous keyframe:
            # exact and fast even deep into a long recording.
            return [
                *head,
                *seek,
                "-i",
                str(src),
                "-map",
                "0:V:0",
                "-frames:v",
                "1",
                *scale,
                "-c:v",
                "mjpeg",
                "-q:v",
                str(profile.quality),
                "-map_metadata",
                "-1",
                "-f",
                "mjpeg",
                str(tmp),
            ]

        return build

    return _derive(
        kind="poster",
        method="extract",
        sources=[src],
        final=final,
        build=one_frame(["-ss", f"{at:.3f}"]),
        fallbacks=[one_frame([])] if at > 0 else [],
        expected={"video": "mjpeg"},
        duration_s=None,
        check_duration=False,
        # One frame: the remux limit (30 s by default) however long the recording is.
        timeout_s=TIMEOUTS.limit(PLAN_REMUX, max(at, 1.0), timeout_factor),
        on_progress=on_progress,
        ffmpeg=ffmpeg,
        ffprobe=ffprobe,
        durable=durable,
    )


@dataclass(frozen=True)
class PhotoProfile:
    """A photo's JPEG access copy (full size) and thumbnail (longest side ``thumb_max``)."""

    quality: int = 2  # mjpeg -q:v of a re-encoded access copy, 2 (best) .. 31
    thumb_max: int = 320
    thumb_quality: int = 4

    def __post_init__(self) -> None:
        for value in (self.quality, self.thumb_quality):
            if not 2 <= value <= 31:
                raise ValueError(f"quality {value} is outside 2..31")
        _check_height(self.thumb_max)


_HEIF_ROTATIONS: Final = {
    0: [],
    1: ["transpose=cclock"],
    2: ["hflip", "vflip"],
    3: ["transpose=clock"],
}


@contextlib.contextmanager
def _photo_input(src: Path, scratch: Path) -> Iterator[tuple[list[str], list[str]]]:
    """ffmpeg input arguments and the filters that make the picture, for any photo.

    A HEIF photo (which this ffmpeg may not demux) is handed over as its HEVC tiles in
    a hidden raw stream next to the output, put back together by the ``tile`` filter,
    cropped to the picture's size and turned by its ``irot``; the stream is removed
    afterwards. Anything else is read by ffmpeg itself.
    """
    if not heif.is_heif(src):
        yield ["-i", str(src)], []
        return
    try:
        image = heif.read_heif(src)
    except (heif.HeifError, OSError) as exc:
        raise DerivationError(
            f"{src.name}: cannot read the HEIF image: {exc}",
            hint="the original is unchanged; it may use a HEIF layout not supported here",
        ) from exc
    stream = scratch / f".{src.name}.{secrets.token_hex(4)}.hevc"
    try:
        with src.open("rb") as f, stream.open("wb") as out:
            heif.write_tiles(f, image, out)
        filters = [
            f"tile={image.columns}x{image.rows}",
            f"crop={image.width}:{image.height}:0:0",
            *_HEIF_ROTATIONS[image.rotation],
        ]
        yield ["-f", "hevc", "-i", str(stream)], filters
    finally:
        stream.unlink(missing_ok=True)


def _photo_derivation(
    src: Path,
    out_dir: Path,
    *,
    kind: DerivationKind,
    final: Path,
    filters: list[str],
    quality: int,
    ffmpeg: str,
    ffprobe: str,
    timeout_factor: float,
    durable: bool,
) -> Derivation:
    head = _base(ffmpeg)
    out_dir.mkdir(parents=True, exist_ok=True)
    copy_jpeg = kind == "access" and not heif.is_heif(src) and _is_jpeg(src)
    with _photo_input(src, out_dir) as (source_args, source_filters):
        chain = [*source_filters, *filters]
        if copy_jpeg:
            # A JPEG original is already the archival and browser format: its bytes are
            # copied, never recompressed.
            codec = ["-c:v", "copy"]
        else:
            codec = [*(["-vf", ",".join(chain)] if chain else []), "-c:v", "mjpeg"]
            codec += ["-q:v", str(quality)]

        def build(tmp: Path) -> list[str]:
            return [
                *head,
                *source_args,
                "-map",
                "0:V:0",
                "-frames:v",
                "1",
                *codec,
                "-f",
                "mjpeg",
                str(tmp),
            ]

        return _derive(
            kind=kind,
            method="remux" if copy_jpeg else "reencode",
            sources=[src],
            final=final,
            build=build,
            expected={"video": "mjpeg"},
            duration_s=None,
            check_duration=False,
            timeout_s=TIMEOUTS.limit(PLAN_REENCODE, 1.0, timeout_factor),
            on_progress=None,
            ffmpeg=ffmpeg,
            ffprobe=ffprobe,
            durable=durable,
        )


def _is_jpeg(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(3) == b"\xff\xd8\xff"


def make_photo_access(
    src: Path,
    out_dir: Path,
    *,
    profile: PhotoProfile = PhotoProfile(),
    ffmpeg: str = "ffmpeg",
    ffprobe: str = "ffprobe",
    timeout_factor: float = 1.0,
    name: str | None = None,
    durable: bool = True,
) -> Derivation:
    """The JPEG access copy of a photo, full size (kind ``"access"``).

    A JPEG is copied as it is (method ``"remux"``); a HEIC (HEVC tiles, decoded here
    even where ffmpeg has no HEIF demuxer) or any other still image ffmpeg reads is
    encoded to JPEG. Default name ``<stem>.access.jpg``. A photo whose decoder this
    ffmpeg lacks raises :class:`FfmpegMissingError` naming it.
    """
    return _photo_derivation(
        src,
        out_dir,
        kind="access",
        final=_final_path(src, out_dir, name, ".access.jpg"),
        filters=[],
        quality=profile.quality,
        ffmpeg=ffmpeg,
        ffprobe=ffprobe,
        timeout_factor=timeout_factor,
        durable=durable,
    )


def make_thumbnail(
    src: Path,
    out_dir: Path,
    *,
    profile: PhotoProfile = PhotoProfile(),
    ffmpeg: str = "ffmpeg",
    ffprobe: str = "ffprobe",
    timeout_factor: float = 1.0,
    name: str | None = None,
    durable: bool = True,
) -> Derivation:
    """A small JPEG of a photo (kind ``"thumbnail"``): its longest side at most
    ``profile.thumb_max``, never upscaled, the aspect kept. Default ``<stem>.thumb.jpg``.
    """
    box = profile.thumb_max
    fit = (
        f"scale=w='min({box},iw)':h='min({box},ih)':force_original_aspect_ratio=decrease,"
        "scale=trunc(iw/2)*2:trunc(ih/2)*2"
    )
    return _photo_derivation(
        src,
        out_dir,
        kind="thumbnail",
        final=_final_path(src, out_dir, name, ".thumb.jpg"),
        filters=[fit],
        quality=profile.thumb_quality,
        ffmpeg=ffmpeg,
        ffprobe=ffprobe,
        timeout_factor=timeout_factor,
        durable=durable,
    )


def make_audio_access(
    src: Path,
    out_dir: Path,
    *,
    info: Mapping[str, Any] | None = None,
    profile: AudioProfile = AudioProfile(),
    ffmpeg: str = "ffmpeg",
    ffprobe: str = "ffprobe",
    duration_s: float | None = None,
    on_progress: ProgressCallback | None = None,
    timeout_factor: float = 1.0,
    name: str | None = None,
    durable: bool = True,
) -> Derivation:
    """The access copy of an audio-only recording: AAC in a fast-start ``.m4a``.

    An AAC or MP3 original (per ``info["audio_codec"]``) is stream-copied (AAC into
    ``.m4a``, MP3 into ``.mp3``); anything else (PCM WAV, AMR, ...) is encoded to
    ``profile.codec`` (AAC ``.m4a`` by default, or MP3). Only the first audio stream is
    kept (no cover art). Default name ``<stem>.audio.m4a`` / ``.mp3``.
    """
    source_codec = _norm(info.get("audio_codec")) if info is not None else None
    if source_codec in _BROWSER_AUDIO_ONLY:
        method: DerivationMethod = "remux"
        codec = source_codec
        codec_args = ["-c:a", "copy"]
    else:
        method = "reencode"
        codec = profile.codec
        encoder = "aac" if codec == "aac" else "libmp3lame"
        codec_args = ["-c:a", encoder, "-b:a", profile.bitrate]
    if codec == "aac":
        suffix, container = ".audio.m4a", ["-movflags", "+faststart", "-f", "ipod"]
    else:
        suffix, container = ".audio.mp3", ["-f", "mp3"]
    final = _final_path(src, out_dir, name, suffix)
    head = _base(ffmpeg)

    def build(tmp: Path) -> list[str]:
        return [
            *head,
            "-i",
            str(src),
            "-map",
            "0:a:0",
            "-vn",
            *codec_args,
            "-map_metadata",
            "0",
            *container,
            str(tmp),
        ]

    return _derive(
        kind="audio",
        method=method,
        sources=[src],
        final=final,
        build=build,
        expected={"audio": str(codec)},
        duration_s=duration_s,
        check_duration=True,
        timeout_s=TIMEOUTS.limit(method, duration_s, timeout_factor),
        on_progress=on_progress,
        ffmpeg=ffmpeg,
        ffprobe=ffprobe,
        durable=durable,
    )


def concat_list(paths: Iterable[Path]) -> str:
    """The concat demuxer's list file: ``file '<absolute path>'`` per line.

    Inside single quotes nothing is special but the quote itself, which is written as
    ``'\\''`` (close, escaped quote, reopen). A newline cannot be expressed: ValueError.
    """
    lines = []
    for path in paths:
        text = str(path.resolve())
        if "\n" in text or "\r" in text:
            raise ValueError(f"{text!r}: the concat list cannot hold a path with a newline")
        lines.append("file '" + text.replace("'", "'\\''") + "'\n")
    return "".join(lines)


def join_segments(
    segments: Sequence[Path],
    out_dir: Path,
    *,
    ffmpeg: str = "ffmpeg",
    ffprobe: str = "ffprobe",
    on_progress: ProgressCallback | None = None,
    timeout_factor: float = 1.0,
    name: str | None = None,
    durable: bool = True,
) -> Derivation:
    """Join the contiguous segments of one split recording into one MP4 (kind ``"joined"``).

    Stream copy through the concat demuxer, ``+faststart``, in the order given. Every
    segment is probed first: all must carry the same streams (codec, size, pixel format,
    sample rate, channels), else :class:`DerivationError`. The result keeps the segments'
    codecs (an HEVC join is still HEVC: make its access copy from the joined file).
    Default name ``<first stem>.joined.mp4``.
    """
    if not segments:
        raise ValueError("join_segments needs at least one segment")
    final = _final_path(segments[0], out_dir, name, ".joined.mp4")
    if any(final.exists() and final.resolve() == s.resolve() for s in segments):
        raise ValueError(f"{final}: the output would overwrite a segment")
    ffmpeg_version(ffmpeg)  # fail fast before probing anything
    probes = [probe_output(ffprobe, s) for s in segments]
    first = probes[0].signature()
    if not first:
        raise DerivationError(f"{segments[0].name}: no audio or video stream to join")
    for seg, p in zip(segments[1:], probes[1:], strict=True):
        if p.signature() != first:
            raise DerivationError(
                f"{seg.name} does not match {segments[0].name} ({p.signature()} vs {first}); "
                "only segments of one recording with the same settings can be joined",
                hint="join only the segments of one split recording",
            )
    durations = [p.duration_s for p in probes]
    total = sum(d for d in durations if d is not None) if None not in durations else None
    expected: dict[str, str] = {}
    for stream in probes[0].streams:
        codec_type = str(stream.get("codec_type"))
        if codec_type in ("video", "audio") and codec_type not in expected:
            expected[codec_type] = str(stream.get("codec_name"))

    out_dir.mkdir(parents=True, exist_ok=True)
    list_file = out_dir / f".{final.name}.{secrets.token_hex(4)}.concat.txt"
    head = _base(ffmpeg)

    def build(tmp: Path) -> list[str]:
        return [
            *head,
            "-f",
            "concat",
            "-safe",
            "0",
            "-i",
            str(list_file),
            "-map",
            "0:V?",
            "-map",
            "0:a?",
            "-c",
            "copy",
            "-map_metadata",
            "0",
            "-movflags",
            "+faststart",
            "-f",
            "mp4",
            str(tmp),
        ]

    try:
        list_file.write_text(concat_list(segments), encoding="utf-8")
        return _derive(
            kind="joined",
            method="remux",
            sources=list(segments),
            final=final,
            build=build,
            expected=expected,
            duration_s=total,
            check_duration=True,
            timeout_s=TIMEOUTS.limit(PLAN_REMUX, total, timeout_factor),
            on_progress=on_progress,
            ffmpeg=ffmpeg,
            ffprobe=ffprobe,
            durable=durable,
        )
    finally:
        list_file.unlink(missing_ok=True)
