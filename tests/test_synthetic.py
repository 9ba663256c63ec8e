"""The synthetic recorder: real media made by ffmpeg, checked with ffprobe and hashlib."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import subprocess
import zlib
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ingest.synthetic import (
    AUDIO_DIR,
    DEFAULT_DEVICE,
    DEVICE_INFO_NAME,
    PHOTO_DIR,
    VIDEO_DIR,
    DeviceInfo,
    SyntheticFile,
    SyntheticRecorder,
    make_bulk_files,
    make_recorder,
)

# Written out here rather than imported, so a change to the module's pattern shows up.
GAT947_NAME = re.compile(
    r"^(?P<serial>[0-9A-Z]{7})_(?P<officer>[0-9]{6})_(?P<time>[0-9]{14})_(?P<seq>[0-9]{4})"
    r"\.(?P<ext>MP4|WAV|JPG)$"
)

OTHER_DEVICE = DeviceInfo(
    serial="B765432",
    officer_number="998877",
    officer_name="李四",
    unit_number="310115000000",
    unit_name="浦东新区市场监督管理局",
    model="DSJ-T8",
)


@pytest.fixture(scope="module")
def recorder(tmp_path_factory: pytest.TempPathFactory) -> SyntheticRecorder:
    return make_recorder(tmp_path_factory.mktemp("recorder") / "dock0")


def ffprobe(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", "-show_format", "-show_streams", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def probe(path: Path) -> dict[str, Any]:
    proc = ffprobe(path)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def digests(path: Path) -> tuple[str, str]:
    data = path.read_bytes()
    return hashlib.sha256(data).hexdigest(), hashlib.new("sm3", data).hexdigest()


def by_kind(rec: SyntheticRecorder, kind: str) -> list[SyntheticFile]:
    return [f for f in rec.files if f.kind == kind]


def name_of(f: SyntheticFile) -> re.Match[str]:
    m = GAT947_NAME.match(f.relpath.rsplit("/", 1)[-1])
    assert m, f.relpath
    return m


def test_every_listed_file_exists_with_its_size_and_digests(recorder: SyntheticRecorder) -> None:
    on_disk = {
        p.relative_to(recorder.root).as_posix() for p in recorder.root.rglob("*") if p.is_file()
    }
    # Nothing more (no half-written temporaries), nothing less.
    assert on_disk == {f.relpath for f in recorder.files}
    for f in recorder.files:
        path = recorder.root / f.relpath
        assert path.stat().st_size == f.size > 0
        assert digests(path) == (f.sha256, f.sm3), f.relpath


def test_default_recorder_has_one_of_each_kind(recorder: SyntheticRecorder) -> None:
    kinds = Counter(f.kind for f in recorder.files)
    assert kinds == {
        "device-info": 1,
        "video-h264": 1,
        "video-h265": 1,
        "audio-wav": 1,
        "photo-jpeg": 1,
        "video-truncated": 1,
        "segment": 2,
    }
    assert recorder.files[0].relpath == DEVICE_INFO_NAME
    assert recorder.media() == recorder.files[1:]
    assert recorder.device == DEFAULT_DEVICE


def test_media_names_follow_the_gat947_pattern(recorder: SyntheticRecorder) -> None:
    folder = {
        "video-h264": VIDEO_DIR,
        "video-h265": VIDEO_DIR,
        "segment": VIDEO_DIR,
        "video-truncated": VIDEO_DIR,
        "audio-wav": AUDIO_DIR,
        "photo-jpeg": PHOTO_DIR,
    }
    ext = {"audio-wav": "WAV", "photo-jpeg": "JPG"}
    for f in recorder.media():
        m = name_of(f)
        assert f.relpath == f"{folder[f.kind]}/{m.group(0)}"
        assert m["ext"] == ext.get(f.kind, "MP4")
        assert m["serial"] == recorder.device.serial
        assert m["officer"] == recorder.device.officer_number
        assert datetime.strptime(m["time"], "%Y%m%d%H%M%S") == f.start


def test_recordings_follow_each_other_through_the_shift(recorder: SyntheticRecorder) -> None:
    media = sorted(recorder.media(), key=lambda f: int(name_of(f)["seq"]))
    assert [int(name_of(f)["seq"]) for f in media] == list(range(1, len(media) + 1))
    for before, after in itertools.pairwise(media):
        assert before.start is not None and after.start is not None
        ends = before.start + timedelta(seconds=before.duration_s or 0)
        assert after.start >= ends, (before.relpath, after.relpath)


@pytest.mark.parametrize(
    ("kind", "codecs"),
    [
        ("video-h264", ["h264", "aac"]),
        ("segment", ["h264", "aac"]),
        ("video-h265", ["hevc", "aac"]),
        ("audio-wav", ["pcm_s16le"]),
        ("photo-jpeg", ["mjpeg"]),
    ],
)
def test_ffprobe_reads_the_codecs(
    recorder: SyntheticRecorder, kind: str, codecs: list[str]
) -> None:
    for f in by_kind(recorder, kind):
        info = probe(recorder.root / f.relpath)
        assert [s["codec_name"] for s in info["streams"]] == codecs
        if f.duration_s is not None:
            assert float(info["format"]["duration"]) == pytest.approx(f.duration_s, abs=0.1)


def test_video_sizes_and_embedded_creation_time(recorder: SyntheticRecorder) -> None:
    for f in by_kind(recorder, "video-h264") + by_kind(recorder, "video-h265"):
        info = probe(recorder.root / f.relpath)
        video = info["streams"][0]
        assert (video["width"], video["height"]) == (320, 240)
        assert info["streams"][1]["channels"] == 1
        assert f.start is not None
        # The name holds Beijing wall-clock time; creation_time is UTC (8 hours earlier).
        created = datetime.fromisoformat(info["format"]["tags"]["creation_time"])
        assert created == (f.start - timedelta(hours=8)).replace(tzinfo=UTC)
    (h265,) = by_kind(recorder, "video-h265")
    assert probe(recorder.root / h265.relpath)["streams"][0]["codec_tag_string"] == "hvc1"
    (wav,) = by_kind(recorder, "audio-wav")
    audio = probe(recorder.root / wav.relpath)["streams"][0]
    assert (audio["sample_rate"], audio["channels"]) == ("16000", 1)


def test_truncated_recording_is_unreadable(recorder: SyntheticRecorder) -> None:
    (f,) = by_kind(recorder, "video-truncated")
    path = recorder.root / f.relpath
    assert path.read_bytes()[4:8] == b"ftyp"  # it is the start of a real MP4 ...
    proc = ffprobe(path)
    assert proc.returncode != 0  # ... whose moov atom never got written
    assert "moov" in proc.stderr
    assert f.duration_s is None


def test_split_recording_segments_are_contiguous(recorder: SyntheticRecorder) -> None:
    segments = by_kind(recorder, "segment")
    assert len(segments) == 2
    assert len({f.group for f in segments}) == 1 and segments[0].group is not None
    assert [f.sequence for f in segments] == [1, 2]
    for k, nxt in itertools.pairwise(segments):
        assert k.start is not None and k.duration_s is not None
        assert nxt.start == k.start + timedelta(seconds=k.duration_s)
        assert int(name_of(nxt)["seq"]) == int(name_of(k)["seq"]) + 1
    for f in recorder.media():
        if f.kind != "segment":
            assert f.group is None and f.sequence is None


def test_device_info_file_parses_back(recorder: SyntheticRecorder) -> None:
    raw = (recorder.root / DEVICE_INFO_NAME).read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")  # no BOM
    lines = raw.decode("utf-8").splitlines()
    pairs = [line.split("=", 1) for line in lines]
    assert [k for k, _ in pairs] == [
        "serial",
        "officer_number",
        "officer_name",
        "unit_number",
        "unit_name",
        "model",
        "clock_offset_s",
    ]
    info = dict(pairs)
    device = recorder.device
    assert info == {
        "serial": device.serial,
        "officer_number": device.officer_number,
        "officer_name": "张三",
        "unit_number": device.unit_number,
        "unit_name": "徐汇区市场监督管理局",
        "model": device.model,
        "clock_offset_s": "0",
    }


def test_same_arguments_give_the_same_names(recorder: SyntheticRecorder, tmp_path: Path) -> None:
    again = make_recorder(tmp_path / "dock1")
    assert [(f.relpath, f.kind, f.start, f.group, f.sequence) for f in again.files] == [
        (f.relpath, f.kind, f.start, f.group, f.sequence) for f in recorder.files
    ]


def test_options_shape_the_recorder(tmp_path: Path) -> None:
    rec = make_recorder(
        tmp_path / "dock",
        device=OTHER_DEVICE,
        start=datetime(2027, 1, 2, 3, 4, 5, 678),
        h264=2,
        h265=0,
        wav=0,
        jpeg=2,
        truncated=0,
        segments=3,
        with_device_info=False,
        duration_s=1.0,
        size=(160, 120),
        seed=7,
    )
    assert Counter(f.kind for f in rec.files) == {"video-h264": 2, "photo-jpeg": 2, "segment": 3}
    assert not (rec.root / DEVICE_INFO_NAME).exists()
    assert rec.media() == rec.files
    first = min(rec.files, key=lambda f: int(name_of(f)["seq"]))
    assert first.start == datetime(2027, 1, 2, 3, 4, 5)  # whole seconds, as in the name
    assert all(name_of(f)["serial"] == "B765432" for f in rec.files)
    video = probe(rec.root / by_kind(rec, "video-h264")[0].relpath)["streams"][0]
    assert (video["width"], video["height"]) == (160, 120)
    segs = by_kind(rec, "segment")
    assert [f.sequence for f in segs] == [1, 2, 3]
    assert segs[0].start is not None
    assert segs[2].start == segs[0].start + timedelta(seconds=2)


def test_an_aware_start_is_converted_to_beijing_wall_clock(tmp_path: Path) -> None:
    rec = make_recorder(
        tmp_path / "dock",
        start=datetime(2026, 11, 26, 0, 30, tzinfo=UTC),
        h264=0,
        h265=0,
        wav=0,
        truncated=0,
        segments=0,
    )
    (photo,) = rec.media()
    assert photo.start == datetime(2026, 11, 26, 8, 30)
    assert name_of(photo)["time"] == "20261126083000"


def test_no_two_synthetic_files_share_content(recorder: SyntheticRecorder, tmp_path: Path) -> None:
    # Identical bytes would be stored as duplicates, hiding files from ingest tests.
    other = make_recorder(tmp_path / "dock", device=OTHER_DEVICE, with_device_info=False)
    shas = [f.sha256 for f in recorder.media()] + [f.sha256 for f in other.media()]
    assert len(set(shas)) == len(shas)


def test_refuses_to_overwrite_a_recorder(recorder: SyntheticRecorder) -> None:
    before = digests(recorder.root / recorder.media()[0].relpath)
    with pytest.raises(FileExistsError):
        make_recorder(recorder.root)
    assert digests(recorder.root / recorder.media()[0].relpath) == before


@pytest.mark.parametrize(
    "kwargs",
    [
        {"duration_s": 1.5},  # segments need whole seconds to be contiguous by name
        {"size": (161, 120)},
        {"h264": -1},
        {"duration_s": 0.0},
    ],
)
def test_rejects_bad_arguments(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        make_recorder(tmp_path / "dock", **kwargs)
    assert not any((tmp_path / "dock").rglob("*.*"))


def test_rejects_a_malformed_device() -> None:
    with pytest.raises(ValueError, match="serial"):
        DeviceInfo("A12345", "010203", "张三", "310104000000", "单位", "DSJ-V9")
    with pytest.raises(ValueError, match="officer_name"):
        DeviceInfo("A123456", "010203", "张=三", "310104000000", "单位", "DSJ-V9")


def test_bulk_files_have_the_exact_size_and_digests(tmp_path: Path) -> None:
    rec = make_bulk_files(tmp_path / "bulk", 40, 100_000, seed=3)
    media = rec.media()
    assert len(media) == 40
    assert (rec.root / DEVICE_INFO_NAME).is_file()
    for f in media:
        path = rec.root / f.relpath
        assert f.relpath.startswith(PHOTO_DIR + "/")
        assert name_of(f)["ext"] == "JPG"
        assert f.kind == "other"
        assert path.stat().st_size == f.size == 100_000
        assert digests(path) == (f.sha256, f.sm3)
    assert len({f.sha256 for f in media}) == 40
    assert len({f.relpath for f in media}) == 40
    sample = (rec.root / media[0].relpath).read_bytes()
    assert len(zlib.compress(sample)) > 0.99 * len(sample)  # not compressible


def test_bulk_file_larger_than_a_write_chunk(tmp_path: Path) -> None:
    size = 2 * (8 << 20) + 12_345
    rec = make_bulk_files(tmp_path / "bulk", 2, size, device=OTHER_DEVICE)
    for f in rec.media():
        path = rec.root / f.relpath
        assert path.stat().st_size == size
        assert digests(path) == (f.sha256, f.sm3)
    a, b = rec.media()
    assert a.sha256 != b.sha256
    # Same arguments, same bytes (benchmarks compare runs).
    again = make_bulk_files(tmp_path / "bulk-again", 2, size, device=OTHER_DEVICE)
    assert [(f.relpath, f.sha256, f.sm3) for f in again.files] == [
        (f.relpath, f.sha256, f.sm3) for f in rec.files
    ]


def test_bulk_files_of_zero_bytes(tmp_path: Path) -> None:
    rec = make_bulk_files(tmp_path / "bulk", 2, 0)
    assert [f.size for f in rec.media()] == [0, 0]
    assert all(f.sha256 == hashlib.sha256(b"").hexdigest() for f in rec.media())
