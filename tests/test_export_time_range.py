"""`liuhen export --from/--to` in the station's dates (Shanghai), on SQLite and PostgreSQL:
a day typed in Shanghai selects the recordings of that Shanghai day, across midnight UTC,
and `--to` is exclusive (said in the error when it equals `--from`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from catalog.models import Recording
from tests.cli_helpers import run_cli
from tests.test_export import dock_and_derive

# Capture times (UTC) and the Shanghai day each belongs to.
LATE_1_DEC = datetime(2026, 12, 1, 15, 59, tzinfo=UTC)  # 1 Dec 23:59 in Shanghai
EARLY_2_DEC = datetime(2026, 12, 1, 23, 30, tzinfo=UTC)  # 2 Dec 07:30 in Shanghai
LATE_2_DEC = datetime(2026, 12, 2, 15, 59, 59, tzinfo=UTC)  # 2 Dec 23:59:59 in Shanghai
START_3_DEC = datetime(2026, 12, 2, 16, 0, tzinfo=UTC)  # 3 Dec 00:00 in Shanghai


def _dated(tmp_path: Path, catalog_url: str, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Four recordings captured around midnight UTC (their ids, in that order)."""
    d = dock_and_derive(
        tmp_path,
        catalog_url=catalog_url,
        h264=0,
        h265=0,
        wav=4,
        jpeg=0,
        truncated=0,
        segments=0,
        derive=False,
    )
    times = [LATE_1_DEC, EARLY_2_DEC, LATE_2_DEC, START_3_DEC]
    with d.app.catalog.transaction() as s:
        recs = list(s.scalars(select(Recording).order_by(Recording.id)))
        assert len(recs) >= len(times)
        for i, rec in enumerate(recs):
            rec.captured_at = times[i] if i < len(times) else datetime(2026, 11, 1, tzinfo=UTC)
        ids = [rec.id for rec in recs]
    monkeypatch.setenv("LIUHEN_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("LIUHEN_CATALOG_URL", catalog_url)
    return ids


@pytest.mark.parametrize(
    "start,end", [("2026年12月2日", "2026/12/03"), ("2026-12-02", "2026-12-03")]
)
def test_a_shanghai_day_exports_that_days_recordings(
    tmp_path: Path,
    catalog_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    start: str,
    end: str,
) -> None:
    ids = _dated(tmp_path, catalog_url, monkeypatch)
    bag = tmp_path / "out" / "day"
    r = run_cli(capsys, "export", "--from", start, "--to", end, "--out", str(bag), "--json")
    assert r.code == 0, r.err
    result = json.loads(r.out)
    receipt = json.loads(run_cli(capsys, "export", "show", result["export"], "--json").out)
    # 2 Dec 07:30 Shanghai (1 Dec 23:30 UTC) and 2 Dec 23:59:59 belong to 2 December;
    # 1 Dec 23:59 and 3 Dec 00:00 in Shanghai do not.
    assert sorted(i["recording"] for i in receipt["items"]) == ids[1:3]
    assert result["recordings"] == 2

    # The hand-over history shows the range in Shanghai time, with its offset.
    r = run_cli(capsys, "--lang", "en", "export", "list")
    assert "2026-12-02 00:00:00 +08:00" in r.out and "2026-12-03 00:00:00 +08:00" in r.out
    [h] = json.loads(run_cli(capsys, "export", "list", "--json").out)
    assert h["finished_at"].endswith("+08:00")


def test_an_empty_range_says_to_is_exclusive(
    tmp_path: Path,
    catalog_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _dated(tmp_path, catalog_url, monkeypatch)
    out = str(tmp_path / "out" / "none")
    r = run_cli(capsys, "export", "--from", "2026/12/02", "--to", "2026年12月2日", "--out", out)
    assert r.code == 2
    assert "exclusive" in r.err and "2026/12/02" in r.err and "2026年12月2日" in r.err
    assert not Path(out).exists()
    r = run_cli(capsys, "export", "--from", "2026-13-02", "--to", "2026-12-03", "--out", out)
    assert r.code == 2 and "2026-13-02" in r.err
    help_text = run_cli(capsys, "export", "--help").out
    assert "exclusive" in help_text and "2026年12月1日" in help_text
