"""ingest.media.probe on real recordings (the real-media corpus) and on files made here.

Issue 13: durations are taken from the streams (counted from the packets where ffprobe
only estimates), ffprobe's warnings are kept, photos are read as photos with their EXIF,
and a file this installation cannot decode is "unsupported here" with the missing
decoder named, never damaged.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingest.media.probe import probe
from tests.fixtures.corpus import corpus_path

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"


def test_amr_duration_is_counted_from_its_frames_and_the_estimate_warning_is_kept() -> None:
    # yuan.amr holds 1,779 AMR-NB frames of 20 ms each: 35.58 s. ffprobe estimates
    # 36.73 s from the bit rate and says so at warning level.
    result = probe(corpus_path("yuan.amr"))

    assert result.ok and result.kind == "audio" and result.audio_codec == "amr_nb"
    assert result.duration_s == pytest.approx(1779 * 0.020, abs=0.001)
    assert result.audio_duration_s == result.duration_s
    assert result.duration_source == "packets"
    assert any("Estimating duration from bitrate" in w for w in result.warnings)
    stored = json.loads(json.dumps(result.as_dict()))  # what the catalog keeps
    assert stored["duration_s"] == pytest.approx(35.58, abs=0.001)
    assert any("Estimating duration" in w for w in stored["warnings"])


def test_duration_is_the_longest_audio_or_video_stream() -> None:
    # A 0.17 s phone clip: 3 video frames (0.0999 s) and 8 AAC frames (0.1707 s); the
    # container rounds to 0.171 s.
    result = probe(corpus_path("android_with_gps.mp4"))

    assert result.duration_source == "streams"
    assert result.duration_s == pytest.approx(0.170667, abs=1e-6)
    assert result.video_duration_s == pytest.approx(0.099933, abs=1e-6)
    assert result.audio_duration_s == pytest.approx(0.170667, abs=1e-6)


def test_valid_heic_photo_is_a_photo_decoded_here_not_damaged() -> None:
    # ffprobe (before 7.1) cannot open HEIF ("moov atom not found"), but the photo's HEVC
    # tiles decode here (ingest.media.heif): a supported photo, never damaged.
    result = probe(corpus_path("iphone_IMG_2927.HEIC"))

    assert result.ok is True and result.error is None
    assert result.unsupported is None and result.missing_decoder is None
    assert any("moov" in w for w in result.warnings)  # what ffprobe said is still kept
    # Read from the HEIF boxes: a photo, its size, camera and EXIF time.
    assert (result.kind, result.photo_format) == ("image", "heic")
    assert (result.width, result.height) == (3024, 4032)
    assert (result.make, result.model) == ("Apple", "iPhone 11 Pro")
    # DateTimeOriginal 2020:05:04 18:39:11.644 at OffsetTimeOriginal -04:00
    # = 22:39:11.644 UTC (the offset the phone wrote wins over the station's zone).
    assert result.creation_time == datetime(2020, 5, 4, 22, 39, 11, 644000, tzinfo=UTC)
    assert result.creation_time_source == "exif"


def test_heif_photo_not_decodable_here_is_unsupported_not_damaged(tmp_path: Path) -> None:
    # Made here from the corpus photo: its tiles' item type changed from HEVC ("hvc1")
    # to AV1 ("av01"), as an AVIF-coded HEIF would have: whole, but not decoded here.
    data = corpus_path("iphone_IMG_2927.HEIC").read_bytes().replace(b"hvc1", b"av01")
    photo = tmp_path / "IMG_2927.HEIC"
    photo.write_bytes(data)
    result = probe(photo)

    assert result.ok is False and result.damaged is None
    assert result.missing_decoder == "HEIF image reader (ffmpeg 7.1 or later)"
    assert result.unsupported is not None and "not all HEVC" in result.unsupported
    assert result.kind == "image" and (result.width, result.height) == (3024, 4032)


def test_heic_cut_short_is_damaged_not_unsupported(tmp_path: Path) -> None:
    # Made here from the corpus photo: its first 60%, as a card pulled mid-write leaves it.
    data = corpus_path("iphone_IMG_2927.HEIC").read_bytes()
    cut = tmp_path / "IMG_2927.HEIC"
    cut.write_bytes(data[: len(data) * 6 // 10])
    result = probe(cut)

    assert result.ok is False and result.unsupported is None
    assert result.error is not None and result.error.startswith("damaged HEIF file")
    assert "past the file end" in result.error


def test_stream_without_a_decoder_here_is_unsupported(tmp_path: Path) -> None:
    # The corpus has no such file; made here: an MPEG-TS carrying an AVS2 video stream
    # (GB/T 33475.2, China's video standard), for which this ffmpeg has no decoder. The
    # elementary stream is start codes only: ffmpeg copies it without decoding.
    sequence = b"\x00\x00\x01\xb0" + bytes([0x20, 0x42, 0x00, 0x80, 0x0B, 0x40, 0x20, 0, 0, 0])
    raw = tmp_path / "clip.avs2"
    raw.write_bytes((sequence + (b"\x00\x00\x01\xb3" + bytes(40)) * 3) * 5)
    clip = tmp_path / "clip.ts"
    demux = ["-fflags", "+genpts", "-f", "avs2", "-framerate", "25"]
    made = subprocess.run(
        [FFMPEG, "-v", "error", *demux, "-i", str(raw), "-c", "copy", str(clip)],
        capture_output=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"this ffmpeg cannot mux AVS2 into MPEG-TS: {made.stderr[-200:]!r}")
    decodes = subprocess.run(
        [FFMPEG, "-v", "error", "-i", str(clip), "-f", "null", "-"], capture_output=True
    )
    assert b"Decoder (codec avs2) not found" in decodes.stderr  # the premise of the test

    result = probe(clip)

    assert result.ok is False and result.kind == "video" and result.video_codec == "avs2"
    assert result.missing_decoder == "avs2"
    assert result.unsupported is not None and "no decoder for avs2" in result.unsupported


def test_jpeg_photo_has_its_exif() -> None:
    result = probe(corpus_path("iphone6.jpg"))

    assert result.ok and result.kind == "image" and result.photo_format == "jpeg"
    assert result.unsupported is None
    assert (result.make, result.model) == ("Apple", "iPhone 6")
    assert result.orientation == 1
    assert result.exif["DateTimeOriginal"] == "2014:09:16 14:05:12"
    assert result.duration_s is None


def test_video_rotation_from_the_display_matrix() -> None:
    # An iPad's portrait HEVC clip: the picture is stored turned; ffprobe's display matrix
    # says -90 (anti-clockwise), i.e. turn 90 degrees clockwise to show it upright.
    result = probe(corpus_path("pp_quicktime_hvc1.mov"))

    assert result.ok and result.video_codec == "hevc"
    assert result.rotation == 90


# What a person expects the probe to say of each healthy corpus file, worked out from the
# files' own headers: kind, duration of the longest audio/video stream (s), which
# embedded time, and that time in UTC ("unset" for a stored zero).
HEALTHY = {
    "android_with_gps.mp4": ("video", 0.170667, "container", "2017-02-22T08:20:28Z"),
    "canon_MVI_4823.AVI": ("video", 2.599974, "avi-idit", "2012-09-10T12:52:00Z"),
    "gopro_karma.mp4": ("video", 12.078733, "container", "2017-04-17T19:27:57Z"),
    "iphone6.jpg": ("image", None, "exif", "2014-09-16T06:05:12.133000Z"),
    "issue337.m4a": ("audio", 11.28771, "container", "unset"),
    "issue515.mp4": ("video", 3.635, "container", "2020-11-20T14:04:36Z"),
    "pp_quicktime_hvc1.mov": ("video", 1.166667, "quicktime-creationdate", "2023-09-22T16:34:05Z"),
    "sony_a7m3.mts": ("video", 0.544, None, None),
    "sounddevices_A101_1.WAV": ("audio", 5.004979, "bwf-bext", "2018-12-31T04:40:00Z"),
    "yuan.amr": ("audio", 35.58, None, None),
}


@pytest.mark.parametrize("name", sorted(HEALTHY))
def test_healthy_corpus_file(name: str) -> None:
    kind, duration, source, when = HEALTHY[name]
    result = probe(corpus_path(name))
    stored = json.loads(json.dumps(result.as_dict()))

    assert result.ok and result.unsupported is None, result.error
    assert result.kind == kind
    if duration is None:
        assert result.duration_s is None
    else:
        assert result.duration_s == pytest.approx(duration, abs=0.001)
    assert result.creation_time_source == source
    if when == "unset":
        assert result.creation_time_unset is True
    else:
        assert stored["creation_time"] == when and result.creation_time_unset is False
