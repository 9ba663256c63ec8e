"""Cases with a life cycle (close, reopen, update, each with a reason and a signed custody
event; closing starts the 30年/10年 retention clock) and case numbers as people type them
(brackets, full-width digits, near misses, look-alike numbers), on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select, update

from catalog import cases as C
from catalog.models import Case, CustodyEvent, Recording
from catalog.retention import add_years, case_keep_until, explain
from tests.case_helpers import CST, cst, make_recording
from tests.cli_helpers import run_cli

NUMBER = "沪徐市监罚〔2026〕123号"


def events(app: Any, action: str) -> list[CustodyEvent]:
    with app.catalog.session() as s:
        return list(
            s.scalars(
                select(CustodyEvent).where(CustodyEvent.action == action).order_by(CustodyEvent.id)
            )
        )


def keep_until_of(app: Any, rec_id: int) -> datetime | None:
    with app.catalog.session() as s:
        rec = s.get(Recording, rec_id)
        assert rec is not None
        return explain(s, rec, app.settings.retention).keep_until


def test_closing_starts_the_retention_clock_reopening_stops_it_closing_again_restarts_it(
    app: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    rec = make_recording(app, start=cst(2026, 3, 2, 9, 30))
    assert run_cli(capsys, "case", "create", NUMBER, "--retention", "30年").code == 0
    r = run_cli(capsys, "case", "attach", NUMBER, str(rec), "--reason", "复核")
    assert r.code == 0, r.err
    assert keep_until_of(app, rec) is None  # an open case does not expire

    first = cst(2026, 12, 1, 10)
    with app.catalog.transaction() as s:
        C.close_case(s, app.signer, NUMBER, reason="结案", actor="档案员", now=first)
    assert keep_until_of(app, rec) == add_years(first, 30)

    r = run_cli(capsys, "case", "reopen", NUMBER, "--reason", "复议", "--actor", "法制员")
    assert r.code == 0, r.err
    assert "reopened" in r.out and "clock stops" in r.out
    assert keep_until_of(app, rec) is None
    with app.catalog.session() as s:
        case = C.get_case(s, NUMBER)
        assert (case.status, case.closed_at, case_keep_until(case)) == ("open", None, None)

    r = run_cli(capsys, "case", "close", NUMBER, "--reason", "复议结束", "--actor", "档案员")
    assert r.code == 0, r.err
    with app.catalog.session() as s:
        closed = C.get_case(s, NUMBER).closed_at
    assert closed is not None and closed > first
    # The clock restarted at the second closing, shown in the station's time zone.
    assert keep_until_of(app, rec) == add_years(closed, 30)
    assert "+08:00" in r.out and "kept until " + str(add_years(closed, 30).year) in r.out
    shown = run_cli(capsys, "case", "show", NUMBER)
    assert "closed at: " in shown.out and "+08:00" in shown.out
    assert json.loads(run_cli(capsys, "case", "show", NUMBER, "--json").out)["closed_at"] == (
        closed.astimezone(CST).isoformat()
    )

    [c1, c2] = events(app, "case-closed")
    [reopened] = events(app, "case-reopened")
    assert (c1.actor, json.loads(c1.details)["reason"]) == ("档案员", "结案")
    assert (reopened.actor, json.loads(reopened.details)) == (
        "法制员",
        {"reason": "复议", "was_closed_at": first.isoformat()},
    )
    assert c2.object_id == NUMBER and json.loads(c2.details)["reason"] == "复议结束"


def test_life_cycle_changes_need_a_reason_and_the_right_state(
    app: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(capsys, "case", "create", NUMBER).code == 0
    assert run_cli(capsys, "case", "close", NUMBER).code == 2  # --reason is required
    r = run_cli(capsys, "case", "close", NUMBER, "--reason", " ")
    assert r.code == 65 and "needs a reason" in r.err
    r = run_cli(capsys, "case", "reopen", NUMBER, "--reason", "x")
    assert r.code == 65 and "only a closed case can be reopened" in r.err
    assert run_cli(capsys, "case", "close", NUMBER, "--reason", "结案").code == 0
    r = run_cli(capsys, "case", "close", NUMBER, "--reason", "again")
    assert r.code == 65 and "closed already" in r.err
    assert len(events(app, "case-closed")) == 1 and events(app, "case-reopened") == []


def test_update_changes_what_it_names_with_its_reason(
    app: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(capsys, "case", "create", NUMBER, "--title", "无照经营").code == 0
    r = run_cli(
        capsys,
        "case",
        "update",
        NUMBER,
        "--title",
        "无证经营",
        "--unit",
        "徐汇区市场监督管理局",
        "--retention",
        "定期10年",
        "--security-class",
        "内部",
        "--reason",
        "立案信息更正",
        "--actor",
        "办案员",
    )
    assert r.code == 0, r.err
    assert "'无照经营' → '无证经营'" in r.out
    with app.catalog.session() as s:
        case = C.get_case(s, NUMBER)
        assert (case.title, case.unit, case.retention, case.security_class) == (
            "无证经营",
            "徐汇区市场监督管理局",
            "10年",
            "内部",
        )
    [ev] = events(app, "case-updated")
    assert ev.actor == "办案员" and json.loads(ev.details) == {
        "reason": "立案信息更正",
        "changes": {
            "title": ["无照经营", "无证经营"],
            "unit": ["", "徐汇区市场监督管理局"],
            "retention": ["永久", "10年"],
            "security_class": ["", "内部"],
        },
    }
    # The same values again change nothing and record nothing; a bad value is refused.
    r = run_cli(capsys, "case", "update", NUMBER, "--title", "无证经营", "--reason", "x")
    assert r.code == 0 and "nothing to change" in r.out
    r = run_cli(capsys, "case", "update", NUMBER, "--retention", "5年", "--reason", "x")
    assert r.code == 65 and "5年" in r.err
    assert run_cli(capsys, "case", "update", NUMBER, "--title", "t").code == 2  # no --reason
    assert len(events(app, "case-updated")) == 1


@pytest.mark.parametrize(
    "typed",
    [
        "沪徐市监罚[2026]123号",
        "沪徐市监罚（2026）123号",
        "沪徐市监罚(2026)123号",
        "沪徐市监罚【2026】123号",
        "沪徐市监罚〔２０２６〕１２３号",
        " 沪徐市监罚［２０２６］123号 ",
    ],
)
def test_case_numbers_as_people_type_them_name_the_same_case(
    app: Any, capsys: pytest.CaptureFixture[str], typed: str
) -> None:
    assert run_cli(capsys, "case", "create", NUMBER).code == 0
    r = run_cli(capsys, "case", "show", typed, "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["number"] == NUMBER  # stored as first written
    assert run_cli(capsys, "case", "close", typed, "--reason", "结案").code == 0
    with app.catalog.session() as s:
        assert list(s.scalars(select(Case.number))) == [NUMBER]
    assert C.number_key(typed) == C.number_key(NUMBER)


def test_a_near_miss_suggests_the_case_it_probably_meant(
    app: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(capsys, "case", "create", NUMBER).code == 0
    assert run_cli(capsys, "case", "create", "沪徐市监罚〔2025〕77号").code == 0
    r = run_cli(capsys, "case", "show", "沪徐市监罚[2026]132号")
    assert r.code == 66 and f"did you mean '{NUMBER}'" in r.err
    r = run_cli(capsys, "case", "show", "完全不同的编号")
    assert r.code == 66 and "did you mean" not in r.err


def test_creating_a_look_alike_number_asks_first(
    app: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli(capsys, "case", "create", NUMBER).code == 0
    alike = "沪徐市监罚[2026]123号"
    # Without a terminal: refused, naming the existing case and --yes.
    r = run_cli(capsys, "case", "create", alike)
    assert r.code == 65 and NUMBER in r.err and "--yes" in r.err
    # On a terminal: asked; "no" creates nothing, "yes" creates it.
    monkeypatch.setattr("sys.stdin", _Terminal("n\n"))
    r = run_cli(capsys, "case", "create", alike)
    assert r.code == 65 and "create it as another case?" in r.err
    with app.catalog.session() as s:
        assert list(s.scalars(select(Case.number))) == [NUMBER]
    monkeypatch.setattr("sys.stdin", _Terminal("y\n"))
    r = run_cli(capsys, "case", "create", alike)
    assert r.code == 0 and f"case {alike} created" in r.out
    # Two cases now share the key: the exact number names each; a third spelling is
    # ambiguous and lists both.
    assert json.loads(run_cli(capsys, "case", "show", alike, "--json").out)["number"] == alike
    assert json.loads(run_cli(capsys, "case", "show", NUMBER, "--json").out)["number"] == NUMBER
    r = run_cli(capsys, "case", "show", "沪徐市监罚(2026)123号")
    assert r.code == 65 and NUMBER in r.err and alike in r.err
    # --yes for scripts; the very same number is still refused.
    third = "沪徐市监罚【2026】123号"
    assert run_cli(capsys, "case", "create", third, "--yes").code == 0
    r = run_cli(capsys, "case", "create", NUMBER, "--yes")
    assert r.code == 65 and "already exists" in r.err
    assert len(events(app, "case-created")) == 3


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_show_and_attach_take_an_unambiguous_file_name(
    app: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    rec = make_recording(app, start=cst(2026, 3, 2, 9, 30))
    other = make_recording(app, start=cst(2026, 3, 2, 10, 30))
    with app.catalog.session() as s:
        name = s.get(Recording, rec).original_name
    assert run_cli(capsys, "case", "create", NUMBER).code == 0
    r = run_cli(capsys, "show", name, "--json")
    assert r.code == 0 and json.loads(r.out)["id"] == rec
    r = run_cli(capsys, "show", name.lower(), "--json")  # recorders write upper case
    assert r.code == 0 and json.loads(r.out)["id"] == rec
    r = run_cli(capsys, "case", "attach", NUMBER, name, "--reason", "复核")
    assert r.code == 0 and f"recording {rec} " in r.out, r.err
    # A second recording of the same name (a recorder whose counter was reset): both are
    # listed with their ids, and the id picks one.
    with app.catalog.transaction() as s:
        s.execute(update(Recording).where(Recording.id == other).values(original_name=name))
    for args in (("show", name), ("case", "attach", NUMBER, name, "--reason", "x")):
        r = run_cli(capsys, *args)
        assert r.code in (65, 66) and f"#{rec} {name}" in r.err and f"#{other} {name}" in r.err
        assert "id" in r.err
    r = run_cli(capsys, "case", "attach", NUMBER, str(other), "--reason", "复核")
    assert r.code == 0, r.err
    r = run_cli(capsys, "show", "no-such-file.MP4")
    assert r.code == 66 and "file name" in r.err


def test_an_import_naming_a_case_as_typed_updates_that_case(
    app: Any, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    assert run_cli(capsys, "case", "create", NUMBER, "--title", "无照经营").code == 0
    csv = tmp_path / "cases.csv"
    csv.write_text(
        "case_number,title,action_id,officers,start,end\n"
        "沪徐市监罚[２０２６]123号,无照经营,A-1,010203,2026-03-02 09:00,2026-03-02 10:00\n",
        encoding="utf-8",
    )
    r = run_cli(capsys, "case", "import", str(csv), "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["cases_created"] == 0
    shown = json.loads(run_cli(capsys, "case", "show", NUMBER, "--json").out)
    assert [a["id"] for a in shown["actions"]] == ["A-1"]
    with app.catalog.session() as s:
        assert list(s.scalars(select(Case.number))) == [NUMBER]
