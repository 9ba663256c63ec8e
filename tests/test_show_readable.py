"""`liuhen show` as an archivist reads it (issue 14): readable fields, never Python
structures; times in the station's zone with their offset; file names, serials, 警号 and
digests whole, at 80 and 120 columns of a real terminal (tmux).

A real recording (ffmpeg) docked through the CLI from a recorder with a long serial, a
12-digit 警号 and a long Chinese file name, then probed and copied by `worker --drain`."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from config.settings import zone_of
from config.timetext import show_time
from ingest.synthetic import make_recorder
from tests.cli_helpers import run_cli
from tests.i18n_helpers import assert_chinese
from tests.offload_helpers import make_app
from tests.test_station_status_layout import FIRST, SECOND, write_recorder
from tests.tmux_helpers import assert_whole, screen, widest_line

LIUHEN = str(Path(sys.executable).with_name("liuhen"))
SHANGHAI = zone_of("Asia/Shanghai")
NAME = "310104123456_徐汇区漕溪北路违法停车现场取证录像_第一段.MP4"
# What must never show: a dict or list as Python prints it, or a raw= dump.
PYTHON_STRUCTURES = re.compile(r"\{'|'\}|\['|'\]|raw=|\{\"|: \{|\[\]|\{\}")


@pytest.fixture
def station(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("LIUHEN_HOME", str(data))
    monkeypatch.setenv("LIUHEN_INGEST_STABLE_S", "0")
    make_app(data).close()
    return data


@pytest.fixture
def recording(station: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """The `show --json` report of a real video, probed and with its copies made."""
    root = tmp_path / "dock" / "slot1"
    make_recorder(root, h264=1, h265=0, wav=0, jpeg=0, truncated=0, segments=0)
    (video,) = root.rglob("*.MP4")
    video.rename(video.with_name(NAME))
    write_recorder(root, FIRST, [])  # the device file: the long serial and 警号
    docked = run_cli(capsys, "ingest", str(root), "--json")
    assert docked.code == 0, docked.out + docked.err
    drained = run_cli(capsys, "worker", "--drain")
    assert drained.code == 0, drained.out + drained.err
    shown = run_cli(capsys, "show", NAME, "--json")
    assert shown.code == 0, shown.err
    report: dict[str, Any] = json.loads(shown.out)
    assert report["derivatives"], report  # copies made: their digests are shown too
    return report


def _env(station: Path, lang: str) -> dict[str, str]:
    return {"LIUHEN_HOME": str(station), "LIUHEN_LANG": lang}


@pytest.mark.parametrize("width", [80, 120])
def test_show_is_readable_and_whole_at_width(
    recording: dict[str, Any], station: Path, width: int
) -> None:
    text = screen([LIUHEN, "show", str(recording["id"])], width=width, env=_env(station, "en"))

    assert widest_line(text) <= width, text
    digests = [recording["sha256"], recording["sm3"]]
    digests += [d[k] for d in recording["derivatives"] for k in ("sha256", "sm3")]
    assert_whole(text, NAME, *FIRST, *digests)
    assert not PYTHON_STRUCTURES.search(text), text
    # Times in Shanghai with their offset, the ones the JSON gives in UTC.
    assert_whole(text, show_time(recording["capture_start"], SHANGHAI))
    assert "+08:00" in text and "+00:00" not in text
    assert "access copy" in text and "custody log (oldest first):" in text
    # The time evidence reads as labelled times, not the stored mapping.
    evidence = recording["time_evidence"]["raw"]
    assert_whole(text, show_time(evidence["received"], SHANGHAI))


@pytest.mark.parametrize("width", [80, 120])
def test_show_speaks_chinese_by_default(
    recording: dict[str, Any], station: Path, width: int
) -> None:
    text = screen([LIUHEN, "show", NAME], width=width, env=_env(station, ""))

    assert widest_line(text) <= width, text
    assert_whole(text, NAME, *FIRST, recording["sha256"], recording["sm3"])
    assert_chinese(text)
    assert "音视频记录 #" in text and "警号" in text and "利用副本" in text
    assert "保管链日志" in text and not PYTHON_STRUCTURES.search(text)
    english = screen([LIUHEN, "--lang", "en", "show", NAME], width=width, env=_env(station, ""))
    assert "officer no." in english and "警号" not in english


def test_a_flag_with_entries_reads_as_lines(
    station: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same bytes docked from another recorder: the identity conflict the catalog
    flags (a list of mappings) is shown as labelled lines, not as a Python list."""
    body = b"the same recording, seen from two recorders" * 40
    first = write_recorder(tmp_path / "dock" / "a", FIRST, [])
    (first / "DCIM" / "100RECORD" / "现场_0001.MP4").write_bytes(body)
    second = write_recorder(tmp_path / "dock" / "b", SECOND, [])
    (second / "DCIM" / "100RECORD" / "现场_0001.MP4").write_bytes(body)
    for root in (first, second):
        assert run_cli(capsys, "ingest", str(root), "--json").code == 0
    report = json.loads(run_cli(capsys, "show", "现场_0001.MP4", "--json").out)
    (conflict,) = report["flags"]["identity_conflict"]

    text = run_cli(capsys, "show", "现场_0001.MP4").out
    assert not PYTHON_STRUCTURES.search(text), text
    assert "flag identity_conflict:" in text
    flat = " ".join(text.split())
    assert f"conflict: {conflict['conflict']}" in flat
    assert_whole(text, *SECOND)
