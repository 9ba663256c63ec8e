"""What ffprobe says about a recording: container, codecs, duration, embedded time, device.

:func:`probe` runs ffprobe (an argument list, never a shell string) and condenses its JSON
into a :class:`ProbeResult` with the technical fields the catalog and the archive
descriptors need (DA/T 63 technical metadata: format, codec, resolution, frame rate,
bit rate, sample rate, duration, size, device make/model/serial). The whole ffprobe JSON
is kept in ``raw`` and ffprobe's stderr in ``stderr``, so nothing ffprobe said is lost.

Bad media is a finding, not an error: a file ffprobe cannot read (a recorder that lost
power before writing the ``moov`` atom, a text file under a video name, an empty file)
gives ``ok=False`` with ffprobe's own reason in ``error``, and so does a timeout.
:class:`ProbeToolMissing` is raised only when ffprobe itself cannot be run.

Kinds: ``"video"`` (a video stream that is not cover art), ``"audio"`` (audio streams
only), ``"image"`` (a still: one frame of an image codec, e.g. a JPEG that ffprobe
reads as a one-frame ``mjpeg`` stream of the ``image2`` demuxer) and ``"unknown"``. For
an image, ``duration_s``, ``frame_rate`` and ``bit_rate`` are ``None``: the values
ffprobe prints for a still (0.04 s at an assumed 25 fps) are demuxer defaults, not
properties of the photo.

Durations come from the streams, not from the container's estimate: the longest audio
or video stream (data streams such as GoPro telemetry are left out), and where ffprobe
only estimated the duration from the bit rate (it warns "Estimating duration from
bitrate", e.g. for AMR) the packets are counted and their timestamps summed up
(``duration_source``: ``streams``, ``packets`` or ``container``). ffprobe runs at
``-v warning`` and its warnings are kept in ``warnings``.

Unsupported is not damaged: a file this installation cannot decode gets ``ok=False``
with ``unsupported`` saying so and ``missing_decoder`` naming what is missing: a stream
whose codec has no decoder in this ffmpeg (``ffprobe -decoders``), or a HEIF photo whose
image cannot be decoded here. ffmpeg before 7.1 cannot open HEIF at all; its boxes are
read by :mod:`ingest.media.heif` instead: a HEIC (HEVC tiles) is a photo like any other
(decoded from its tiles), an AVIF is unsupported here, and a HEIF file whose items lie
past its end is damaged.

Photos (JPEG, HEIC) are ``kind == "image"``, with ``photo_format`` ("jpeg", "heic"),
their EXIF fields in ``exif``, ``orientation`` (EXIF 1-8) and ``rotation`` (degrees
clockwise to display upright; also from a video's display matrix).

Times: ``creation_time`` is the embedded capture time chosen by
:func:`ingest.media.timeevidence.read_embedded_time` (QuickTime creationdate with its
offset; EXIF; AVI IDIT and broadcast WAV bext as local times in the station's zone; the
container's UTC creation_time), with the text it came from (``creation_time_raw``),
the field (``creation_time_source``) and how it was read (``creation_time_rule``). A
stored zero (1904 or 1970) is reported as it is with ``creation_time_unset``; whether a
time is right is judged in :mod:`ingest.media.timeevidence`.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, Final, Literal

from config.errors import UnavailableError
from config.settings import zone_of
from ingest.media import embedded, heif
from ingest.media.timeevidence import DEFAULT_ZONE, EmbeddedTime, read_embedded_time

__all__ = [
    "IMAGE_CODECS",
    "Kind",
    "ProbeResult",
    "ProbeToolMissing",
    "probe",
]

Kind = Literal["video", "audio", "image", "unknown"]

# Codecs whose one-frame streams are stills rather than video.
IMAGE_CODECS: Final = frozenset(
    {"mjpeg", "jpeg2000", "jpegls", "png", "bmp", "tiff", "webp", "gif"}
)
# Demuxers that only ever read stills (image2, and the jpeg_pipe/png_pipe family).
_IMAGE_FORMATS: Final = frozenset({"image2", "image2pipe"})

# ffprobe prefixes log lines with the component: "[mov,mp4,... @ 0x55b05e2751c0] ".
_LOG_PREFIX_RE: Final = re.compile(r"^\[[^\]]*@ 0x[0-9a-fA-F]+\]\s*")
_MAX_REASON_LINES: Final = 4
# "serial=A123456 officer=010203" in a free-text comment tag.
_KEY_VALUE_RE: Final = re.compile(r"([A-Za-z_][A-Za-z0-9_.-]*)\s*[=:]\s*([^\s,;]+)")

_MAKE_TAGS: Final = ("make", "com.apple.quicktime.make", "manufacturer", "com.android.manufacturer")
_MODEL_TAGS: Final = ("model", "com.apple.quicktime.model", "com.android.model")
_SERIAL_TAGS: Final = (
    "serial",
    "serial_number",
    "serialnumber",
    "device_serial",
    "com.apple.quicktime.serial",
)
# ffprobe's warning when a container has no duration of its own (AMR, some MP3/TS).
_ESTIMATED: Final = "Estimating duration from bitrate"
# "(codec av1)" at the end of a decoder line names the codec a differently named decoder
# (libdav1d) decodes.
_CODEC_OF_RE: Final = re.compile(r"\(codec ([A-Za-z0-9_]+)\)\s*$")
_PHOTO_FORMATS: Final = {"mjpeg": "jpeg", "png": "png", "tiff": "tiff", "webp": "webp"}
_COMMENT_TAGS: Final = ("comment", "description")
_COMMENT_KEYS: Final = {
    "make": ("make", "manufacturer"),
    "model": ("model",),
    "serial": ("serial", "serial_number", "sn", "device_serial"),
    "officer_number": ("officer", "officer_number", "police_number"),
}


class ProbeToolMissing(UnavailableError):
    """ffprobe (or ffmpeg) is not installed, or the configured path cannot be run."""

    def __init__(self, tool: str, reason: str) -> None:
        super().__init__(
            f"cannot run {tool!r}: {reason}",
            hint="install ffmpeg (it provides ffmpeg and ffprobe, e.g. apt-get install ffmpeg) "
            "or set ffmpeg.ffprobe / ffmpeg.ffmpeg in the settings to the full path",
        )
        self.tool = tool


@dataclass(frozen=True)
class ProbeResult:
    """ffprobe's findings on one file. ``ok`` is False when ffprobe could not read it."""

    path: str
    ok: bool
    error: str | None = None  # ffprobe's reason when not ok, e.g. "moov atom not found; ..."
    container: str | None = None  # ffprobe format_name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    format_long_name: str | None = None
    duration_s: float | None = None
    size: int | None = None
    bit_rate: int | None = None  # overall, bit/s
    kind: Kind = "unknown"
    video_codec: str | None = None  # also the codec of an image ("mjpeg")
    width: int | None = None
    height: int | None = None
    frame_rate: float | None = None
    video_bit_rate: int | None = None
    pixel_format: str | None = None
    audio_codec: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    audio_bit_rate: int | None = None
    creation_time: datetime | None = None  # aware, UTC: the embedded capture time
    creation_time_raw: str | None = None  # the text it was read from
    creation_time_source: str | None = None  # timeevidence.EMBEDDED_*: which field
    creation_time_rule: str | None = None  # how the text was read (zone and why)
    creation_time_unset: bool = False  # a stored zero (1904/1970): never a capture time
    make: str | None = None
    model: str | None = None
    serial: str | None = None
    officer_number: str | None = None  # 警号, where a tag carries it
    tags: dict[str, str] = field(default_factory=dict)  # format tags, as ffprobe printed them
    raw: dict[str, Any] = field(default_factory=dict)  # the whole ffprobe JSON
    stderr: str = ""
    warnings: tuple[str, ...] = ()  # ffprobe's warnings (e.g. an estimated duration)
    duration_source: str | None = None  # "streams", "packets" (counted) or "container"
    video_duration_s: float | None = None  # of the first video stream
    audio_duration_s: float | None = None  # of the first audio stream
    damaged: str | None = None  # what is wrong with a file read from its own boxes (HEIF)
    unsupported: str | None = None  # why this installation cannot decode it (not damage)
    missing_decoder: str | None = None  # e.g. "avs2", "HEIF (ffmpeg 7.1 or later)"
    photo_format: str | None = None  # "jpeg", "heic", ... for kind == "image"
    exif: dict[str, Any] = field(default_factory=dict)  # a photo's EXIF fields
    orientation: int | None = None  # EXIF orientation 1-8 (1: upright)
    rotation: int | None = None  # degrees clockwise to show it upright (video, HEIC)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (datetimes as ISO 8601 strings)."""
        out: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, datetime):
                value = value.isoformat().replace("+00:00", "Z")
            elif isinstance(value, dict):
                value = dict(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[item.name] = value
        return out


def probe(
    path: Path,
    *,
    ffprobe: str = "ffprobe",
    timeout_s: float = 60,
    zone: tzinfo | str = DEFAULT_ZONE,
) -> ProbeResult:
    """Probe ``path`` with ffprobe. Never raises for bad media; see the module docstring.

    ``zone`` is the station's time zone (settings ``station.time_zone``), in which local
    times without a zone (AVI IDIT, BWF bext, EXIF) are read. Raises
    :class:`ProbeToolMissing` when ``ffprobe`` cannot be started and ``ValueError`` for a
    non-positive ``timeout_s`` or an unknown zone name.
    """
    if not (math.isfinite(timeout_s) and timeout_s > 0):
        raise ValueError(f"timeout_s must be a positive number of seconds, not {timeout_s}")
    local_zone = zone_of(zone) if isinstance(zone, str) else zone
    # An absolute path can be neither mistaken for an option ("-x.mp4") nor for an
    # ffmpeg protocol URL ("concat:a|b").
    target = os.path.abspath(path)
    command = [ffprobe, "-v", "warning", "-show_format", "-show_streams", "-of", "json", target]
    try:
        proc = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired as exc:
        return ProbeResult(
            path=str(path),
            ok=False,
            error=f"ffprobe timed out after {_seconds(timeout_s)} s",
            stderr=_text(exc.stderr),
        )
    except OSError as exc:  # not found, not executable, a directory ...
        raise ProbeToolMissing(ffprobe, exc.strerror or str(exc)) from exc

    stderr = _text(proc.stderr)
    if proc.returncode != 0:
        if proc.returncode < 0:
            fallback = f"ffprobe was killed by signal {-proc.returncode}"
        else:
            fallback = f"ffprobe exited with status {proc.returncode}"
        failed = ProbeResult(
            path=str(path), ok=False, error=_reason(stderr, target) or fallback, stderr=stderr
        )
        return _not_read_by_ffprobe(Path(target), failed, ffprobe, local_zone)
    try:
        data = json.loads(_text(proc.stdout))
    except json.JSONDecodeError as exc:
        return ProbeResult(
            path=str(path), ok=False, error=f"ffprobe printed invalid JSON: {exc}", stderr=stderr
        )
    if not isinstance(data, dict) or not isinstance(data.get("format"), dict):
        return ProbeResult(
            path=str(path), ok=False, error="ffprobe printed no format section", stderr=stderr
        )
    result = _summarise(str(path), data, stderr, local_zone, Path(target))
    if result.kind in ("video", "audio") and (_ESTIMATED in stderr or result.duration_s is None):
        result = _count_packets(result, ffprobe, target, timeout_s)
    return _check_decoders(result, ffprobe)


# --- condensing ffprobe's JSON -------------------------------------------------------


def _summarise(
    path: str, data: dict[str, Any], stderr: str, zone: tzinfo, target: Path
) -> ProbeResult:
    fmt: dict[str, Any] = data["format"]
    streams = [s for s in data.get("streams") or [] if isinstance(s, dict)]
    # Cover art in an audio file is a "video" stream with the attached_pic disposition.
    videos = [
        s for s in streams if s.get("codec_type") == "video" and not _disposition(s, "attached_pic")
    ]
    audios = [s for s in streams if s.get("codec_type") == "audio"]
    warnings = _warnings(stderr, str(target))
    if not videos and not audios:
        return _no_streams(path, data, stderr, warnings)

    container = _str(fmt.get("format_name"))
    kind: Kind
    if videos and not audios and all(_is_still(s, container) for s in videos):
        kind = "image"
    elif videos:
        kind = "video"
    else:
        kind = "audio"

    video = videos[0] if videos else {}
    audio = audios[0] if audios else {}
    still = kind == "image"
    tags = _tags(fmt)
    stream_tags = [_tags(s) for s in (*videos, *audios)]
    comment = _comment_fields(_first_tag(_COMMENT_TAGS, tags, *stream_tags))
    exif = embedded.exif_from_jpeg(target) if still and video.get("codec_name") == "mjpeg" else {}
    created = _embedded_time(target, container, tags, stream_tags, exif, zone)

    def device(tag_names: Sequence[str], field_name: str) -> str | None:
        found = _first_tag(tag_names, tags, *stream_tags) or comment.get(field_name)
        return found or _str(exif.get(field_name.capitalize()))

    duration, duration_source = _stream_duration(fmt, (*videos, *audios))
    return ProbeResult(
        path=path,
        ok=True,
        container=container,
        format_long_name=_str(fmt.get("format_long_name")),
        duration_s=None if still else duration,
        size=_int(fmt.get("size")),
        bit_rate=None if still else _int(fmt.get("bit_rate")),
        kind=kind,
        video_codec=_str(video.get("codec_name")),
        width=_int(video.get("width")),
        height=_int(video.get("height")),
        frame_rate=None if still else _frame_rate(video),
        video_bit_rate=None if still else _int(video.get("bit_rate")),
        pixel_format=_str(video.get("pix_fmt")),
        audio_codec=_str(audio.get("codec_name")),
        sample_rate=_int(audio.get("sample_rate")),
        channels=_int(audio.get("channels")),
        audio_bit_rate=_int(audio.get("bit_rate")),
        make=device(_MAKE_TAGS, "make"),
        model=device(_MODEL_TAGS, "model"),
        serial=device(_SERIAL_TAGS, "serial"),
        officer_number=comment.get("officer_number"),
        tags=tags,
        raw=data,
        stderr=stderr,
        warnings=warnings,
        duration_source=None if still else duration_source,
        video_duration_s=None if still else _float(video.get("duration")),
        audio_duration_s=_float(audio.get("duration")),
        photo_format=_PHOTO_FORMATS.get(str(video.get("codec_name"))) if still else None,
        exif=exif,
        orientation=_int(exif.get("Orientation")),
        rotation=_rotation(video),
        **_time_fields(created),
    )


def _no_streams(
    path: str, data: dict[str, Any], stderr: str, warnings: tuple[str, ...]
) -> ProbeResult:
    fmt: dict[str, Any] = data["format"]
    return ProbeResult(
        path=path,
        ok=False,
        error="ffprobe found no audio, video or image stream",
        container=_str(fmt.get("format_name")),
        format_long_name=_str(fmt.get("format_long_name")),
        size=_int(fmt.get("size")),
        tags=_tags(fmt),
        raw=data,
        stderr=stderr,
        warnings=warnings,
    )


def _embedded_time(
    target: Path,
    container: str | None,
    tags: dict[str, str],
    stream_tags: list[dict[str, str]],
    exif: dict[str, Any],
    zone: tzinfo,
) -> EmbeddedTime | None:
    """The embedded capture time, with what ffprobe does not show read from the file:
    an MP4/MOV movie header time of 0 (ffprobe leaves it out) and an AVI IDIT's text."""
    zero = None
    if "mov" in (container or "").split(",") and not _first_tag(("creation_time",), tags):
        zero = embedded.mvhd_creation_time(target)
    return read_embedded_time(
        container=container,
        format_tags=tags,
        stream_tags=stream_tags,
        exif=exif,
        stored_zero=zero,
        avi_idit=embedded.avi_idit(target) if container == "avi" else None,
        zone=zone,
    )


def _time_fields(created: EmbeddedTime | None) -> dict[str, Any]:
    if created is None:
        return {}
    return {
        "creation_time": created.value,
        "creation_time_raw": created.raw,
        "creation_time_source": created.source,
        "creation_time_rule": created.rule,
        "creation_time_unset": created.unset,
    }


def _stream_duration(
    fmt: Mapping[str, Any], streams: Sequence[Mapping[str, Any]]
) -> tuple[float | None, str | None]:
    """The longest audio/video stream; the container's duration only when no stream has one.

    Data streams (GoPro telemetry, timecode) are left out: their length is not the
    recording's.
    """
    durations = [d for s in streams if (d := _float(s.get("duration"))) is not None]
    if durations:
        return max(durations), "streams"
    container = _float(fmt.get("duration"))
    return container, "container" if container is not None else None


def _rotation(stream: Mapping[str, Any]) -> int | None:
    """Degrees clockwise to turn the picture upright, from the display matrix side data."""
    for side in stream.get("side_data_list") or []:
        if isinstance(side, dict) and (value := _int(side.get("rotation"))) is not None:
            return (-value) % 360  # ffprobe gives the matrix's anti-clockwise angle
    return None


def _warnings(stderr: str, target: str) -> tuple[str, ...]:
    """ffprobe's warning lines, without log prefixes or the file name, each once."""
    found: list[str] = []
    for line in stderr.splitlines():
        text = _LOG_PREFIX_RE.sub("", line.strip())
        if text.startswith(target + ":"):
            text = text[len(target) + 1 :].strip()
        if text and text not in found:
            found.append(text)
    return tuple(found)


# --- what ffprobe alone does not tell ------------------------------------------------


def _not_read_by_ffprobe(
    path: Path, failed: ProbeResult, ffprobe: str, zone: tzinfo
) -> ProbeResult:
    """A file ffprobe could not open: a HEIF photo is read from its own boxes (a photo,
    damaged when its structure says so, unsupported when its image cannot be decoded
    here); anything else stays as ffprobe's failure."""
    try:
        info = heif.heif_info(path)
    except OSError:
        return failed
    if info is None:
        return failed
    photo_format = "avif" if info.brand.startswith("avi") else "heic"
    created = read_embedded_time(container="heif", format_tags={}, exif=info.exif, zone=zone)
    common: dict[str, Any] = {
        "path": failed.path,
        "container": f"heif ({info.brand})",
        "kind": "image",
        "video_codec": info.primary_type,
        "width": info.width,
        "height": info.height,
        "size": path.stat().st_size,
        "make": _str(info.exif.get("Make")),
        "model": _str(info.exif.get("Model")),
        "photo_format": photo_format,
        "exif": info.exif,
        "orientation": _int(info.exif.get("Orientation")),
        "rotation": (-info.rotation) % 360,
        "stderr": failed.stderr,
        "warnings": _warnings(failed.stderr, str(path)),
        **_time_fields(created),
    }
    if info.problems:
        damaged = f"damaged HEIF file: {'; '.join(info.problems)}"
        return ProbeResult(ok=False, error=damaged, damaged=damaged, **common)
    # ffmpeg (before 7.1) cannot open HEIF, but an HEVC image is decoded here from its
    # tiles (ingest.media.heif) with ffmpeg's HEVC decoder.
    why_not = heif.decodable(path)
    if why_not is None and "hevc" in _decoders(ffprobe):
        return ProbeResult(ok=True, **common)
    if why_not is None:  # HEVC tiles, but no HEVC decoder in this ffmpeg
        missing = "hevc"
        reason = (
            f"unsupported here: a {photo_format.upper()} photo (HEIF brand {info.brand!r}) "
            f"of HEVC tiles, and this ffmpeg ({_version(ffprobe)}) has no hevc decoder"
        )
    else:
        missing = "HEIF image reader (ffmpeg 7.1 or later)"
        reason = (
            f"unsupported here: a {photo_format.upper()} photo (HEIF brand {info.brand!r}) "
            f"that this ffmpeg ({_version(ffprobe)}) cannot open and that is not decoded "
            f"here ({why_not}): it needs a {missing}"
        )
    return ProbeResult(
        ok=False, error=reason, unsupported=reason, missing_decoder=missing, **common
    )


def _check_decoders(result: ProbeResult, ffprobe: str) -> ProbeResult:
    """Unsupported here when an audio or video stream has no decoder in this ffmpeg."""
    if not result.ok:
        return result
    available = _decoders(ffprobe)
    if not available:  # the list could not be read: nothing to judge by
        return result
    missing: list[str] = []
    for stream in result.raw.get("streams") or []:
        if not isinstance(stream, dict) or stream.get("codec_type") not in ("audio", "video"):
            continue
        codec = str(stream.get("codec_name") or "")
        if codec and codec != "unknown" and codec in available:
            continue
        tag = stream.get("codec_tag_string")
        what = codec if codec and codec != "unknown" else f"unknown codec (tag {tag})"
        if what not in missing:
            missing.append(what)
    if not missing:
        return result
    names = ", ".join(missing)
    reason = (
        f"unsupported here: this ffmpeg ({_version(ffprobe)}) has no decoder for {names}; "
        "the original is kept as it is"
    )
    return replace(result, ok=False, error=reason, unsupported=reason, missing_decoder=names)


@functools.cache
def _decoders(ffprobe: str) -> frozenset[str]:
    """The codecs this ffmpeg can decode (``ffprobe -decoders``); empty when unreadable."""
    try:
        proc = subprocess.run(
            [ffprobe, "-hide_banner", "-decoders"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    codecs: set[str] = set()
    listing = False
    for line in _text(proc.stdout).splitlines():
        if line.strip().startswith("------"):
            listing = True
            continue
        parts = line.split()
        if not listing or len(parts) < 2:
            continue
        # " V....D libdav1d   dav1d AV1 decoder by VideoLAN (codec av1)"
        named = _CODEC_OF_RE.search(line)
        codecs.add(named.group(1) if named else parts[1])
    return frozenset(codecs)


@functools.cache
def _version(ffprobe: str) -> str:
    try:
        proc = subprocess.run(
            [ffprobe, "-version"], stdin=subprocess.DEVNULL, capture_output=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return "version unknown"
    first = _text(proc.stdout).splitlines()[:1]
    words = first[0].split() if first else []
    return f"ffprobe {words[2]}" if len(words) > 2 else "version unknown"


def _count_packets(result: ProbeResult, ffprobe: str, target: str, timeout_s: float) -> ProbeResult:
    """The duration from the packets themselves, where ffprobe only estimated it.

    Each packet's timestamp and duration are listed (no decoding); a stream lasts from its
    first timestamp to the end of its last packet. For AMR that is 1,779 frames of 20 ms
    = 35.58 s where ffprobe's estimate from the bit rate says 36.73 s.
    """
    command = [
        ffprobe,
        "-v",
        "error",
        "-show_entries",
        "packet=stream_index,pts_time,duration_time",
        "-of",
        "csv=p=0",
        target,
    ]
    try:
        proc = subprocess.run(
            command, stdin=subprocess.DEVNULL, capture_output=True, check=False, timeout=timeout_s
        )
    except (OSError, subprocess.TimeoutExpired):
        return result  # the estimate stays, and so does ffprobe's warning about it
    spans: dict[int, list[float]] = {}  # stream -> [first pts, end, summed durations]
    for line in _text(proc.stdout).splitlines():
        index, _, rest = line.partition(",")
        pts_text, _, dur_text = rest.partition(",")
        if not index.isdigit():
            continue
        pts, dur = _float(pts_text), _float(dur_text) or 0.0
        span = spans.setdefault(int(index), [math.inf, -math.inf, 0.0])
        span[2] += dur
        if pts is not None:
            span[0], span[1] = min(span[0], pts), max(span[1], pts + dur)
    lengths = [s[1] - s[0] if math.isfinite(s[0]) else s[2] for s in spans.values()]
    lengths = [n for n in lengths if n > 0]
    if proc.returncode != 0 or not lengths:
        return result
    counted = round(max(lengths), 6)
    audio = counted if result.kind == "audio" else result.audio_duration_s
    return replace(result, duration_s=counted, duration_source="packets", audio_duration_s=audio)


def _is_still(stream: Mapping[str, Any], container: str | None) -> bool:
    if stream.get("codec_name") not in IMAGE_CODECS:
        return False
    if _disposition(stream, "still_image"):
        return True
    names = set((container or "").split(","))
    if names & _IMAGE_FORMATS or any(n.endswith("_pipe") for n in names):
        return True
    # An MJPEG AVI (older recorders) is video; a one-frame stream of it is a still.
    frames = _int(stream.get("nb_frames"))
    return frames == 1 or (frames is None and (_int(stream.get("duration_ts")) or 0) <= 1)


def _disposition(stream: Mapping[str, Any], name: str) -> bool:
    disposition = stream.get("disposition")
    return isinstance(disposition, dict) and bool(disposition.get(name))


def _tags(section: Mapping[str, Any]) -> dict[str, str]:
    tags = section.get("tags")
    if not isinstance(tags, dict):
        return {}
    return {str(k): str(v) for k, v in tags.items()}


def _first_tag(names: Sequence[str], *tag_sets: Mapping[str, str]) -> str | None:
    """The first non-empty value among ``names`` (case-insensitive), format tags first."""
    for tags in tag_sets:
        lowered = {k.lower(): v for k, v in tags.items()}
        for name in names:
            value = lowered.get(name, "").strip()
            if value:
                return value
    return None


def _comment_fields(comment: str | None) -> dict[str, str]:
    """Device fields from ``key=value`` words in a free-text comment tag."""
    if not comment:
        return {}
    found = {k.lower(): v for k, v in _KEY_VALUE_RE.findall(comment)}
    out: dict[str, str] = {}
    for field_name, keys in _COMMENT_KEYS.items():
        for key in keys:
            if found.get(key):
                out[field_name] = found[key]
                break
    return out


def _frame_rate(stream: Mapping[str, Any]) -> float | None:
    for key in ("avg_frame_rate", "r_frame_rate"):
        rate = _rational(stream.get(key))
        if rate is not None and rate > 0:
            return rate
    return None


def _rational(value: object) -> float | None:
    if not isinstance(value, str):
        return _float(value)
    num, sep, den = value.partition("/")
    top = _float(num)
    if not sep:
        return top
    bottom = _float(den)
    if top is None or not bottom:  # "0/0": no rate
        return None
    return top / bottom


def _float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:  # "N/A"
        return None
    return number if math.isfinite(number) else None


def _int(value: object) -> int | None:
    number = _float(value)
    return None if number is None else int(number)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    if isinstance(data, str):
        return data
    return data.decode("utf-8", errors="replace")


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _reason(stderr: str, target: str) -> str | None:
    """ffprobe's reason, from its stderr, without log prefixes or the file name.

    The last line alone is often generic ("Invalid data found when processing input");
    the cause ("moov atom not found") is on the line before, so the last few distinct
    lines are joined.
    """
    reasons: list[str] = []
    for line in stderr.splitlines():
        text = _LOG_PREFIX_RE.sub("", line.strip())
        if text.startswith(target + ":"):
            text = text[len(target) + 1 :].strip()
        if text and text not in reasons:
            reasons.append(text)
    return "; ".join(reasons[-_MAX_REASON_LINES:]) or None
