"""The chain of custody and access report (issue 15, point 4): every view, playback and
download of a recording with who, from where, when and the result, and its custody
events; as CSV for Excel on Chinese Windows and as printable HTML signed by the host's
key, which `liuhen audit verify-report` checks down to a single byte."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from access.access_report import access_report
from access.audit import access_events, record_access
from catalog.attach import attach_manual
from catalog.cases import create_case
from catalog.models import CustodyEvent, Recording
from config.i18n import set_language
from tests.audit_helpers import act_as
from tests.case_helpers import cst, make_recording
from tests.cli_helpers import run_cli
from tests.i18n_helpers import assert_chinese

CASE = "沪徐市监罚〔2026〕88号"
# (who, action, from where, details) of the accesses the report must list.
ACCESSES: list[tuple[str, str, str, dict[str, Any]]] = [
    ("zhang", "access.view", "10.1.2.3", {}),
    ("zhang", "access.play", "10.1.2.3", {"position_s": 0, "duration_s": 42}),
    ("li", "access.view", "10.1.2.9", {}),
    ("li", "access.download", "10.1.2.9", {"copy": "access"}),
    ("=cmd|' /C calc'!A0", "access.view", "10.6.6.6", {}),  # a hostile name for Excel
    ("wang", "access.download", "10.1.2.7", {"copy": "original"}),
]


def _record(
    app: Any, who: str, action: str, source: str, details: dict[str, Any], **kw: Any
) -> None:
    with app.catalog.transaction() as s:
        record_access(
            s,
            app.signer,
            actor=who,
            action=action,
            object_type=kw.get("object_type", "recording"),
            object_id=kw["object_id"],
            source=source,
            details=details,
            result=kw.get("result", "ok"),
        )


def _evidence(app: Any) -> tuple[int, int]:
    """Two recordings of one case; the first viewed, played and downloaded, one access
    refused; the second viewed once."""
    first = make_recording(app, start=cst(2026, 3, 2, 9, 30))
    second = make_recording(app, start=cst(2026, 3, 2, 10, 0))
    with app.catalog.transaction() as s:
        create_case(s, app.signer, number=CASE, retention="30年", actor="archivist1")
        for rec_id in (first, second):
            attach_manual(
                s,
                app.signer,
                case_number=CASE,
                rec=s.get_one(Recording, rec_id),
                reason="证据",
                actor="archivist1",
                policy=app.settings.retention,
                store=app.store,
            )
    for who, action, source, details in ACCESSES:
        _record(app, who, action, source, details, object_id=str(first))
    _record(app, "zhao", "access.denied", "10.9.9.9", {}, object_id=str(first), result="denied")
    _record(app, "sun", "access.view", "10.1.2.5", {}, object_id=str(second))
    return first, second


def test_the_report_lists_every_view_and_download_and_the_chain_of_custody(app: Any) -> None:
    first, _second = _evidence(app)
    with app.catalog.session() as s:
        report = access_report(s, recording_id=first, signer=app.signer, generated_by="auditor1")
        expected = access_events(s, object_id=s.get_one(Recording, first).sha256)
    got = [(r.actor, r.action, r.source, r.result) for r in report.access_rows]
    assert got == [(e.actor, e.action, e.source, e.result) for e in expected]
    assert len(got) == len(ACCESSES) + 1  # and the refused one; not the other recording's
    assert {"zhang", "li", "wang"} <= {r.actor for r in report.access_rows}
    play = next(r for r in report.access_rows if r.action == "access.play")
    assert (play.position_s, play.duration_s) == (0.0, 42.0)
    assert {"stored", "attached"} <= {r.action for r in report.custody_rows}
    assert all(r.at.tzinfo is not None for r in report.rows)
    assert report.problems == []


def _parse_csv(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf"), "Excel needs the byte-order mark to read UTF-8"
    assert b"\n" not in data.replace(b"\r\n", b""), "every line ends with CRLF"
    return list(csv.reader(io.StringIO(data[3:].decode("utf-8"), newline="")))


def test_csv_for_excel_on_chinese_windows(
    app: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    first, _second = _evidence(app)
    act_as(monkeypatch, "auditor1", "auditor")
    monkeypatch.setenv("LIUHEN_LANG", "zh")
    set_language(None)
    out = tmp_path / "报告.csv"
    made = run_cli(capsys, "audit", "report", "--recording", str(first), "--out", str(out))
    assert made.code == 0, made.out + made.err
    rows = _parse_csv(out.read_bytes())
    header, body = rows[0], rows[1:]
    assert header[:7] == ["类别", "时间", "操作人", "来源地址", "操作", "对象", "结果"]
    accesses = [r for r in body if r[0] == "访问"]
    assert [(r[2], r[3]) for r in accesses[:4]] == [
        ("zhang", "10.1.2.3"),
        ("zhang", "10.1.2.3"),
        ("li", "10.1.2.9"),
        ("li", "10.1.2.9"),
    ]
    assert [r[4] for r in accesses].count("下载") == 2
    assert [r[4] for r in accesses].count("查看") == 3
    assert all(r[1].endswith("+08:00") for r in body)
    # A name that Excel would run as a formula is shown as text.
    assert "'=cmd|' /C calc'!A0" in [r[2] for r in accesses]
    assert any(r[0] == "保管链" for r in body)


class _Text(HTMLParser):
    """The text a reader of the HTML sees (no tags, no style)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = False

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self._skip = tag in ("style", "code")

    def handle_endtag(self, tag: str) -> None:
        self._skip = False

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def _report(
    app: Any, capsys: pytest.CaptureFixture[str], path: Path, *args: str
) -> tuple[int, str]:
    first, _second = _evidence(app)
    made = run_cli(capsys, *args, "audit", "report", "--recording", str(first), "--out", str(path))
    assert made.code == 0, made.out + made.err
    return first, path.read_text(encoding="utf-8")


def test_signed_html_verifies_and_any_one_byte_change_fails(
    app: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    act_as(monkeypatch, "auditor1", "auditor")
    path = tmp_path / "report.html"
    first, _html = _report(app, capsys, path)
    ok = run_cli(capsys, "audit", "verify-report", str(path))
    assert ok.code == 0, ok.out + ok.err
    assert f"recording:{first}" in ok.out and app.signer.key_id in ok.out
    assert "+08:00" in ok.out  # when it was signed, in the station's zone
    data = path.read_bytes()
    block = data.index(b'<section id="liuhen-signature">')
    digest = re.search(rb'data-field="sha256">([0-9a-f]{64})<', data)
    assert digest is not None
    places = {
        "a name in the access table": data.index(b"zhang"),
        "the style sheet": data.index(b"border-collapse"),
        "the block's heading": block + 40,
        "the stated hash": digest.start(1) + 5,
        "the signature": data.index(b'data-field="signature">') + 30,
        "the last byte": len(data) - 2,
    }
    for what, at in places.items():
        changed = bytearray(data)
        changed[at] = ord("0") if changed[at] != ord("0") else ord("1")
        path.write_bytes(bytes(changed))
        bad = run_cli(capsys, "audit", "verify-report", str(path), "--json")
        assert bad.code == 1, what
        assert json.loads(bad.out)["problems"], what
    path.write_bytes(data + b"\n")
    assert run_cli(capsys, "audit", "verify-report", str(path)).code == 1


def test_the_report_is_itself_an_audited_access(
    app: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    act_as(monkeypatch, "auditor1", "auditor")
    path = tmp_path / "report.html"
    first, _html = _report(app, capsys, path)
    with app.catalog.session() as s:
        (event,) = access_events(s, actions=["access.report"])
    assert event.actor == "auditor1" and event.recording_id == first
    assert event.source == "cli"  # from the command line, as every CLI access says
    assert event.details["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    # verify-report finds that event: who wrote this very file, and when.
    checked = run_cli(capsys, "audit", "verify-report", str(path), "--json")
    written = json.loads(checked.out)["written"]
    assert written["actor"] == "auditor1" and written["seq"] == event.seq
    shown = run_cli(capsys, "audit", "verify-report", str(path))
    assert "written by auditor1 at " in shown.out and f"#{event.seq})" in shown.out


def test_report_in_chinese_by_default_and_english_on_request(
    app: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    act_as(monkeypatch, "auditor1", "auditor")
    monkeypatch.delenv("LIUHEN_LANG")
    set_language(None)
    first, html = _report(app, capsys, tmp_path / "zh.html")
    assert '<html lang="zh-CN">' in html and "保管链与访问报告" in html
    reader = _Text()
    reader.feed(html[: html.index('<section id="liuhen-signature">')])
    assert_chinese("\n".join(reader.parts))
    made = run_cli(
        capsys,
        "--lang",
        "en",
        "audit",
        "report",
        "--recording",
        str(first),
        "--out",
        str(tmp_path / "en.html"),
    )
    assert made.code == 0, made.err
    english = (tmp_path / "en.html").read_text(encoding="utf-8")
    assert "Chain of custody and access report" in english and '<html lang="en">' in english


def test_case_report_covers_every_recording_of_the_case(
    app: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    first, second = _evidence(app)
    act_as(monkeypatch, "auditor1", "auditor")
    path = tmp_path / "case.html"
    made = run_cli(capsys, "audit", "report", "--case", CASE, "--out", str(path))
    assert made.code == 0, made.out + made.err
    html = path.read_text(encoding="utf-8")
    for who in ("zhang", "li", "wang", "zhao", "sun"):
        assert f">{who}<" in html, who
    assert f"recording #{first}" in html and f"recording #{second}" in html
    assert "case-created" not in html or "case created" in html
    assert run_cli(capsys, "audit", "verify-report", str(path)).code == 0


def test_verify_report_against_a_key_ring(
    app: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    act_as(monkeypatch, "auditor1", "auditor")
    path = tmp_path / "report.html"
    _report(app, capsys, path)
    ring = tmp_path / "ring.txt"
    ring.write_text(f"{app.signer.station_id} {app.signer.key_id}\n", encoding="utf-8")
    assert run_cli(capsys, "audit", "verify-report", str(path), "--trust", str(ring)).code == 0
    other = tmp_path / "other.txt"
    other.write_text(f"{app.signer.station_id} ed25519:{'0' * 64}\n", encoding="utf-8")
    refused = run_cli(capsys, "audit", "verify-report", str(path), "--trust", str(other))
    assert refused.code == 1 and "not a trusted key" in refused.out


def test_a_report_refused_to_an_officer_and_for_a_bad_file_name(
    app: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    first, _second = _evidence(app)
    act_as(monkeypatch, "officer7", "officer")
    path = tmp_path / "r.html"
    refused = run_cli(capsys, "audit", "report", "--recording", str(first), "--out", str(path))
    assert refused.code == 77 and not path.exists()
    with app.catalog.session() as s:
        assert access_events(s, actions=["access.report"]) == []
        # The refusal is audited: once, naming who, what and the permission.
        (denied,) = s.scalars(select(CustodyEvent).where(CustodyEvent.actor == "officer7"))
        event = access_events(s, actions=["access.denied"], actor="officer7")[0]
    assert denied.action == "access.denied" and event.recording_id == first
    assert event.result == "denied" and event.details["permission"] == "audit.view"
    act_as(monkeypatch, "auditor1", "auditor")
    wrong = run_cli(capsys, "audit", "report", "--case", CASE, "--out", str(tmp_path / "r.pdf"))
    assert wrong.code == 2 and "r.pdf" in wrong.err
