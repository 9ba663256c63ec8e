"""Texts the station stores (identity flags of a docking, time flags of a recording) are
kept as an English template and its fields (config.message), never in the language of
the process that stored them: the same stored row reads in Chinese to a Chinese reader
and in English to an English one, and ``--json`` carries English. Rows stored before
(plain text) are shown as they are."""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from catalog.devices import add_device, assign_device
from catalog.models import Recording
from config.i18n import set_language
from config.message import Msg, from_stored, in_chinese, is_message, recognised, shown, stored
from config.settings import CHINA_STANDARD_TIME
from ingest.docking import REASONS
from ingest.media.timeevidence import TimeSources, derive_times
from ingest.synthetic import DEVICE_INFO_NAME, make_bulk_files
from liuhen import output
from tests.api_helpers import PASSWORD, add_user
from tests.case_helpers import cst, make_recording
from tests.cli_helpers import Result, run_cli
from web.app import create_app

FLAG_EN = "file names carry officer number(s) 010203, device file says 040506"
UNIT = "徐汇分局"
TIME_ZH = "比按文件名得出的开始时间早"
# 2026-11-25 08:30 China Standard Time: a day before the synthetic files' names
BEFORE_NAMES = 1795566600
UNKNOWN = "unknown device: no device file and no serial in the file names"
FLAG_ZH = "文件名中的警号为 010203，设备信息文件中为 040506"


def _ok(result: Result) -> str:
    assert result.code == 0, result.out + result.err
    return result.out


def _in(lang: str, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    try:
        return _ok(run_cli(capsys, "--lang", lang, *args))
    finally:
        set_language("en")  # conftest's language for the next test


@pytest.fixture
def docked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Path:
    """A recorder whose device file names another officer than its file names, docked by
    a station running in Chinese (the default)."""
    home = tmp_path / "liuhen"
    monkeypatch.setenv("LIUHEN_HOME", str(home))
    monkeypatch.setenv("LIUHEN_INGEST_STABLE_S", "0")
    monkeypatch.setattr(output.out, "width", 400)  # a flag on one line of the table
    _ok(run_cli(capsys, "init"))
    rec = make_bulk_files(tmp_path / "dock" / "slot1", 2, 1000)
    info = rec.root / DEVICE_INFO_NAME
    info.write_text(info.read_text().replace("officer_number=010203", "officer_number=040506"))
    for photo in rec.root.rglob("*.JPG"):  # written a day before the names say they began
        os.utime(photo, (BEFORE_NAMES, BEFORE_NAMES))
    docking = _in("zh", capsys, "ingest", str(rec.root))
    assert FLAG_ZH in docking  # told at once, in the station's language
    return home


def test_the_same_stored_identity_flag_reads_in_each_readers_language(
    docked: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    zh = _in("zh", capsys, "station", "status")
    en = _in("en", capsys, "station", "status")
    assert FLAG_ZH in zh and FLAG_EN not in zh
    assert FLAG_EN in en and FLAG_ZH not in en
    # Programs read English whoever stored it and whoever asks.
    for lang in ("zh", "en"):
        (row,) = json.loads(_in(lang, capsys, "station", "status", "--json"))
        assert row["identity_flags"] == [FLAG_EN]
    # Stored as template and fields, English text beside them for older readers.
    (kept,) = _journal_flags(docked)
    assert kept == {
        "text": FLAG_EN,
        "msg": "file names carry officer number(s) {officers}, device file says {officer}",
        "fields": {"officers": "010203", "officer": "040506"},
    }


def test_a_recordings_stored_time_flag_reads_in_each_readers_language(
    docked: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _in("zh", capsys, "worker", "--drain")  # the worker, too, runs in Chinese
    zh = _in("zh", capsys, "show", "2")  # the first photo (#1 is the device file)
    en = _in("en", capsys, "show", "2")
    assert ".JPG" in en
    assert TIME_ZH in zh and "s before the file name start" not in zh
    assert "s before the file name start (threshold 120 s)" in en and TIME_ZH not in en
    # The file's mtime in Shanghai time for either reader; stored as the instant, in UTC.
    for text in (zh, en):
        assert "2026-11-25 08:30:00 +08:00" in text and "2026-11-25T00:30:00Z" not in text
    for lang in ("zh", "en"):  # programs read the English text beside template and fields
        (kept,) = json.loads(_in(lang, capsys, "show", "2", "--json"))["flags"]["time"]
        assert kept["text"].startswith("file mtime 2026-11-25 08:30:00 +08:00 is ")
        assert kept["fields"]["mtime"] == {"instant": "2026-11-25T00:30:00Z"}
        assert kept["text"].endswith("a file cannot be written before its recording starts")
        assert kept["fields"]["start"]["text"] == "file name"


def test_a_flag_stored_as_plain_text_before_is_shown_as_it_is(
    docked: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = "文件名中的设备编号为 A999999，设备信息文件中为 A123456"  # stored by an older station
    with sqlite3.connect(_journal(docked)) as db:
        (identity,) = db.execute("SELECT identity FROM dockings").fetchone()
        value = json.loads(identity)
        value["flags"] = [old]
        db.execute("UPDATE dockings SET identity = ?", (json.dumps(value, ensure_ascii=False),))
    for lang in ("zh", "en"):
        assert old in _in(lang, capsys, "station", "status")
        (row,) = json.loads(_in(lang, capsys, "station", "status", "--json"))
        assert row["identity_flags"] == [old]


def test_a_message_survives_being_stored_with_a_message_inside_it() -> None:
    inner = Msg("device file {name} has no serial", name="DEVICE.INF")
    outer = Msg("{first}; {rest}", first=Msg(UNKNOWN), rest=inner)
    kept = json.loads(json.dumps(stored(outer)))
    assert from_stored(kept) == outer == f"{UNKNOWN}; device file DEVICE.INF has no serial"
    chinese = in_chinese(kept)
    assert chinese == in_chinese(outer)
    assert "设备未知" in chinese and "设备信息文件 DEVICE.INF 中没有设备编号" in chinese
    assert shown("plain text, as stored") == "plain text, as stored"
    older = "读取前已从记录仪上消失（旧的接入）"  # a reason an older station wrote in Chinese
    assert recognised(older, REASONS) == older and not is_message(recognised(older, REASONS))
    assert is_message(recognised("cannot open: Permission denied", REASONS))


def _journal(home: Path) -> Path:
    return home / "station-journal.sqlite3"  # where `liuhen init` puts it


def _journal_flags(home: Path) -> list[object]:
    with sqlite3.connect(_journal(home)) as db:
        (identity,) = db.execute("SELECT identity FROM dockings").fetchone()
    flags: list[object] = json.loads(identity)["flags"]
    return flags


def test_the_recording_page_shows_a_kept_time_flag_in_the_readers_language(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The web page reads the same row in the language the reader chose; a value stored
    as plain text before stays as it was."""
    rec_id = _web_recording(app)
    start = datetime(2026, 12, 1, 7, tzinfo=CHINA_STANDARD_TIME)
    evidence = derive_times(
        TimeSources(
            file_name=start,
            embedded=None,
            file_mtime=start - timedelta(days=1),
            received=start + timedelta(hours=1),
            clock_offset_s=None,
            duration_s=None,
        )
    )
    (flag,) = evidence.flags
    with app.catalog.transaction() as s:
        rec = s.get(Recording, rec_id)
        assert rec is not None
        rec.flags = {"time": [stored(flag)], "damaged": "旧记录里的原因"}  # older: plain text
    add_user(app, "li", "reviewer", unit=UNIT)
    with TestClient(create_app(app.settings), follow_redirects=False) as web:
        login = {"login": "li", "password": PASSWORD, "next": "/recordings"}
        assert web.post("/login", data=login).status_code == 303
        zh = web.get(f"/recordings/{rec_id}?lang=zh").text
        en = web.get(f"/recordings/{rec_id}?lang=en").text
        api = web.get(f"/api/v1/recordings/{rec_id}").json()
    assert TIME_ZH in zh and "before the file name start" not in zh
    assert "s before the file name start (threshold 120 s)" in en and TIME_ZH not in en
    assert "旧记录里的原因" in zh and "旧记录里的原因" in en
    assert api["flags"]["time"][0]["text"] == str(flag)  # programs: the English text
    # The file's mtime, stored as its UTC instant, reads in Shanghai time everywhere.
    mtime = "2026-11-30 07:00:00 +08:00"
    assert mtime in zh and mtime in en and mtime in api["flags"]["time"][0]["text"]
    assert api["flags"]["time"][0]["fields"]["mtime"] == {"instant": "2026-11-29T23:00:00Z"}


def _web_recording(app: Any) -> int:
    """A recording on a device of UNIT, so that a reviewer of UNIT may open it."""
    with app.catalog.transaction() as s:
        add_device(s, app.signer, serial="DEV-A", unit=UNIT, actor="test")
        assign_device(
            s,
            app.signer,
            serial="DEV-A",
            officer_number="010203",
            officer_unit=UNIT,
            start=cst(2026, 11, 1),
            actor="test",
        )
    return make_recording(app, serial="DEV-A", docking_officer="010203", start=cst(2026, 12, 1, 7))


def test_a_quarantine_reason_is_kept_in_english_and_read_in_each_language(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file whose name names another device, docked by a Chinese station: the journal
    keeps the reason in English, each reader reads it in their language, JSON English."""
    home = tmp_path / "liuhen"
    monkeypatch.setenv("LIUHEN_HOME", str(home))
    monkeypatch.setenv("LIUHEN_INGEST_STABLE_S", "0")
    _ok(run_cli(capsys, "init"))
    rec = make_bulk_files(tmp_path / "dock" / "slot1", 1, 1000)
    stray = next(rec.root.rglob("*.JPG")).with_name("B999999_010203_20261126083000_0009.JPG")
    stray.write_bytes(b"another recorder's photo")

    def dock(lang: str, *args: str) -> str:
        done = run_cli(capsys, "--lang", lang, "ingest", str(rec.root), *args)
        set_language("en")
        assert done.code == 3, done.out + done.err  # a file not taken
        return done.out

    zh = dock("zh")
    assert "文件名中的设备是 B999999，不是本记录仪 A123456：未归入 A123456" in zh
    (reason,) = _reasons(home)
    assert reason == (
        "its name names device B999999, not this recorder's A123456: not filed under "
        "A123456; dock it in a folder of its own (or correct the recorder's device file), "
        "then dock this recorder again"
    )
    assert reason not in zh  # shown in Chinese, its fields read back out of the English
    assert reason in dock("en")
    (problem,) = json.loads(dock("zh", "--json"))["problems"]
    assert problem["reason"] == reason


def _reasons(home: Path) -> list[str]:
    with sqlite3.connect(_journal(home)) as db:
        rows = db.execute("SELECT reason FROM files WHERE reason IS NOT NULL").fetchall()
    return [r for (r,) in rows]


def test_a_time_in_a_message_is_kept_as_the_instant_and_read_in_station_time() -> None:
    from datetime import UTC, timezone

    at = datetime(2026, 11, 25, 16, 30, tzinfo=UTC)  # 00:30 the next day in Shanghai
    flag = Msg(
        "capture end {end} is after the station received the file at {received} "
        "(threshold {threshold} s)",
        end=at,
        received=at,
        threshold="120",
    )
    kept = json.loads(json.dumps(stored(flag)))
    assert kept["fields"]["end"] == {"instant": "2026-11-25T16:30:00Z"}  # data stays UTC
    assert kept["text"].startswith("capture end 2026-11-26 00:30:00 +08:00 is after")
    assert "2026-11-26 00:30:00 +08:00" in in_chinese(kept) and "16:30" not in in_chinese(kept)
    assert from_stored(kept) == flag
    # In another station zone when the reader's station names one.
    assert "2026-11-25 17:30:00 +01:00" in shown(kept, timezone(timedelta(hours=1)))
    # A row from before, its time kept as UTC text: shown as it is.
    older = {**kept, "fields": {**kept["fields"], "end": "2026-11-25T16:30:00Z"}}
    assert "capture end 2026-11-25T16:30:00Z is after" in shown(older)


def test_an_offload_error_is_said_now_and_kept_in_english() -> None:
    """Raised in a station running in Chinese, a read error says so in Chinese (the log,
    the command line) and is kept in English with its template, for any later reader."""
    import errno

    from ingest.docking import STORED_TEXTS, kept_text
    from ingest.offload import _read_error
    from liuhen.ingest_cmds import stored_text

    set_language("zh")
    try:
        exc = _read_error(4096, OSError(errno.EIO, "Input/output error"))
        assert exc.message == "读取 4096 字节后出错：Input/output error"
        kept = str(kept_text(exc))  # what the journal's text column holds
        assert kept == (
            "read error after 4096 bytes: Input/output error "
            "(what to do: check the recorder and its cable, then dock it again)"
        )
        assert stored_text(kept) == (
            "读取 4096 字节后出错：Input/output error"
            "（处理办法：请检查记录仪及其连接线，然后重新接入）"
        )
    finally:
        set_language("en")
    assert stored_text(kept) == kept
    assert is_message(recognised(kept, STORED_TEXTS))


def test_what_a_docking_waits_for_reads_in_each_readers_language(
    docked: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ingest.docking import kept_text, waiting_text
    from ingest.offload import _staging_error
    from storage.errors import StoreFull

    set_language("zh")
    try:  # made by a station running in Chinese
        disk = _staging_error(Path("/staging/a.part"), OSError(28, "No space left on device"))
        full = StoreFull("存储已满 (/srv/store)", hint="请释放空间")  # a message of the moment
        kept_disk, kept_full = str(kept_text(disk)), str(waiting_text(full))
    finally:
        set_language("en")
    disk_en = (
        "staging disk full while writing /staging/a.part (what to do: free space on the "
        "station's data disk; the docking resumes by itself)"
    )
    assert kept_disk == disk_en and kept_full.startswith("waiting: store full")
    disk_zh = (
        "写入 /staging/a.part 时暂存盘已满（处理办法：请释放采集站数据盘的空间；接入会自动继续）"
    )
    full_zh = "等待：存储已满：请释放空间或扩容；等待中的写入会自动继续"
    older = "等待：对象存储 http://127.0.0.1:9 无法连接"  # stored translated by an older station
    for stored_waiting, zh_text, en_text in (
        (kept_disk, disk_zh, disk_en),
        (kept_full, full_zh, kept_full),
        (older, older, older),
    ):
        with sqlite3.connect(_journal(docked)) as db:
            db.execute("UPDATE dockings SET waiting = ?", (stored_waiting,))
        shown_zh = _in("zh", capsys, "station", "status")
        assert zh_text in shown_zh, shown_zh
        en = _in("en", capsys, "station", "status")
        assert en_text in en and (stored_waiting == older or zh_text not in en)
        (row,) = json.loads(_in("zh", capsys, "station", "status", "--json"))
        assert row["waiting"] == stored_waiting  # programs: as stored, English when new
