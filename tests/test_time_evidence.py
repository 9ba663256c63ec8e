"""ingest.media.timeevidence: capture time precedence, offset correction and flags."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from config.errors import ConfigError
from config.loader import load_settings
from config.message import from_stored
from ingest.identity import CHINA_STANDARD_TIME
from ingest.media.probe import probe
from ingest.media.timeevidence import (
    SOURCE_EMBEDDED,
    SOURCE_FILE_MTIME,
    SOURCE_FILE_MTIME_MINUS_DURATION,
    SOURCE_FILE_NAME,
    SOURCE_RECEIVED,
    TimeEvidence,
    TimeSources,
    derive_times,
)
from tests.fixtures.corpus import corpus_path

START = datetime(2026, 11, 26, 0, 30, tzinfo=UTC)  # 08:30 China Standard Time
DURATION_S = 600.0
RECEIVED = datetime(2026, 11, 26, 4, 0, tzinfo=UTC)  # docked at noon
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def sources(**changes: Any) -> TimeSources:
    """A recording whose sources all agree; ``changes`` override fields."""
    base = TimeSources(
        file_name=START,
        embedded=START,
        file_mtime=START + timedelta(seconds=DURATION_S),
        received=RECEIVED,
        clock_offset_s=None,
        duration_s=DURATION_S,
    )
    return replace(base, **changes)


def flagged(evidence: TimeEvidence, text: str) -> bool:
    return any(text in flag for flag in evidence.flags)


def test_agreeing_sources_use_the_file_name_without_flags() -> None:
    ev = derive_times(sources())

    assert ev.source == SOURCE_FILE_NAME
    assert ev.start == START
    assert ev.end == START + timedelta(seconds=DURATION_S)
    assert ev.corrected_by_offset is False
    assert ev.flags == ()


def test_precedence_falls_through_the_sources_in_order() -> None:
    later = START + timedelta(seconds=30)  # within the threshold: no disagreement flags

    ev = derive_times(sources(embedded=later))
    assert (ev.source, ev.start) == (SOURCE_FILE_NAME, START)

    ev = derive_times(sources(file_name=None, embedded=later))
    assert (ev.source, ev.start) == (SOURCE_EMBEDDED, later)
    assert ev.flags == ()

    ev = derive_times(sources(file_name=None, embedded=None, file_mtime=later))
    assert ev.source == SOURCE_FILE_MTIME_MINUS_DURATION
    assert ev.start == later - timedelta(seconds=DURATION_S)
    assert ev.end == later  # the mtime is the end of the recording
    assert ev.flags == ()


def test_mtime_without_duration_is_used_as_is_and_flagged() -> None:
    ev = derive_times(sources(file_name=None, embedded=None, duration_s=None))

    assert ev.source == SOURCE_FILE_MTIME
    assert ev.start == START + timedelta(seconds=DURATION_S)
    assert ev.end is None
    assert flagged(ev, "duration unknown")


def test_no_device_time_falls_back_to_received_and_says_so() -> None:
    ev = derive_times(sources(file_name=None, embedded=None, file_mtime=None, duration_s=None))

    assert ev.source == SOURCE_RECEIVED
    assert ev.start == RECEIVED
    assert ev.end is None
    assert ev.corrected_by_offset is False
    assert flagged(ev, "no plausible capture time")


def test_clock_offset_is_subtracted_from_device_sources() -> None:
    # The device clock runs 30 s ahead: it showed START + 30 s for a recording at START.
    shown = START + timedelta(seconds=30)
    ev = derive_times(
        sources(
            file_name=shown,
            embedded=shown,
            file_mtime=shown + timedelta(seconds=DURATION_S),
            clock_offset_s=30.0,
        )
    )

    assert ev.start == START
    assert ev.source == SOURCE_FILE_NAME
    assert ev.corrected_by_offset is True
    assert ev.flags == ()  # 30 s is within the threshold: no note about the clock
    assert ev.raw["file_name"] == "2026-11-26T00:30:30Z"  # what the device said


def test_zero_offset_moves_nothing() -> None:
    ev = derive_times(sources(clock_offset_s=0.0))
    assert ev.start == START
    assert ev.corrected_by_offset is False


def test_large_offset_is_noted_and_corrected() -> None:
    behind = START - timedelta(hours=1)
    ev = derive_times(
        sources(file_name=behind, embedded=behind, file_mtime=None, clock_offset_s=-3600.0)
    )

    assert ev.start == START
    assert ev.corrected_by_offset is True
    assert flagged(ev, "device clock was 3600 s behind the station clock")


def test_offset_rescues_a_clock_reset_to_1970() -> None:
    shown = EPOCH + timedelta(days=3)
    offset = (shown - START).total_seconds()  # the dock measured the wrong clock
    ev = derive_times(
        sources(file_name=None, embedded=shown, file_mtime=None, clock_offset_s=offset)
    )

    assert (ev.source, ev.start) == (SOURCE_EMBEDDED, START)
    assert not flagged(ev, "before 2000")


@pytest.mark.parametrize(("apart_s", "flag"), [(119, False), (120, False), (121, True)])
def test_disagreement_threshold_boundary(apart_s: int, flag: bool) -> None:
    ev = derive_times(sources(embedded=START + timedelta(seconds=apart_s), file_mtime=None))

    assert ev.start == START
    message = f"file name and embedded creation time differ by {apart_s} s (threshold 120 s)"
    assert ev.flags == ((message,) if flag else ())


def test_disagreement_between_name_and_mtime() -> None:
    ev = derive_times(
        sources(embedded=None, file_mtime=START + timedelta(seconds=DURATION_S + 121))
    )

    assert ev.flags == (
        "file name and file mtime minus duration differ by 121 s (threshold 120 s)",
    )


def test_threshold_is_configurable() -> None:
    ev = derive_times(
        sources(embedded=START + timedelta(seconds=11), file_mtime=None), threshold_s=10
    )
    assert ev.flags == ("file name and embedded creation time differ by 11 s (threshold 10 s)",)


def test_every_pair_is_compared() -> None:
    ev = derive_times(
        sources(
            embedded=START + timedelta(seconds=3600),
            file_mtime=START + timedelta(seconds=DURATION_S + 7200),
        )
    )

    assert ev.start == START
    assert len([f for f in ev.flags if " differ by " in f]) == 3


def test_pre_2000_clock_is_flagged_and_not_used() -> None:
    ev = derive_times(sources(embedded=datetime(1999, 6, 1, tzinfo=UTC)))

    assert (ev.source, ev.start) == (SOURCE_FILE_NAME, START)
    assert ev.flags == (
        "embedded creation time 1999-06-01 08:00:00 +08:00 is before 2000: device clock not set; "
        "not used",
    )

    ev = derive_times(sources(file_name=datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC)))
    assert (ev.source, ev.start) == (SOURCE_EMBEDDED, START)
    assert flagged(ev, "file name time 2000-01-01 07:59:59 +08:00 is before 2000")


@pytest.mark.parametrize(
    ("zero", "epoch"),
    [(EPOCH, "the Unix epoch"), (datetime(1904, 1, 1, tzinfo=UTC), "the MP4/QuickTime epoch")],
)
def test_a_stored_zero_is_flagged_unset_and_never_used(zero: datetime, epoch: str) -> None:
    ev = derive_times(sources(embedded=zero))

    assert (ev.source, ev.start) == (SOURCE_FILE_NAME, START)
    assert ev.flags == (
        f"embedded creation time {zero.isoformat().replace('+00:00', 'Z')} is zero ({epoch}): "
        "unset, the device never set it; not used",
    )
    # Zero even where a clock offset was measured: the raw value is what is zero.
    ev = derive_times(sources(file_name=zero, embedded=zero, file_mtime=zero, clock_offset_s=5))
    assert ev.source == SOURCE_RECEIVED
    assert len([f for f in ev.flags if "unset" in f]) == 3


@pytest.mark.parametrize(("ahead_s", "used"), [(120, True), (121, False)])
def test_future_clock_boundary(ahead_s: int, used: bool) -> None:
    future = RECEIVED + timedelta(seconds=ahead_s)
    ev = derive_times(sources(file_name=future, embedded=None, file_mtime=None, duration_s=None))

    if used:
        assert (ev.source, ev.start) == (SOURCE_FILE_NAME, future)
        assert ev.flags == ()
    else:
        assert ev.source == SOURCE_RECEIVED
        assert flagged(ev, "file name time 2026-11-26 12:02:01 +08:00 is 121 s after the station")
        assert flagged(ev, "not used")


def test_future_clock_falls_back_to_the_next_source() -> None:
    ev = derive_times(sources(file_name=datetime(2031, 1, 1, tzinfo=UTC)))

    assert (ev.source, ev.start) == (SOURCE_EMBEDDED, START)
    assert flagged(ev, "device clock wrong")


def test_local_time_written_as_utc() -> None:
    # Recorded at 08:30 CST; the firmware wrote "08:30" into creation_time as UTC.
    wrong = START.astimezone(CHINA_STANDARD_TIME).replace(tzinfo=UTC)
    assert (wrong - START).total_seconds() == 28800
    ev = derive_times(sources(embedded=wrong, received=START + timedelta(days=1)))

    assert (ev.source, ev.start) == (SOURCE_FILE_NAME, START)
    assert flagged(ev, "embedded creation time is exactly 8 h off: local time written as UTC?")
    assert flagged(ev, "differ by 28800 s")


def test_local_time_as_utc_is_recognised_even_when_it_lies_in_the_future() -> None:
    # Docked an hour after recording: the +8 h embedded time is after the receive time.
    wrong = START + timedelta(hours=8)
    ev = derive_times(sources(embedded=wrong, received=START + timedelta(hours=1)))

    assert ev.start == START
    assert flagged(ev, "exactly 8 h off")
    assert flagged(ev, "device clock wrong")


def test_eight_hours_is_exact() -> None:
    ev = derive_times(
        sources(embedded=START + timedelta(hours=8, seconds=30), received=START + timedelta(days=1))
    )
    assert not flagged(ev, "8 h")
    assert flagged(ev, "differ by 28830 s")


def test_mtime_before_the_start_without_duration() -> None:
    ev = derive_times(sources(duration_s=None, file_mtime=START - timedelta(hours=1)))

    assert ev.start == START and ev.end is None
    assert flagged(ev, "file mtime 2026-11-26 07:30:00 +08:00 is 3600 s before the file name start")


def test_end_after_receive_time_is_flagged() -> None:
    ev = derive_times(sources(file_mtime=None, received=START + timedelta(seconds=60)))

    assert ev.start == START
    assert flagged(ev, "capture end 2026-11-26 08:40:00 +08:00 is after the station received")


def test_raw_values_are_kept_as_given() -> None:
    src = sources(
        file_name=START.astimezone(CHINA_STANDARD_TIME),
        embedded=EPOCH,
        file_mtime=datetime(2035, 1, 1, tzinfo=UTC),
        clock_offset_s=12.5,
    )
    ev = derive_times(src)

    assert ev.raw == {
        "file_name": "2026-11-26T08:30:00+08:00",
        "embedded": "1970-01-01T00:00:00Z",
        "file_mtime": "2035-01-01T00:00:00Z",
        "received": "2026-11-26T04:00:00Z",
        "clock_offset_s": 12.5,
        "duration_s": DURATION_S,
    }
    assert ev.start == START - timedelta(seconds=12.5)


def test_as_dict_is_json() -> None:
    ev = derive_times(sources(embedded=EPOCH, clock_offset_s=1.0))
    data = json.loads(json.dumps(ev.as_dict()))

    assert data["start"] == "2026-11-26T00:29:59Z"
    assert data["end"] == "2026-11-26T00:39:59Z"
    assert data["source"] == SOURCE_FILE_NAME
    assert data["corrected_by_offset"] is True
    # Each flag kept as its English text, template and fields (config.message).
    assert [f["text"] for f in data["flags"]] == list(ev.flags) and data["flags"]
    assert [from_stored(f) for f in data["flags"]] == list(ev.flags)
    assert data["flags"][0]["msg"].startswith("{name} {time} is zero (the Unix epoch)")
    assert data["raw"]["embedded"] == "1970-01-01T00:00:00Z"


def test_unusable_numbers_are_flagged_and_ignored() -> None:
    ev = derive_times(sources(clock_offset_s=float("nan"), duration_s=-5.0))

    assert ev.start == START and ev.end is None
    assert ev.corrected_by_offset is False
    assert flagged(ev, "offset nan is not a number")
    assert flagged(ev, "duration -5.0 is not a valid length")


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        sources(file_name=datetime(2026, 11, 26, 8, 30))
    with pytest.raises(ValueError, match="threshold_s"):
        derive_times(sources(), threshold_s=-1)


# -- embedded times: which field, which zone (issue 13 point 6) ----------------------------
#
# Each expected UTC value is worked out by hand from what the device wrote: local times
# without a zone are in the station's zone (default Asia/Shanghai, UTC+8, no DST).


def test_avi_idit_is_camera_local_time() -> None:
    # Canon PowerShot: IDIT "MON SEP 10 20:52:00 2012", 20:52 at UTC+8 = 12:52 UTC.
    result = probe(corpus_path("canon_MVI_4823.AVI"))

    assert result.creation_time == datetime(2012, 9, 10, 12, 52, tzinfo=UTC)
    assert result.creation_time_raw == "MON SEP 10 20:52:00 2012"
    assert result.creation_time_source == "avi-idit"
    assert result.creation_time_rule is not None and "Asia/Shanghai" in result.creation_time_rule
    # A camera set to another zone: the station's setting says which.
    berlin = probe(corpus_path("canon_MVI_4823.AVI"), zone="Europe/Berlin")
    assert berlin.creation_time == datetime(2012, 9, 10, 18, 52, tzinfo=UTC)  # CEST, UTC+2


def test_avi_idit_with_a_body_cam_name_raises_no_eight_hour_flag() -> None:
    # The recorder's name says 20:52:00 local, as the IDIT does: they agree once both are
    # read as local time (IDIT taken as UTC was "exactly 8 h off").
    result = probe(corpus_path("canon_MVI_4823.AVI"))
    name_time = datetime(2012, 9, 10, 20, 52, tzinfo=CHINA_STANDARD_TIME)
    ev = derive_times(
        sources(
            file_name=name_time,
            embedded=result.creation_time,
            file_mtime=None,
            received=datetime(2012, 9, 11, tzinfo=UTC),
            duration_s=result.duration_s,
        )
    )
    assert ev.start == datetime(2012, 9, 10, 12, 52, tzinfo=UTC)
    assert ev.flags == ()


def test_bwf_bext_origination_is_recorder_local_time() -> None:
    # Sound Devices 702T: bext date "2018-12-31", time "12:40:00" local = 04:40 UTC.
    result = probe(corpus_path("sounddevices_A101_1.WAV"))

    assert result.creation_time == datetime(2018, 12, 31, 4, 40, tzinfo=UTC)
    assert result.creation_time_raw == "2018-12-31 12:40:00"
    assert result.creation_time_source == "bwf-bext"


def test_bwf_bext_date_with_colons_is_read_too(tmp_path: Path) -> None:
    # The corpus has only the dashed form; made here: ffmpeg writes a bext chunk with the
    # colon form other recorders use, "2019:01:01" "09:15:30" = 2019-01-01 01:15:30 UTC.
    wav = tmp_path / "ZOOM0001.WAV"
    ffmpeg(
        ["-f", "lavfi", "-i", "sine=d=1:r=8000", "-write_bext", "1"],
        ["-metadata", "origination_date=2019:01:01", "-metadata", "origination_time=09:15:30"],
        wav,
    )
    result = probe(wav)

    assert result.creation_time == datetime(2019, 1, 1, 1, 15, 30, tzinfo=UTC)
    assert result.creation_time_raw == "2019:01:01 09:15:30"


def test_exif_time_is_camera_local_time() -> None:
    # iPhone 6 JPEG: DateTimeOriginal "2014:09:16 14:05:12", SubSecTimeOriginal "133",
    # no offset tag: 14:05:12.133 at UTC+8 = 06:05:12.133 UTC.
    result = probe(corpus_path("iphone6.jpg"))

    assert result.creation_time == datetime(2014, 9, 16, 6, 5, 12, 133000, tzinfo=UTC)
    assert result.creation_time_source == "exif"
    assert result.creation_time_raw == "2014:09:16 14:05:12.133"
    assert probe(corpus_path("iphone6.jpg"), zone="UTC").creation_time == datetime(
        2014, 9, 16, 14, 5, 12, 133000, tzinfo=UTC
    )


def test_apple_creationdate_with_its_offset() -> None:
    # iPad HEVC MOV: com.apple.quicktime.creationdate "2023-09-22T18:34:05+0200"
    # = 16:34:05 UTC (the station's zone plays no part: the offset is in the value).
    result = probe(corpus_path("pp_quicktime_hvc1.mov"), zone="Asia/Shanghai")

    assert result.creation_time == datetime(2023, 9, 22, 16, 34, 5, tzinfo=UTC)
    assert result.creation_time_source == "quicktime-creationdate"
    assert result.creation_time_raw == "2023-09-22T18:34:05+0200"


def test_apple_creationdate_is_preferred_to_the_container_time(tmp_path: Path) -> None:
    # Made here (the corpus file's two times agree): container creation_time 02:00:00Z,
    # creationdate 10:00:30+08:00 = 02:00:30Z. The creationdate wins, to the second.
    mov = tmp_path / "IMG_0001.MOV"
    ffmpeg(
        ["-f", "lavfi", "-i", "testsrc=d=0.2:s=64x48", "-c:v", "mpeg4", "-movflags"],
        [
            "use_metadata_tags",
            "-metadata",
            "creation_time=2026-01-01T02:00:00Z",
            "-metadata",
            "com.apple.quicktime.creationdate=2026-01-01T10:00:30+0800",
        ],
        mov,
    )
    result = probe(mov)

    assert result.tags["creation_time"].startswith("2026-01-01T02:00:00")
    assert result.creation_time == datetime(2026, 1, 1, 2, 0, 30, tzinfo=UTC)
    assert result.creation_time_source == "quicktime-creationdate"


def test_stored_zero_creation_time_is_unset_and_never_used() -> None:
    # issue337.m4a: its movie header creation time is 0 (ffprobe shows none).
    result = probe(corpus_path("issue337.m4a"))

    assert result.creation_time_unset is True
    assert result.creation_time == datetime(1904, 1, 1, tzinfo=UTC)
    received = datetime(2026, 11, 26, tzinfo=UTC)
    ev = derive_times(
        TimeSources(
            file_name=None,
            embedded=result.creation_time,
            file_mtime=None,
            received=received,
            clock_offset_s=None,
            duration_s=result.duration_s,
        )
    )
    assert (ev.source, ev.start) == (SOURCE_RECEIVED, received)
    assert flagged(ev, "is zero (the MP4/QuickTime epoch): unset")


def test_unix_epoch_creation_time_is_unset(tmp_path: Path) -> None:
    # Made here: an MP4 whose movie header holds 2,082,844,800 s after 1904, i.e. the
    # Unix epoch, which ffprobe shows as 1970-01-01T00:00:00Z.
    clip = tmp_path / "clip.mp4"
    ffmpeg(["-f", "lavfi", "-i", "sine=d=0.5"], ["-c:a", "aac"], clip)
    data = bytearray(clip.read_bytes())
    at = data.index(b"mvhd") + 8  # type, then version and flags: creation time (v0)
    data[at : at + 4] = (2_082_844_800).to_bytes(4, "big")
    clip.write_bytes(bytes(data))
    result = probe(clip)

    assert result.tags["creation_time"].startswith("1970-01-01T00:00:00")
    assert result.creation_time == EPOCH
    assert result.creation_time_unset is True


def test_station_time_zone_setting_is_validated(tmp_path: Path) -> None:
    assert load_settings(data_dir=tmp_path, environ={}).station.time_zone == "Asia/Shanghai"
    (tmp_path / "liuhen.toml").write_text('[station]\ntime_zone = "Mars/Olympus"\n')
    with pytest.raises(ConfigError, match=r"'station\.time_zone' must be an IANA time zone"):
        load_settings(data_dir=tmp_path, environ={})
    (tmp_path / "liuhen.toml").write_text('[station]\ntime_zone = "Europe/Berlin"\n')
    assert load_settings(data_dir=tmp_path, environ={}).station.time_zone == "Europe/Berlin"


def ffmpeg(inputs: list[str], options: list[str], out: Path) -> None:
    tool = shutil.which("ffmpeg") or "ffmpeg"
    subprocess.run([tool, "-v", "error", "-y", *inputs, *options, str(out)], check=True)
