"""The quick MP4 structure read agrees with ffprobe, and declines what it cannot vouch for."""

from __future__ import annotations

from pathlib import Path

from ingest.media import mp4check
from ingest.media.derive import make_access_copy, probe_output
from ingest.synthetic import make_recorder


def test_agrees_with_ffprobe_on_a_fast_start_copy(tmp_path: Path) -> None:
    rec = make_recorder(tmp_path / "r", h265=0, wav=0, jpeg=0, truncated=0, segments=0)
    src = rec.root / rec.media()[0].relpath
    info = {"video_codec": "h264", "pix_fmt": "yuv420p", "audio_codec": "aac", "kind": "video"}
    copy = make_access_copy(src, tmp_path / "out", info=info)
    quick = mp4check.summarise(copy.path)
    full = probe_output("ffprobe", copy.path)
    assert quick is not None and quick.moov_first
    assert sorted(quick.streams) == [("audio", "aac"), ("video", "h264")]
    assert quick.duration_s is not None and full.duration_s is not None
    assert abs(quick.duration_s - full.duration_s) < 0.05
    # The camera original has its index at the end: not fast-start.
    original = mp4check.summarise(src)
    assert original is not None and not original.moov_first


def test_declines_damaged_and_foreign_files(tmp_path: Path) -> None:
    rec = make_recorder(tmp_path / "r", h264=0, h265=0, wav=1, jpeg=0, truncated=1, segments=0)
    truncated = next(f for f in rec.files if f.kind == "video-truncated")
    wav = next(f for f in rec.files if f.kind == "audio-wav")
    assert mp4check.summarise(rec.root / truncated.relpath) is None  # no moov
    assert mp4check.summarise(rec.root / wav.relpath) is None  # not an MP4
    cut = tmp_path / "cut.mp4"
    data = (rec.root / truncated.relpath).read_bytes()
    cut.write_bytes(data[:100])
    assert mp4check.summarise(cut) is None


def test_jpeg_poster_size_and_truncation(tmp_path: Path) -> None:
    rec = make_recorder(tmp_path / "r", h264=0, h265=0, wav=0, jpeg=1, truncated=0, segments=0)
    photo = rec.root / rec.media()[0].relpath
    assert mp4check.jpeg_size(photo) == (320, 240)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(photo.read_bytes()[:-100])  # no end-of-image marker
    assert mp4check.jpeg_size(cut) is None
