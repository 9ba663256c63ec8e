"""Derivatives and salvage with the real ffmpeg on synthetic recordings (no mocks).

Every check is made from outside the module under test: ffprobe's own JSON, the MP4's
top-level boxes read with struct, the original's bytes hashed before and after.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from config.errors import EXIT_UNAVAILABLE
from ingest.media.derive import (
    PLAN_REENCODE,
    PLAN_REMUX,
    Derivation,
    DerivationError,
    DerivationTimeout,
    FfmpegMissingError,
    ProxyProfile,
    join_segments,
    make_access_copy,
    make_audio_access,
    make_poster,
    make_proxy,
    plan_access,
)
from ingest.media.recover import recover_truncated_mp4
from ingest.synthetic import (
    KIND_AUDIO_WAV,
    KIND_SEGMENT,
    KIND_VIDEO_H264,
    KIND_VIDEO_H265,
    KIND_VIDEO_TRUNCATED,
    SyntheticRecorder,
    make_recorder,
)

H264_INFO = {"kind": "video", "video_codec": "h264", "pix_fmt": "yuv420p", "audio_codec": "aac"}
HEVC_INFO = {"kind": "video", "video_codec": "hevc", "pix_fmt": "yuv420p", "audio_codec": "aac"}
WAV_INFO = {"kind": "audio", "video_codec": None, "pix_fmt": None, "audio_codec": "pcm_s16le"}


@pytest.fixture(scope="module")
def recorder(tmp_path_factory: pytest.TempPathFactory) -> SyntheticRecorder:
    return make_recorder(tmp_path_factory.mktemp("recorder") / "dock0")


def media(recorder: SyntheticRecorder, kind: str) -> list[Path]:
    return [recorder.root / f.relpath for f in recorder.media() if f.kind == kind]


def ffprobe(path: Path) -> dict[str, Any]:
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", "-show_format", "-show_streams", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def codecs(path: Path) -> dict[str, str]:
    return {s["codec_type"]: s["codec_name"] for s in ffprobe(path)["streams"]}


def duration(path: Path) -> float:
    return float(ffprobe(path)["format"]["duration"])


def top_level_boxes(path: Path) -> list[bytes]:
    kinds: list[bytes] = []
    data = path.read_bytes()
    at = 0
    while at + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, at)
        if size == 1:
            size = struct.unpack_from(">Q", data, at + 8)[0]
        elif size == 0:
            size = len(data) - at
        kinds.append(kind)
        if size < 8:
            break
        at += size
    return kinds


def fingerprint(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mode, st.st_mtime_ns


def only_final(out_dir: Path, derivation: Derivation) -> None:
    """Nothing but the final output in out_dir: no temp file, no concat list."""
    assert sorted(p.name for p in out_dir.iterdir()) == [derivation.path.name]


# --- planning -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("info", "plan"),
    [
        (H264_INFO, PLAN_REMUX),
        ({**H264_INFO, "pix_fmt": "yuvj420p"}, PLAN_REMUX),
        ({**H264_INFO, "audio_codec": None}, PLAN_REMUX),
        (HEVC_INFO, PLAN_REENCODE),
        ({**H264_INFO, "video_codec": "mjpeg", "pix_fmt": "yuvj422p"}, PLAN_REENCODE),
        ({**H264_INFO, "pix_fmt": "yuv420p10le"}, PLAN_REENCODE),  # High 10: not for browsers
        ({**H264_INFO, "audio_codec": "pcm_s16le"}, PLAN_REENCODE),
        ({**H264_INFO, "audio_codec": "amr_nb"}, PLAN_REENCODE),
        (WAV_INFO, PLAN_REENCODE),
        ({"kind": "audio", "audio_codec": "aac"}, PLAN_REMUX),
        ({"kind": "audio", "audio_codec": "mp3"}, PLAN_REMUX),
        ({"kind": "audio", "audio_codec": "amr_nb"}, PLAN_REENCODE),
    ],
)
def test_plan_access(info: dict[str, Any], plan: str) -> None:
    assert plan_access(info) == plan


def test_plan_access_refuses_images() -> None:
    with pytest.raises(ValueError, match="image"):
        plan_access({"kind": "image", "video_codec": "mjpeg", "pix_fmt": "yuvj420p"})


# --- access copies ------------------------------------------------------------------


def test_access_copy_of_h264_is_a_faststart_remux_and_leaves_the_original(
    recorder: SyntheticRecorder, tmp_path: Path
) -> None:
    src = media(recorder, KIND_VIDEO_H264)[0]
    before = fingerprint(src)
    assert top_level_boxes(src).index(b"moov") > top_level_boxes(src).index(b"mdat")
    progress: list[float] = []

    d = make_access_copy(
        src, tmp_path, info=H264_INFO, duration_s=duration(src), on_progress=progress.append
    )

    assert (d.kind, d.method) == ("access", "remux")
    assert d.path == tmp_path / f"{src.stem}.access.mp4"
    assert codecs(d.path) == {"video": "h264", "audio": "aac"}
    boxes = top_level_boxes(d.path)
    assert boxes.index(b"moov") < boxes.index(b"mdat"), boxes  # faststart
    assert abs(duration(d.path) - duration(src)) <= 0.1
    assert d.duration_s is not None and abs(d.duration_s - duration(src)) <= 0.1
    # The creation time and title the camera wrote travel with the copy.
    tags = ffprobe(d.path)["format"]["tags"]
    assert tags["title"] == src.stem and tags["creation_time"].startswith("2026-11-26T00:30")
    assert fingerprint(src) == before  # bytes, mode and mtime of the original
    only_final(tmp_path, d)
    # The record of how it was made: the exact argv, stream copy, the ffmpeg version.
    assert d.command[0] == "ffmpeg" and "-c" in d.command and "copy" in d.command
    assert "+faststart" in d.command and str(src) in d.command
    assert d.ffmpeg_version.startswith("ffmpeg version")
    assert "Stream mapping" in d.stderr_tail
    assert progress and progress[-1] == 1.0 and progress == sorted(progress)
    assert all(0.0 <= p <= 1.0 for p in progress)


def test_access_copy_of_h265_is_reencoded_to_h264(
    recorder: SyntheticRecorder, tmp_path: Path
) -> None:
    src = media(recorder, KIND_VIDEO_H265)[0]
    before = fingerprint(src)
    assert codecs(src)["video"] == "hevc"

    d = make_access_copy(src, tmp_path, info=HEVC_INFO, duration_s=duration(src))

    assert (d.kind, d.method) == ("access", "reencode")
    assert codecs(d.path) == {"video": "h264", "audio": "aac"}
    assert abs(duration(d.path) - duration(src)) <= 0.1
    assert "libx264" in d.command
    boxes = top_level_boxes(d.path)
    assert boxes.index(b"moov") < boxes.index(b"mdat")
    assert fingerprint(src) == before
    only_final(tmp_path, d)


def test_proxy_of_h264_is_small_h264(recorder: SyntheticRecorder, tmp_path: Path) -> None:
    src = media(recorder, KIND_VIDEO_H264)[0]
    d = make_proxy(src, tmp_path, info=H264_INFO, duration_s=duration(src))
    assert (d.kind, d.method) == ("proxy", "reencode")
    video = next(s for s in ffprobe(d.path)["streams"] if s["codec_type"] == "video")
    assert video["codec_name"] == "h264"
    assert (video["width"], video["height"]) == (320, 240)  # never upscaled
    assert codecs(d.path)["audio"] == "aac"
    only_final(tmp_path, d)


def test_proxy_scales_down_to_720_lines_keeping_the_aspect(tmp_path: Path) -> None:
    src = tmp_path / "big.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1440x1080:rate=25:duration=0.4",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            str(src),
        ],
        check=True,
        timeout=60,
    )
    out = tmp_path / "out"
    d = make_proxy(src, out, profile=ProxyProfile(max_height=720), duration_s=0.4)
    video = ffprobe(d.path)["streams"][0]
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", 960, 720)
    assert video["pix_fmt"] == "yuv420p"


def test_poster_is_a_jpeg(recorder: SyntheticRecorder, tmp_path: Path) -> None:
    src = media(recorder, KIND_VIDEO_H264)[0]
    d = make_poster(src, tmp_path, duration_s=duration(src))
    assert (d.kind, d.method, d.duration_s) == ("poster", "extract", None)
    assert d.path.name == f"{src.stem}.poster.jpg"
    assert d.path.read_bytes()[:2] == b"\xff\xd8"
    assert codecs(d.path) == {"video": "mjpeg"}
    # 2 s at 25 fps: the last frame starts at 1.96 s; min(1 s, 1.96 s / 2).
    assert d.command[d.command.index("-ss") + 1] == "0.980"
    only_final(tmp_path, d)


def test_audio_access_of_wav_is_aac(recorder: SyntheticRecorder, tmp_path: Path) -> None:
    src = media(recorder, KIND_AUDIO_WAV)[0]
    before = fingerprint(src)
    d = make_audio_access(src, tmp_path, info=WAV_INFO, duration_s=duration(src))
    assert (d.kind, d.method) == ("audio", "reencode")
    assert d.path.suffix == ".m4a"
    assert codecs(d.path) == {"audio": "aac"}
    assert abs(duration(d.path) - duration(src)) <= 0.1
    assert fingerprint(src) == before
    # make_access_copy hands audio-only recordings to the same path.
    again = make_access_copy(src, tmp_path / "via-access", info=WAV_INFO)
    assert (again.kind, codecs(again.path)) == ("audio", {"audio": "aac"})


# --- failures leave nothing behind --------------------------------------------------


def test_corrupt_input_raises_with_ffmpeg_stderr_and_leaves_nothing(tmp_path: Path) -> None:
    src = tmp_path / "in" / "BROKEN.MP4"
    src.parent.mkdir()
    src.write_bytes(b"\x00\x00\x00\x18ftypisom" + os.urandom(4096))
    out = tmp_path / "out"
    with pytest.raises(DerivationError) as caught:
        make_access_copy(src, out, info=H264_INFO, duration_s=2.0)
    err = caught.value
    assert "Invalid data found" in err.stderr_tail or "moov atom not found" in err.stderr_tail
    assert err.stderr_tail[-200:] in str(err)  # the message carries ffmpeg's own words
    assert err.command and err.command[0] == "ffmpeg"
    assert list(out.iterdir()) == []


def test_timeout_kills_ffmpeg_and_leaves_nothing(
    recorder: SyntheticRecorder, tmp_path: Path
) -> None:
    src = media(recorder, KIND_VIDEO_H265)[0]
    with pytest.raises(DerivationTimeout, match="timeout") as caught:
        make_access_copy(src, tmp_path, info=HEVC_INFO, duration_s=2.0, timeout_factor=1e-6)
    assert isinstance(caught.value, DerivationError)
    assert list(tmp_path.iterdir()) == []


def test_a_raising_progress_callback_stops_ffmpeg_and_leaves_nothing(
    recorder: SyntheticRecorder, tmp_path: Path
) -> None:
    def cancel(_: float) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make_access_copy(
            media(recorder, KIND_VIDEO_H265)[0],
            tmp_path,
            info=HEVC_INFO,
            duration_s=2.0,
            on_progress=cancel,
        )
    assert list(tmp_path.iterdir()) == []


def test_missing_ffmpeg_is_unavailable(recorder: SyntheticRecorder, tmp_path: Path) -> None:
    with pytest.raises(FfmpegMissingError) as caught:
        make_access_copy(
            media(recorder, KIND_VIDEO_H264)[0],
            tmp_path,
            info=H264_INFO,
            ffmpeg=str(tmp_path / "no-such-ffmpeg"),
        )
    assert caught.value.exit_code == EXIT_UNAVAILABLE
    assert caught.value.hint and "install ffmpeg" in caught.value.hint
    assert list(tmp_path.iterdir()) == []


# --- joins --------------------------------------------------------------------------


def test_join_segments_lasts_the_sum(recorder: SyntheticRecorder, tmp_path: Path) -> None:
    # A quote in the directory name exercises the concat list's escaping.
    segments = []
    for seg in media(recorder, KIND_SEGMENT):
        copy = tmp_path / "o'brien's dock" / seg.name
        copy.parent.mkdir(exist_ok=True)
        shutil.copyfile(seg, copy)
        segments.append(copy)
    assert len(segments) == 2
    out = tmp_path / "out"

    d = join_segments(segments, out)

    assert (d.kind, d.method) == ("joined", "remux")
    assert d.sources == tuple(segments)
    total = sum(duration(s) for s in segments)
    assert abs(duration(d.path) - total) <= 0.1
    assert codecs(d.path) == {"video": "h264", "audio": "aac"}
    boxes = top_level_boxes(d.path)
    assert boxes.index(b"moov") < boxes.index(b"mdat")
    only_final(out, d)


def test_join_refuses_segments_of_different_codecs(
    recorder: SyntheticRecorder, tmp_path: Path
) -> None:
    pair = [media(recorder, KIND_VIDEO_H264)[0], media(recorder, KIND_VIDEO_H265)[0]]
    with pytest.raises(DerivationError, match="does not match"):
        join_segments(pair, tmp_path)
    assert list(tmp_path.iterdir()) == []


# --- salvage ------------------------------------------------------------------------


def test_recover_truncated_mp4_with_a_reference(
    recorder: SyntheticRecorder, tmp_path: Path
) -> None:
    truncated = media(recorder, KIND_VIDEO_TRUNCATED)[0]
    reference = media(recorder, KIND_VIDEO_H264)[0]  # same recorder, same settings
    before = fingerprint(truncated)
    assert (
        subprocess.run(
            ["ffprobe", "-v", "error", str(truncated)], check=False, capture_output=True
        ).returncode
        != 0
    )

    d = recover_truncated_mp4(truncated, reference, tmp_path)

    assert d is not None
    assert (d.kind, d.method) == ("recovered", "recovered")
    assert d.path == tmp_path / f"{truncated.stem}.recovered.mp4"
    decoded = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(d.path), "-f", "framemd5", "-"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    frames = [line for line in decoded.stdout.splitlines() if line and line[0] != "#"]
    # The recorder ran 2 s at 25 fps and lost the last quarter of mdat: most frames are back.
    assert 25 <= len(frames) <= 50
    assert decoded.stderr == ""  # every salvaged frame decodes cleanly
    tags = ffprobe(d.path)["format"]["tags"]
    assert tags["comment"].startswith("RECOVERED from truncated original")
    assert before[0] in tags["comment"] and tags["comment"].endswith("not the original")
    assert tags["title"] == f"[RECOVERED] {truncated.stem}"
    assert codecs(d.path) == {"video": "h264"}  # video only
    assert fingerprint(truncated) == before
    only_final(tmp_path, d)


def test_recover_without_a_usable_reference_gives_none(
    recorder: SyntheticRecorder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    truncated = media(recorder, KIND_VIDEO_TRUNCATED)[0]
    caplog.set_level(logging.WARNING, logger="ingest.media.recover")
    assert recover_truncated_mp4(truncated, None, tmp_path) is None
    assert "no healthy reference" in caplog.text
    hevc = media(recorder, KIND_VIDEO_H265)[0]
    assert recover_truncated_mp4(truncated, hevc, tmp_path) is None
    assert "not H.264" in caplog.text
    assert list(tmp_path.iterdir()) == []


# --- durable=False: the caller syncs; nothing partial is ever visible all the same ----


def test_durable_false_output_is_the_same_complete_file(
    recorder: SyntheticRecorder, tmp_path: Path
) -> None:
    src = media(recorder, KIND_VIDEO_H264)[0]
    synced = make_access_copy(src, tmp_path / "synced", info=H264_INFO, duration_s=duration(src))
    lazy = make_access_copy(
        src, tmp_path / "lazy", info=H264_INFO, duration_s=duration(src), durable=False
    )
    assert lazy.path == tmp_path / "lazy" / f"{src.stem}.access.mp4"
    assert lazy.path.read_bytes() == synced.path.read_bytes()  # the same remux, whole
    assert abs(duration(lazy.path) - duration(src)) <= 0.1
    only_final(tmp_path / "lazy", lazy)
    poster = make_poster(src, tmp_path / "poster", duration_s=duration(src), durable=False)
    assert poster.path.read_bytes()[:2] == b"\xff\xd8"
    only_final(tmp_path / "poster", poster)


def test_durable_false_failure_leaves_nothing(tmp_path: Path) -> None:
    src = tmp_path / "in" / "BROKEN.MP4"
    src.parent.mkdir()
    src.write_bytes(b"\x00\x00\x00\x18ftypisom" + os.urandom(4096))
    out = tmp_path / "out"
    with pytest.raises(DerivationError):
        make_access_copy(src, out, info=H264_INFO, duration_s=2.0, durable=False)
    assert list(out.iterdir()) == []


def _ffmpeg_children() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (entry / "cmdline").read_bytes().split(b"\0")[0]
        except (OSError, IndexError, ValueError):
            continue
        if ppid == os.getpid() and cmd.endswith(b"ffmpeg"):
            found.append(int(entry.name))
    return found


@pytest.mark.fault
@pytest.mark.parametrize("durable", [False, True])
def test_ffmpeg_killed_mid_write_leaves_no_output(tmp_path: Path, durable: bool) -> None:
    """ffmpeg dies by SIGKILL with its output half written: nothing at the final name,
    no temporary file left, whether or not the output would have been synced."""
    import signal

    src = tmp_path / "long.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x360:rate=25:duration=20",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            str(src),
        ],
        check=True,
        timeout=120,
    )
    out = tmp_path / "out"
    partial_sizes: list[int] = []

    def kill_ffmpeg(fraction: float) -> None:
        if fraction >= 1.0 or partial_sizes:
            return
        partial_sizes.extend(p.stat().st_size for p in out.glob(".*.partial"))
        for pid in _ffmpeg_children():
            os.kill(pid, signal.SIGKILL)

    # veryslow: the encode lasts well past ffmpeg's first progress report (0.5 s) even on
    # a fast machine, so the kill lands mid-write.
    slow = ProxyProfile(preset="veryslow")
    with pytest.raises(DerivationError, match="status -9"):
        make_proxy(
            src, out, duration_s=20.0, profile=slow, on_progress=kill_ffmpeg, durable=durable
        )
    assert partial_sizes and partial_sizes[0] > 0  # it was killed with an output under way
    assert list(out.iterdir()) == []
