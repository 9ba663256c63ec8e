"""Cases as the enforcement unit writes them, their actions, and the case commands."""

from __future__ import annotations

import json
import unicodedata
from typing import Any

import pytest
from sqlalchemy import select

from catalog.cases import CaseError, CaseNotFound, add_action, create_case, get_case
from catalog.models import Case, CustodyEvent
from tests.case_helpers import cst, make_recording
from tests.cli_helpers import run_cli

NUMBER = "沪徐市监罚〔2026〕123号"


def test_unicode_case_numbers_are_one_case_whatever_the_normal_form(app: Any) -> None:
    decomposed = unicodedata.normalize("NFD", "沪徐市监罚〔2026〕第Ⅻ号 é")
    with app.catalog.transaction() as s:
        case = create_case(
            s,
            app.signer,
            number=f"  {decomposed} ",
            title="无照经营",
            retention="定期30年",
            security_class="内部",
            actor="admin",
        )
        assert case.number == unicodedata.normalize("NFC", "沪徐市监罚〔2026〕第Ⅻ号 é")
        assert case.retention == "30年"
    with app.catalog.session() as s:
        assert get_case(s, "沪徐市监罚〔2026〕第Ⅻ号 é").id == case.id
        with pytest.raises(CaseNotFound):
            get_case(s, "沪徐市监罚〔2026〕第12号")
    with app.catalog.transaction() as s, pytest.raises(CaseError, match="already exists"):
        create_case(s, app.signer, number=decomposed, actor="admin")


def test_invalid_cases_and_actions_name_every_problem(app: Any) -> None:
    with app.catalog.transaction() as s:
        with pytest.raises(CaseError) as err:
            create_case(s, app.signer, number="", status="pending", retention="5年", actor="a")
        message = err.value.message
        assert "empty" in message and "pending" in message and "5年" in message
        case = create_case(s, app.signer, number=NUMBER, actor="a")
        with pytest.raises(CaseError) as err:
            add_action(
                s,
                app.signer,
                case=case,
                external_id="",
                officers=[],
                start=cst(2026, 3, 2, 10),
                end=cst(2026, 3, 2, 9),
                actor="a",
            )
        message = err.value.message
        assert "action id" in message and "no officers" in message and "ends" in message
        _, new = add_action(
            s,
            app.signer,
            case=case,
            external_id="1",
            officers=["010203"],
            start=cst(2026, 3, 2, 9),
            end=cst(2026, 3, 2, 10),
            actor="a",
        )
        _, again = add_action(
            s,
            app.signer,
            case=case,
            external_id="1",
            officers=["010203"],
            start=cst(2026, 3, 2, 9),
            end=cst(2026, 3, 2, 10),
            actor="a",
        )
        assert new and not again
        with pytest.raises(CaseError, match="other values"):
            add_action(
                s,
                app.signer,
                case=case,
                external_id="1",
                officers=["040506"],
                start=cst(2026, 3, 2, 9),
                end=cst(2026, 3, 2, 10),
                actor="a",
            )


def test_case_commands(app: Any, capsys: pytest.CaptureFixture[str]) -> None:
    rec = make_recording(app, start=cst(2026, 3, 2, 9, 30))
    r = run_cli(
        capsys,
        "case",
        "create",
        NUMBER,
        "--title",
        "无照经营",
        "--retention",
        "30年",
        "--security-class",
        "内部",
        "--actor",
        "办案员",
    )
    assert r.code == 0, r.err
    r = run_cli(capsys, "case", "create", NUMBER)
    assert r.code == 65 and "already exists" in r.err
    r = run_cli(capsys, "case", "create", "沪徐市监罚〔2026〕124号", "--retention", "3年")
    assert r.code == 65 and "3年" in r.err and "what to do" in r.err
    r = run_cli(
        capsys,
        "case",
        "action",
        NUMBER,
        "A-1",
        "--officer",
        "010203",
        "--officer",
        "040506",
        "--start",
        "2026-03-02 09:00",
        "--end",
        "2026-03-02 10:00",
        "--place",
        "漕溪北路",
    )
    assert r.code == 0 and "1 recording(s) attached" in r.out, r.err
    r = run_cli(capsys, "case", "show", NUMBER, "--json")
    shown = json.loads(r.out)
    assert shown["retention"] == "30年" and shown["security_class"] == "内部"
    assert shown["actions"] == [
        {
            "id": "A-1",
            "start": "2026-03-02T09:00:00+08:00",
            "end": "2026-03-02T10:00:00+08:00",
            "place": "漕溪北路",
            "officers": ["010203", "040506"],
        }
    ]
    [entry] = shown["recordings"]
    assert entry["recording"] == rec and entry["method"] == "rule"
    assert entry["why"] == "rule: officer 010203 in action(s) A-1 ± 300 s"
    assert entry["capture_start"] == "2026-03-02T09:30:00+08:00"
    r = run_cli(capsys, "case", "show", NUMBER)
    assert r.code == 0 and "rule: officer 010203" in r.out and NUMBER in r.out
    r = run_cli(capsys, "case", "list", "--json")
    assert json.loads(r.out) == [
        {
            "number": NUMBER,
            "title": "无照经营",
            "unit": "",
            "status": "open",
            "retention": "30年",
            "security_class": "内部",
            "recordings": 1,
        }
    ]
    r = run_cli(capsys, "case", "list", "--status", "closed", "--json")
    assert json.loads(r.out) == []
    r = run_cli(capsys, "case", "show", "沪徐市监罚〔2026〕999号")
    assert r.code == 66 and "no case" in r.err
    with app.catalog.session() as s:
        created = s.scalars(select(CustodyEvent).where(CustodyEvent.action == "case-created")).one()
        assert created.actor == "办案员" and created.object_id == NUMBER
        assert s.scalars(select(Case.source)).one() == "manual"
