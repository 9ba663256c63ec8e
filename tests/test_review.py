"""Sampling review (案卷评查) on SQLite and PostgreSQL: the same seed draws the same sample
from the same population on both databases, a changed population under the same seed is
detected and named, verdicts and rectifications are signed custody events."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from catalog import Catalog, verify_chain
from catalog.canonical import canonical_json
from catalog.custody import register_station
from catalog.models import CustodyEvent
from catalog.signing import Signer
from compliance.review import (
    PopulationChanged,
    ReviewError,
    draw,
    get_sample,
    population_hash,
    record_verdict,
    rectify,
    sample_report,
    take_sample,
)
from tests.cli_helpers import run_cli
from tests.compliance_helpers import World, at

UNIT = "徐汇区市场监督管理局"
DAY = 86400


def fill(w: World, n: int = 40) -> None:
    for i in range(n):
        w.action(f"A-{i:03d}", ["010203"], at(i * 3600), at(i * 3600 + 600))
    # Outside the population: another month, another unit.
    w.action("DEC-1", ["010203"], at(40 * DAY), at(40 * DAY + 60))
    w.case("沪徐城管〔2026〕9号", unit="城管")
    w.action("B-1", ["070809"], at(0), at(60), case="沪徐城管〔2026〕9号")


def signer(catalog: Catalog) -> Signer:
    sg = Signer("station-review", Ed25519PrivateKey.generate())
    with catalog.transaction() as session:
        register_station(session, sg)
    return sg


def sample(catalog: Catalog, s: Signer, **kw: Any) -> tuple[int, bool, list[Any], str]:
    args: dict[str, Any] = {
        "unit": UNIT,
        "period_text": "2026-11",
        "count": 5,
        "seed": "20261201",
        "actor": "评查员甲",
    }
    with catalog.transaction() as session:
        row, new = take_sample(session, s, **(args | kw))
        return row.id, new, list(row.sample), row.population_hash


def test_same_seed_same_sample_on_both_databases(catalog: Catalog) -> None:
    sg = signer(catalog)
    with catalog.transaction() as session:
        fill(World(session, unit=UNIT))
    sid, new, drawn, digest = sample(catalog, sg)
    assert new and len(drawn) == 5
    keys = [["沪徐市监罚〔2026〕1号", f"A-{i:03d}"] for i in range(40)]
    # The documented rule, computed here without the package: the same on any database.
    assert digest == hashlib.sha256(canonical_json(keys).encode()).hexdigest()
    ranked = sorted(
        keys, key=lambda k: hashlib.sha256(f"20261201\n{canonical_json(k)}".encode()).hexdigest()
    )
    assert drawn == ranked[:5]
    # One literal for both parametrisations: SQLite and PostgreSQL draw the same sample.
    assert [k[1] for k in drawn] == ["A-033", "A-020", "A-001", "A-017", "A-018"]
    assert draw("20261201", keys, 5) == drawn
    again = sample(catalog, sg)
    assert again[:3] == (sid, False, drawn)  # nothing new recorded
    with catalog.session() as session:
        events = session.scalars(
            select(CustodyEvent).where(CustodyEvent.action == "review-sampled")
        ).all()
        assert len(events) == 1
        details = json.loads(events[0].details)
        assert details["seed"] == "20261201" and details["population"] == keys
        assert details["population_hash"] == population_hash(keys)
        assert details["sample"] == drawn
        assert verify_chain(session).ok


def test_changed_population_under_same_seed_is_named(catalog: Catalog) -> None:
    sg = signer(catalog)
    with catalog.transaction() as session:
        fill(World(session, unit=UNIT), n=10)
    sid, _, _, _ = sample(catalog, sg)
    with catalog.transaction() as session:
        w = World(session, unit=UNIT)
        w.action("A-late", ["010203"], at(20 * DAY), at(20 * DAY + 60))
    with pytest.raises(PopulationChanged) as caught:
        sample(catalog, sg)
    assert f"changed since sample {sid}" in caught.value.message
    assert "1 added (沪徐市监罚〔2026〕1号 A-late)" in caught.value.message
    with catalog.session() as session:
        report = sample_report(session, get_sample(session, sid))
    assert report["check"]["population_changed"]
    assert report["check"]["changes"]["added"] == [["沪徐市监罚〔2026〕1号", "A-late"]]
    assert report["check"]["redraw_matches"]
    new_id, new, _, _ = sample(catalog, sg, redraw=True)
    assert new and new_id != sid
    with catalog.session() as session:
        assert get_sample(session, new_id).supersedes == sid
    # Another seed on the changed population is a new draw of its own.
    assert sample(catalog, sg, seed="other")[1]


def test_verdicts_and_rectification_are_signed_events(catalog: Catalog) -> None:
    sg = signer(catalog)
    with catalog.transaction() as session:
        fill(World(session, unit=UNIT), n=10)
    sid, _, drawn, _ = sample(catalog, sg, count=3)
    first = drawn[0][1]
    with catalog.transaction() as session:
        v = record_verdict(
            session,
            sg,
            sample_id=sid,
            action_ref=first,
            verdict="不完整",
            checklist={"全程记录": False, "告知当事人正在录音录像": True},
            notes="后半段无录像",
            reviewer="评查员乙",
        )
        vid = v.id
    with catalog.transaction() as session, pytest.raises(ReviewError, match="not in review"):
        outside = next(f"A-{i:03d}" for i in range(10) if f"A-{i:03d}" not in [k[1] for k in drawn])
        record_verdict(
            session,
            sg,
            sample_id=sid,
            action_ref=outside,
            verdict="完整",
            checklist={},
            notes="",
            reviewer="评查员乙",
        )
    with catalog.transaction() as session:
        rectify(session, sg, verdict_id=vid, what="补充录像说明并培训", actor="科长丙")
    with catalog.transaction() as session, pytest.raises(ReviewError, match="already"):
        rectify(session, sg, verdict_id=vid, what="again", actor="科长丙")
    with catalog.session() as session:
        report = sample_report(session, get_sample(session, sid))
        by = {a["external_id"]: a for a in report["actions"]}
        assert by[first]["verdict"] == "不完整"
        assert by[first]["reviewer"] == "评查员乙"
        assert by[first]["rectification"] == "补充录像说明并培训"
        events = {
            e.action: e for e in session.scalars(select(CustodyEvent).order_by(CustodyEvent.seq))
        }
        assert events["review-verdict"].actor == "评查员乙"
        assert json.loads(events["review-verdict"].details)["checklist"]["全程记录"] is False
        assert events["review-rectified"].actor == "科长丙"


def test_cli_review_flow(app: Any, capsys: pytest.CaptureFixture[str]) -> None:
    with app.catalog.transaction() as session:
        fill(World(session, unit=UNIT), n=8)
    r = run_cli(
        capsys,
        "review",
        "sample",
        "--unit",
        UNIT,
        "--period",
        "2026-11",
        "--count",
        "2",
        "--seed",
        "s1",
        "--actor",
        "评查员甲",
        "--json",
    )
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["new"] and data["seed"] == "s1" and data["population"] == 8
    action = data["actions"][0]["external_id"]
    r = run_cli(
        capsys,
        "review",
        "verdict",
        str(data["sample"]),
        action,
        "--verdict",
        "不规范",
        "--check",
        "画面清晰=否",
        "--check",
        "声音清晰=是",
        "--notes",
        "画面抖动",
        "--actor",
        "评查员乙",
    )
    assert r.code == 0, r.err
    r = run_cli(
        capsys,
        "review",
        "verdict",
        str(data["sample"]),
        action,
        "--verdict",
        "完整",
        "--check",
        "画面=是",
    )
    assert r.code == 65 and "unknown checklist item" in r.err
    r = run_cli(capsys, "review", "rectify", "1", "--what", "更换设备", "--actor", "科长丙")
    assert r.code == 0, r.err
    r = run_cli(capsys, "review", "show", str(data["sample"]))
    assert r.code == 0, r.err
    assert "不规范" in r.out and "rectified: 更换设备" in r.out
