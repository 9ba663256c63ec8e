"""`liuhen district status` and `liuhen doctor` as people see them on a real terminal
(tmux) of 80 and 120 columns: station ids, process names, recording file names and the
paths of quarantined files are never cut, nothing is wider than the screen, and the text
is Chinese by default and English with --lang en."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from catalog import queue
from catalog.heartbeat import beat, make_process_id
from catalog.models import Docking, DockingFile, Recording, WorkItem, utcnow
from ingest.synthetic import make_recorder
from tests.i18n_helpers import assert_chinese
from tests.offload_helpers import make_app
from tests.tmux_helpers import assert_whole, screen, widest_line

# Realistic and long: a district names its stations after unit and place.
STATION = "xuhui-scjgj-kangjian-caijizhan-01"
WORKER_HOST = "xh-scjgj-media-worker-03.district.sh.internal"
# A reason as a station keeps it: English, read back into its template in either language.
REASON = "shrank from 4096 to 1024 bytes before it was read"
REASON_ZH = "读取前从 4096 字节变小为 1024 字节"
QUARANTINED = "DCIM/100MEDIA/DSJ_A1234567_20261201_083015_0001_LOCKED.MP4"


def _district(tmp_path: Path) -> dict[str, Any]:
    """A district catalog with one real docking, a live worker on a long host name, a
    stuck and a failed item, and a quarantined file with a long path."""
    data = tmp_path / "data"
    app = make_app(data, store_env={"LIUHEN_STATION_ID": STATION})
    rec = make_recorder(
        tmp_path / "dock" / "A1234567", h264=1, h265=0, wav=1, jpeg=1, truncated=0, segments=0
    )
    station = app.station()
    assert station.run_docking(rec.root).state == "SAFE_TO_CLEAR"
    station.close()
    now = utcnow()
    worker = make_process_id("worker", WORKER_HOST, 48213)
    with app.catalog.transaction() as s:
        beat(
            s,
            process_id=worker,
            role="worker",
            station_id=STATION,
            host=WORKER_HOST,
            pid=48213,
            started_at=now - timedelta(hours=3),
            interval_s=30.0,
            details={"lease_owner": f"{WORKER_HOST}:48213:abc", "doing": "probe"},
            now=now,
        )
        (stuck,) = queue.claim(s, ["probe"], "gone-host:1:abc", lease=timedelta(minutes=10))
        (failed,) = queue.claim(s, ["probe"], f"{WORKER_HOST}:48213:abc")
        queue.fail(
            s,
            failed.id,
            f"{WORKER_HOST}:48213:abc",
            "FfprobeError: ffprobe could not read the file\nmoov atom not found",
            failure=queue.DETERMINISTIC,
        )
        name = s.scalar(select(Recording.original_name).where(Recording.id == int(failed.subject)))
        docking = s.scalars(select(Docking)).one()
        s.add(
            DockingFile(
                docking_id=docking.id,
                path_key="q" * 64,
                relpath=QUARANTINED,
                relpath_raw=QUARANTINED.encode(),
                size=10,
                state="QUARANTINED",
                reason=REASON,
            )
        )
        assert s.get(WorkItem, stuck.id) is not None
    app.close()
    return {"data": data, "worker": worker, "recording": name}


def _liuhen(*args: str) -> list[str]:
    return [sys.executable, "-m", "liuhen", *args]


@pytest.mark.parametrize("width", [80, 120])
def test_district_status_keeps_ids_and_names_whole(tmp_path: Path, width: int) -> None:
    d = _district(tmp_path)
    env = {"LIUHEN_HOME": str(d["data"]), "LIUHEN_LANG": ""}
    shown = screen(_liuhen("district", "status"), width=width, env=env)
    assert widest_line(shown) <= width, shown
    assert_whole(shown, STATION, d["worker"], d["recording"], QUARANTINED)
    # Chinese by default, in the station's time (+08:00).
    assert "采集站" in shown and "进程" in shown and "工作队列" in shown
    assert "可安全拔出" in shown
    assert "+08:00" in shown
    assert "1 个任务失败" in shown and "1 个文件已隔离" in shown
    assert REASON_ZH in shown and REASON not in shown
    # What the tools said is shown as they said it; the rest is Chinese.
    assert_chinese(shown.replace("moov atom not found", ""))


def test_district_status_in_english(tmp_path: Path) -> None:
    d = _district(tmp_path)
    env = {"LIUHEN_HOME": str(d["data"]), "LIUHEN_LANG": ""}
    shown = screen(_liuhen("--lang", "en", "district", "status"), width=80, env=env)
    assert widest_line(shown) <= 80, shown
    assert_whole(shown, STATION, d["worker"], d["recording"], QUARANTINED)
    for text in ("SAFE TO CLEAR", "1 failed item(s)", "1 quarantined file(s)", "work queue"):
        assert text in shown, text
    assert REASON in shown and REASON_ZH not in shown


def test_doctor_readable_at_80_columns(tmp_path: Path) -> None:
    d = _district(tmp_path)
    env = {"LIUHEN_HOME": str(d["data"]), "LIUHEN_LANG": "", "LIUHEN_STATION_ID": STATION}
    shown = screen(_liuhen("doctor", "--role", "worker"), width=80, env=env)
    assert widest_line(shown) <= 80, shown
    # Each check's name on its own line, with its mark; the station id is not cut.
    for title in ("设置", "签名密钥", "目录库", "时钟", "暂存空间"):
        assert any(line.endswith(" " + title) for line in shown.splitlines()), title
    assert_whole(shown, STATION)
    assert_chinese(shown)
    english = screen(_liuhen("--lang", "en", "doctor", "--role", "worker"), width=80, env=env)
    assert widest_line(english) <= 80, english
    assert "signing key" in english and "staging space" in english
