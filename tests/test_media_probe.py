"""ingest.media.probe: real ffprobe on real media made by the synthetic recorder."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC
from pathlib import Path

import pytest

from config.errors import EXIT_UNAVAILABLE, LiuhenError
from ingest.media.probe import ProbeResult, ProbeToolMissing, probe
from ingest.synthetic import (
    CHINA_STANDARD_TIME,
    KIND_AUDIO_WAV,
    KIND_PHOTO_JPEG,
    KIND_VIDEO_H264,
    KIND_VIDEO_H265,
    KIND_VIDEO_TRUNCATED,
    SyntheticFile,
    SyntheticRecorder,
    make_recorder,
)

SIZE = (192, 144)  # not the generator's default, so the test sees it carried through
DURATION_S = 2.0


@pytest.fixture(scope="module")
def recorder(tmp_path_factory: pytest.TempPathFactory) -> SyntheticRecorder:
    return make_recorder(
        tmp_path_factory.mktemp("probe") / "dock0",
        segments=0,
        size=SIZE,
        duration_s=DURATION_S,
    )


def media(rec: SyntheticRecorder, kind: str) -> tuple[Path, SyntheticFile]:
    [file] = [f for f in rec.media() if f.kind == kind]
    return rec.root / file.relpath, file


def test_h264_mp4(recorder: SyntheticRecorder) -> None:
    path, file = media(recorder, KIND_VIDEO_H264)
    result = probe(path)

    assert result.ok and result.error is None
    assert result.kind == "video"
    assert result.container is not None and "mp4" in result.container.split(",")
    assert result.video_codec == "h264"
    assert result.audio_codec == "aac"
    assert (result.width, result.height) == SIZE
    assert result.duration_s == pytest.approx(DURATION_S, abs=0.1)
    assert result.frame_rate == 25
    assert result.pixel_format == "yuv420p"
    assert result.sample_rate == 16_000 and result.channels == 1
    assert result.size == file.size
    assert result.bit_rate and result.video_bit_rate and result.audio_bit_rate
    assert file.start is not None
    expected = file.start.replace(tzinfo=CHINA_STANDARD_TIME).astimezone(UTC)
    assert result.creation_time == expected
    assert result.creation_time is not None and result.creation_time.utcoffset() is not None
    assert result.serial == recorder.device.serial
    assert result.officer_number == recorder.device.officer_number
    assert result.tags["title"] == Path(file.relpath).stem
    assert {s["codec_type"] for s in result.raw["streams"]} == {"video", "audio"}


def test_as_dict_is_json(recorder: SyntheticRecorder) -> None:
    path, file = media(recorder, KIND_VIDEO_H264)
    data = json.loads(json.dumps(probe(path).as_dict()))

    assert data["ok"] is True
    assert data["creation_time"].endswith("Z")
    assert data["raw"]["format"]["size"] == str(file.size)
    assert data["tags"]["comment"].startswith("serial=")


def test_h265_mp4(recorder: SyntheticRecorder) -> None:
    path, _ = media(recorder, KIND_VIDEO_H265)
    result = probe(path)

    assert result.ok and result.kind == "video"
    assert result.video_codec == "hevc"
    assert (result.width, result.height) == SIZE
    assert result.duration_s == pytest.approx(DURATION_S, abs=0.1)


def test_wav(recorder: SyntheticRecorder) -> None:
    path, _ = media(recorder, KIND_AUDIO_WAV)
    result = probe(path)

    assert result.ok and result.kind == "audio"
    assert result.container == "wav"
    assert result.audio_codec == "pcm_s16le"
    assert result.sample_rate == 16_000
    assert result.channels == 1
    assert result.video_codec is None and result.width is None and result.frame_rate is None
    assert result.duration_s == pytest.approx(DURATION_S, abs=0.1)
    assert result.creation_time is None
    assert result.serial == recorder.device.serial


def test_jpeg_is_an_image(recorder: SyntheticRecorder) -> None:
    path, _ = media(recorder, KIND_PHOTO_JPEG)
    result = probe(path)

    assert result.ok and result.kind == "image"
    assert result.video_codec == "mjpeg"
    assert (result.width, result.height) == SIZE
    # ffprobe's 0.04 s for a still is the image2 demuxer's default, not a duration.
    assert result.duration_s is None and result.frame_rate is None
    assert result.audio_codec is None


def test_truncated_mp4_is_a_finding_not_an_error(recorder: SyntheticRecorder) -> None:
    path, _ = media(recorder, KIND_VIDEO_TRUNCATED)
    result = probe(path)

    assert result.ok is False
    assert result.error is not None and "moov" in result.error
    assert str(path) not in result.error  # the reason, not ffprobe's "<path>: ..." prefix
    assert "moov" in result.stderr
    assert result.kind == "unknown" and result.duration_s is None
    json.dumps(result.as_dict())


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.MP4"
    path.write_text("not a video, whatever the name says\n", encoding="utf-8")
    result = probe(path)

    assert result.ok is False
    assert result.error  # ffprobe's reason, e.g. "Invalid data found when processing input"


def test_missing_file_is_reported(tmp_path: Path) -> None:
    result = probe(tmp_path / "gone.MP4")

    assert result.ok is False
    assert result.error is not None and "No such file" in result.error


def test_name_that_looks_like_an_option(
    recorder: SyntheticRecorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = media(recorder, KIND_VIDEO_H264)
    shutil.copyfile(path, tmp_path / "-clip.MP4")
    monkeypatch.chdir(tmp_path)

    assert probe(Path("-clip.MP4")).video_codec == "h264"


def test_timeout_is_a_finding(tmp_path: Path) -> None:
    fifo = tmp_path / "stuck.MP4"
    os.mkfifo(fifo)  # ffprobe blocks opening it: no writer will ever come
    result = probe(fifo, timeout_s=0.5)

    assert result == ProbeResult(path=str(fifo), ok=False, error="ffprobe timed out after 0.5 s")


def test_missing_ffprobe_raises(recorder: SyntheticRecorder, tmp_path: Path) -> None:
    path, _ = media(recorder, KIND_VIDEO_H264)
    with pytest.raises(ProbeToolMissing) as info:
        probe(path, ffprobe=str(tmp_path / "no-such-ffprobe"))

    assert isinstance(info.value, LiuhenError)
    assert info.value.exit_code == EXIT_UNAVAILABLE == 69
    assert info.value.hint is not None and "ffmpeg.ffprobe" in info.value.hint
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_ffprobe_path_that_is_not_a_program(recorder: SyntheticRecorder, tmp_path: Path) -> None:
    path, _ = media(recorder, KIND_VIDEO_H264)
    with pytest.raises(ProbeToolMissing):
        probe(path, ffprobe=str(tmp_path))  # a directory
