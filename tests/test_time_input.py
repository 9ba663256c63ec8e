"""Times typed into the case and device commands and imports are read in the station's
zone (``station.time_zone``), not a zone written into the code: a station set to another
zone reads and shows the same text at its own offset. One parser (config.timetext) reads
the command line and the import files alike."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from catalog.case_import import ActionRow, read_actions
from catalog.models import DeviceAssignment
from tests.cli_helpers import run_cli

URUMQI = timezone(timedelta(hours=6))
NUMBER = "沪徐市监处〔2026〕000123号"


def test_import_rows_are_read_in_the_zone_given(tmp_path: Path) -> None:
    path = tmp_path / "cases.csv"
    data = (
        "case_number,action_id,officers,start,end\n"
        f"{NUMBER},A-1,010203,2026年12月2日 8时55分,２０２６/１２/０２ ０９:４０\n"
        f"{NUMBER},A-2,010203,2026-12-02T08:55:00+08:00,2026-12-02 09:40 UTC\n"
    ).encode()
    rows = [r for r in read_actions(path, data, URUMQI) if isinstance(r, ActionRow)]
    assert rows[0].problems == ()
    assert rows[0].start == datetime(2026, 12, 2, 2, 55, tzinfo=UTC)  # 08:55 at +06:00
    assert rows[0].end == datetime(2026, 12, 2, 3, 40, tzinfo=UTC)
    # An offset written in the file wins over the station's zone.
    assert rows[1].start == datetime(2026, 12, 2, 0, 55, tzinfo=UTC)
    assert rows[1].end == datetime(2026, 12, 2, 9, 40, tzinfo=UTC)


def test_a_station_in_another_zone_types_and_reads_its_own_time(
    app: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LIUHEN_STATION_TIME_ZONE", "Asia/Urumqi")
    run_cli(capsys, "device", "add", "A123456")
    r = run_cli(capsys, "device", "assign", "A123456", "010203", "--start", "2026-12-01 07:00")
    assert r.code == 0 and "2026-12-01 07:00 +06:00" in r.out, r.err
    with app.catalog.session() as s:
        assert s.scalars(select(DeviceAssignment.start)).one() == datetime(
            2026, 12, 1, 1, 0, tzinfo=UTC
        )
    devices = json.loads(run_cli(capsys, "device", "list", "--json").out)
    assert devices[0]["assignments"][0]["start"] == "2026-12-01T07:00:00+06:00"

    path = tmp_path / "export.csv"
    path.write_text(
        "案号,执法活动编号,执法人员,开始时间,结束时间\n"
        f"{NUMBER},A-1,010203,2026-12-02 08:55,2026-12-02 09:40\n",
        encoding="utf-8",
    )
    assert run_cli(capsys, "case", "import", str(path)).code == 0
    shown = run_cli(capsys, "case", "show", NUMBER)
    assert "2026-12-02 08:55–09:40" in shown.out and "(+06:00)" in shown.out


def test_district_status_gives_times_at_the_offset_asked(app: Any) -> None:
    from catalog.district_status import district_status
    from config.settings import zone_of

    with app.catalog.session() as s:
        shanghai = district_status(s, zone=zone_of("Asia/Shanghai"))
        plain = district_status(s)
    assert shanghai["generated_at"].endswith("+08:00")
    assert plain["generated_at"].endswith("+00:00")  # programs that asked for nothing
