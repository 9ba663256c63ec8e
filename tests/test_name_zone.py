"""File-name times are the recorder's local wall-clock time, read in the station's time
zone (``station.time_zone``), the same setting the media time rules read AVI, BWF and
EXIF local times in (issue 13.6); not a fixed UTC+8."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from ingest.identity import NameParser
from ingest.worker import Worker
from tests.offload_helpers import make_app

NAME = "A123456_010203_20260115093000_0001.MP4"  # 2026-01-15 09:30:00 on the recorder


def test_the_default_reads_file_names_in_china_standard_time() -> None:
    parser = NameParser((r"^[A-Z0-9]{7}_[0-9]{6}_(?P<start>[0-9]{14})_",))
    assert parser.parse(NAME).start == datetime(2026, 1, 15, 1, 30, tzinfo=UTC)


def test_station_and_worker_read_file_names_in_the_station_time_zone(tmp_path: Path) -> None:
    app = make_app(tmp_path / "data")
    # A station in Urumqi (UTC+6), a zone a fixed UTC+8 would read two hours wrong.
    app.settings = replace(
        app.settings, station=replace(app.settings.station, time_zone="Asia/Urumqi")
    )
    expected = datetime(2026, 1, 15, 3, 30, tzinfo=UTC)
    station = app.station()
    try:
        assert station.parser.parse(NAME).start == expected
    finally:
        station.close()
    worker = Worker(app.settings, catalog=app.catalog, store=app.store, signer=app.signer)
    assert worker.parser.parse(NAME).start == expected
    app.close()
