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

Times: ``creation_time`` is the container's ``creation_time`` tag (format tags first,
then stream tags; QuickTime's ``com.apple.quicktime.creationdate`` as a fallback)
parsed to an aware UTC datetime. A value without a zone is read as UTC, as the MP4/MOV
specification defines it. Whether that time is right is judged elsewhere
(:mod:`ingest.media.timeevidence`); here a 1970 value is reported as it is.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from config.errors import UnavailableError

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
_CREATION_TAGS: Final = ("creation_time", "com.apple.quicktime.creationdate")
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
    creation_time: datetime | None = None  # aware, UTC
    creation_time_raw: str | None = None  # the tag text it was parsed from
    make: str | None = None
    model: str | None = None
    serial: str | None = None
    officer_number: str | None = None  # 警号, where a tag carries it
    tags: dict[str, str] = field(default_factory=dict)  # format tags, as ffprobe printed them
    raw: dict[str, Any] = field(default_factory=dict)  # the whole ffprobe JSON
    stderr: str = ""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (datetimes as ISO 8601 strings)."""
        out: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, datetime):
                value = value.isoformat().replace("+00:00", "Z")
            elif isinstance(value, dict):
                value = dict(value)
            out[item.name] = value
        return out


def probe(path: Path, *, ffprobe: str = "ffprobe", timeout_s: float = 60) -> ProbeResult:
    """Probe ``path`` with ffprobe. Never raises for bad media; see the module docstring.

    Raises :class:`ProbeToolMissing` when ``ffprobe`` cannot be started and
    ``ValueError`` for a non-positive ``timeout_s``.
    """
    if not (math.isfinite(timeout_s) and timeout_s > 0):
        raise ValueError(f"timeout_s must be a positive number of seconds, not {timeout_s}")
    # An absolute path can be neither mistaken for an option ("-x.mp4") nor for an
    # ffmpeg protocol URL ("concat:a|b").
    target = os.path.abspath(path)
    command = [ffprobe, "-v", "error", "-show_format", "-show_streams", "-of", "json", target]
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
        return ProbeResult(
            path=str(path), ok=False, error=_reason(stderr, target) or fallback, stderr=stderr
        )
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
    return _summarise(str(path), data, stderr)


# --- condensing ffprobe's JSON -------------------------------------------------------


def _summarise(path: str, data: dict[str, Any], stderr: str) -> ProbeResult:
    fmt: dict[str, Any] = data["format"]
    streams = [s for s in data.get("streams") or [] if isinstance(s, dict)]
    # Cover art in an audio file is a "video" stream with the attached_pic disposition.
    videos = [
        s for s in streams if s.get("codec_type") == "video" and not _disposition(s, "attached_pic")
    ]
    audios = [s for s in streams if s.get("codec_type") == "audio"]
    if not videos and not audios:
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
        )

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

    duration = _float(fmt.get("duration"))
    if duration is None:
        durations = [d for s in streams if (d := _float(s.get("duration"))) is not None]
        duration = max(durations) if durations else None

    tags = _tags(fmt)
    stream_tags = [_tags(s) for s in (*videos, *audios)]
    created_raw = _first_tag(_CREATION_TAGS, tags, *stream_tags)
    comment = _comment_fields(_first_tag(_COMMENT_TAGS, tags, *stream_tags))

    def device(tag_names: Sequence[str], field_name: str) -> str | None:
        return _first_tag(tag_names, tags, *stream_tags) or comment.get(field_name)

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
        creation_time=_parse_time(created_raw),
        creation_time_raw=created_raw,
        make=device(_MAKE_TAGS, "make"),
        model=device(_MODEL_TAGS, "model"),
        serial=device(_SERIAL_TAGS, "serial"),
        officer_number=comment.get("officer_number"),
        tags=tags,
        raw=data,
        stderr=stderr,
    )


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


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        return None  # "0000-00-00 00:00:00" and other placeholders
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # MP4/MOV creation times are UTC by definition
    return value.astimezone(UTC)


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
