"""`liuhen station status` as the officer at the docking station reads it (issue 14).

Real dockings (the CLI's `ingest`) of recorders with long, realistic serials and 警号, read
back in a real terminal (tmux) of 80 and 120 columns: newest first with their dock time,
the last 24 hours by default and every docking with --all, two dockings of one recorder
told apart, and the big state exactly the station's verdict."""

from __future__ import annotations

import json
import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from config.settings import zone_of
from config.timetext import show_clock
from ingest.synthetic import DEFAULT_DEVICE, DEVICE_INFO_NAME
from tests.cli_helpers import run_cli
from tests.offload_helpers import make_app
from tests.tmux_helpers import assert_whole, screen, widest_line

LIUHEN = str(Path(sys.executable).with_name("liuhen"))
SHANGHAI = zone_of("Asia/Shanghai")

FIRST = ("DSJ-A8-2026-000123456", "310104123456")
SECOND = ("DSJ-A8-2026-000987654", "310104654321")
OLD = ("DSJ-X9-2025-000000077", "310104000077")


def write_recorder(root: Path, device: tuple[str, str], names: list[str]) -> Path:
    """A recorder folder: its device file (serial, 警号) and one small file per name."""
    serial, officer = device
    record = root / "DCIM" / "100RECORD"
    record.mkdir(parents=True, exist_ok=True)
    info = DEFAULT_DEVICE.info_text()
    info = info.replace(f"serial={DEFAULT_DEVICE.serial}", f"serial={serial}")
    info = info.replace(
        f"officer_number={DEFAULT_DEVICE.officer_number}", f"officer_number={officer}"
    )
    (root / DEVICE_INFO_NAME).write_text(info, encoding="utf-8")
    for name in names:
        (record / name).write_bytes(f"{serial} {name}".encode() * 50)
    return root


def dock(capsys: pytest.CaptureFixture[str], root: Path) -> dict[str, Any]:
    result = run_cli(capsys, "ingest", str(root), "--json")
    assert result.code in (0, 3, 66), result.out + result.err
    return json.loads(result.out)  # type: ignore[no-any-return]


@pytest.fixture
def station(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("LIUHEN_HOME", str(data))
    monkeypatch.setenv("LIUHEN_INGEST_STABLE_S", "0")
    make_app(data).close()
    return data


@pytest.fixture
def dockings(station: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """Five dockings, oldest first: one of three days ago, the first recorder twice (a new
    recording between), the second recorder, and an empty folder (nothing mounted)."""
    old = dock(capsys, write_recorder(tmp_path / "dock" / "old", OLD, ["旧记录_0001.MP4"]))
    with sqlite3.connect(station / "station-journal.sqlite3") as db:  # docked three days ago
        then = (datetime.now(UTC) - timedelta(days=3)).isoformat()
        db.execute(
            "UPDATE dockings SET started_at = ?, updated_at = ? WHERE uid = ?",
            (then, then, old["docking"]),
        )
    slot = tmp_path / "dock" / "slot1"
    first = dock(capsys, write_recorder(slot, FIRST, ["徐汇区漕溪北路违法停车现场取证_0001.MP4"]))
    again = dock(capsys, write_recorder(slot, FIRST, ["徐汇区漕溪北路违法停车现场取证_0002.MP4"]))
    second = dock(capsys, write_recorder(tmp_path / "dock" / "slot2", SECOND, ["现场_0001.MP4"]))
    empty = tmp_path / "dock" / "slot3"
    empty.mkdir()
    nothing = dock(capsys, empty)
    assert [d["state"] for d in (old, first, again, second, nothing)] == [
        "SAFE_TO_CLEAR",
        "SAFE_TO_CLEAR",
        "SAFE_TO_CLEAR",
        "SAFE_TO_CLEAR",
        "NO_FILES",
    ]
    return [d["docking"] for d in (old, first, again, second, nothing)]


def test_json_numbers_the_dockings_of_each_recorder_in_the_station_zone(
    dockings: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    rows = json.loads(run_cli(capsys, "station", "status", "--json").out)
    by_uid = {r["docking"]: r for r in rows}
    assert set(by_uid) == set(dockings)  # scripts get every docking
    _old, first, again, second, nothing = (by_uid[u] for u in dockings)
    assert (first["device_docking"], again["device_docking"]) == (1, 2)
    assert first["device_dockings"] == again["device_dockings"] == 2
    assert second["device_docking"] == 1 and nothing["device_docking"] is None
    assert first["docked_at"].endswith("+08:00")  # ISO 8601 with the station's offset
    assert datetime.fromisoformat(first["docked_at"]) == datetime.fromisoformat(first["started_at"])


def _shown_order(text: str, uids: list[str]) -> list[str]:
    """The dockings in the order the screen lists them (by their short ids)."""
    found = {u: text.find("#" + u[:8]) for u in uids}
    return sorted((u for u in uids if found[u] >= 0), key=lambda u: found[u])


@pytest.mark.parametrize("width", [80, 120])
def test_status_newest_first_recent_only_whole_at_width(
    dockings: list[str], station: Path, width: int, capsys: pytest.CaptureFixture[str]
) -> None:
    _old, first, again, second, nothing = dockings
    text = screen([LIUHEN, "station", "status"], width=width, env={"LIUHEN_LANG": "en"})

    assert widest_line(text) <= width, text
    assert_whole(text, *FIRST, *SECOND)
    # Newest first; the docking of three days ago is left out, and the screen says so.
    assert _shown_order(text, dockings) == [nothing, second, again, first]
    assert OLD[0] not in text and OLD[1] not in text
    assert "1 older docking not shown (--all shows every docking)" in text
    assert "4 dockings of the last 24 hours, newest first" in text
    # The two dockings of the first recorder: each with its own dock time and number.
    assert "docking 2" in text and "docking 1" in text
    assert text.index("docking 2") < text.index("docking 1")
    rows = json.loads(run_cli(capsys, "station", "status", "--json").out)
    clock = {r["docking"]: show_clock(r["started_at"], SHANGHAI) for r in rows}
    for uid in (first, again, second):
        assert_whole(text, clock[uid])
    assert "times in Asia/Shanghai (+08:00)" in text
    # The verdicts: three dockings safe to clear, the empty folder not.
    assert text.count("SAFE TO CLEAR") == 3
    assert text.count("DO NOT UNPLUG") == 1 and "NO FILES FOUND" in text


@pytest.mark.parametrize("width", [80, 120])
def test_status_all_lists_every_docking_in_chinese(
    dockings: list[str], station: Path, width: int
) -> None:
    old, first, again, second, nothing = dockings
    text = screen([LIUHEN, "station", "status", "--all"], width=width, env={"LIUHEN_LANG": "zh"})

    assert widest_line(text) <= width, text
    assert_whole(text, *FIRST, *SECOND, *OLD)
    assert _shown_order(text, dockings) == [nothing, second, again, first, old]
    assert "全部 5 次接入，最新的在前" in text and "未显示" not in text
    assert "第2次接入" in text and "第1次接入" in text
    assert text.count("可安全拔出") == 4 and text.count("请勿拔出") == 1
    assert "未找到文件" in text and "SAFE TO CLEAR" not in text


def test_an_incomplete_docking_is_not_safe_and_says_why(
    station: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A file whose name names another recorder is quarantined, never filed under this one.
    foreign = "A123456_010203_20261126085134_0003.MP4"
    root = write_recorder(tmp_path / "dock" / "slot1", FIRST, ["完整的记录_0001.MP4", foreign])
    docked = dock(capsys, root)
    assert docked["state"] == "INCOMPLETE"

    table = run_cli(capsys, "station", "status").out
    assert "DO NOT UNPLUG" in table and "incomplete" in table
    assert "1 file not taken" in table
    assert "SAFE TO CLEAR" not in table


def test_a_very_long_serial_keeps_the_officer_number_whole_at_80(
    station: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No room for both beside each other: the 警号 goes under the serial, both whole."""
    device = ("ZFJLY-SH-XUHUI-2026-A8-000000123456", "310104123456")
    dock(capsys, write_recorder(tmp_path / "dock" / "slot1", device, ["现场_0001.MP4"]))

    for lang, label in (("en", "officer no. "), ("zh", "警号 ")):
        text = screen([LIUHEN, "station", "status"], width=80, env={"LIUHEN_LANG": lang})
        assert widest_line(text) <= 80, text
        assert_whole(text, device[0], label + device[1])


def test_recent_is_the_newest_20_of_a_day_and_every_docking_under_way() -> None:
    """A busy day: 25 dockings in the last hours and one left offloading two days ago
    (a recorder still plugged in): the 20 newest and the one under way are shown."""
    from liuhen.ingest_cmds import recent_rows

    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)

    def row(uid: str, hours_ago: float, state: str = "SAFE_TO_CLEAR") -> dict[str, Any]:
        return {
            "docking": uid,
            "state": state,
            "started_at": (now - timedelta(hours=hours_ago)).isoformat(),
        }

    rows = [row(f"d{i:02d}", 20 - i * 0.5) for i in range(25)]
    rows.append(row("stuck", 48, "OFFLOADING"))
    rows.append(row("old", 30))

    shown, hidden = recent_rows(rows, show_all=False, now=now)
    assert [r["docking"] for r in shown] == [f"d{i:02d}" for i in range(24, 4, -1)] + ["stuck"]
    assert hidden == 6  # five of the day beyond the newest 20, and the old one
    everything, none = recent_rows(rows, show_all=True, now=now)
    assert len(everything) == 27 and none == 0
    assert everything[0]["docking"] == "d24" and everything[-1]["docking"] == "stuck"
