"""Coverage of enforcement actions on constructed histories, on SQLite and PostgreSQL:
exact shares and gaps at the boundaries, two officers, a hand-over mid-action, and a
doubtful clock that makes the action uncertain."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from catalog import Catalog
from compliance.coverage import Rules, action_coverage, case_coverage
from tests.cli_helpers import run_cli
from tests.compliance_helpers import T0, World, at

RULES = Rules()  # the defaults: gaps over 30 s, each officer, 95% and no gap over 60 s


def build(catalog: Catalog, fill: Any) -> Any:
    with catalog.transaction() as s:
        w = World(s)
        result = fill(w)
    return result


def coverage(catalog: Catalog, action_id: int, rules: Rules = RULES) -> Any:
    with catalog.session() as s:
        return action_coverage(s, str(action_id), rules)


def test_recording_exactly_on_the_window_covers_it_whole(catalog: Catalog) -> None:
    def fill(w: World) -> int:
        w.assign("D1", "010203", at(-86400))
        w.recording("D1", at(0), at(3600))
        return w.action("A-1", ["010203"], at(0), at(3600))

    cov = coverage(catalog, build(catalog, fill))
    o = cov.officers[0]
    assert (cov.status, cov.share, cov.longest_gap_s) == ("complete", 1.0, 0.0)
    assert (o.layout.started_late_s, o.layout.stopped_early_s, o.layout.covered_s) == (0, 0, 3600)
    assert cov.gaps == []


@pytest.mark.parametrize(
    ("gap_s", "listed", "status"),
    [
        (29, False, "complete"),
        (30, False, "complete"),
        (31, True, "complete"),
        (60, True, "complete"),
        (61, True, "partial"),
    ],
)
def test_gap_threshold_and_complete_rule_at_the_second(
    catalog: Catalog, gap_s: int, listed: bool, status: str
) -> None:
    def fill(w: World) -> int:
        w.assign("D1", "010203", at(-86400))
        w.recording("D1", at(0), at(1000))
        w.recording("D1", at(1000 + gap_s), at(3600))
        return w.action("A-1", ["010203"], at(0), at(3600))

    cov = coverage(catalog, build(catalog, fill))
    assert cov.longest_gap_s == gap_s
    assert cov.share == (3600 - gap_s) / 3600
    gaps = [(g.start, g.end, g.seconds) for g in cov.gaps]
    assert gaps == ([(at(1000), at(1000 + gap_s), gap_s)] if listed else [])
    assert cov.status == status


def test_late_start_and_early_stop_are_gaps_of_their_own(catalog: Catalog) -> None:
    def fill(w: World) -> int:
        w.assign("D1", "010203", at(-86400))
        w.recording("D1", at(-600), at(45))  # started before the window: clipped
        w.recording("D1", at(120), at(3500))
        return w.action("A-1", ["010203"], at(0), at(3600))

    cov = coverage(catalog, build(catalog, fill))
    lay = cov.officers[0].layout
    assert (lay.started_late_s, lay.stopped_early_s) == (0, 100)
    assert [(g.start, g.end) for g in cov.gaps] == [(at(45), at(120)), (at(3500), at(3600))]
    assert lay.covered_s == 45 + 3380
    assert cov.status == "partial"

    def late(w: World) -> int:
        w.recording("D1", at(7240), at(10800))
        return w.action("A-2", ["010203"], at(7200), at(10800))

    cov = coverage(catalog, build(catalog, late))
    assert cov.officers[0].layout.started_late_s == 40
    assert [(g.start, g.end, g.officer) for g in cov.gaps] == [(at(7200), at(7240), "010203")]


def test_two_officers_overlapping_each_and_any(catalog: Catalog) -> None:
    def fill(w: World) -> int:
        w.assign("D1", "010203", at(-86400))
        w.assign("D2", "040506", at(-86400))
        w.recording("D1", at(0), at(2400))
        w.recording("D2", at(1800), at(3600))
        return w.action("A-1", ["010203", "040506"], at(0), at(3600))

    action = build(catalog, fill)
    each = coverage(catalog, action)
    by = {o.officer.number: o for o in each.officers}
    assert by["010203"].layout.share == 2400 / 3600
    assert by["040506"].layout.share == 1800 / 3600
    assert by["040506"].layout.started_late_s == 1800
    assert by["010203"].layout.stopped_early_s == 1200
    assert (each.status, each.share, each.longest_gap_s) == ("partial", 0.5, 1800)
    assert each.together.share == 1.0
    anyone = coverage(catalog, action, replace(RULES, rule="any"))
    assert (anyone.status, anyone.share, anyone.gaps) == ("complete", 1.0, [])


def test_device_handed_over_mid_action_counts_for_the_holder_at_capture(
    catalog: Catalog,
) -> None:
    def fill(w: World) -> tuple[int, int]:
        w.assign("D1", "010203", at(-86400), at(1800))
        w.assign("D1", "040506", at(1800))
        w.recording("D1", at(0), at(1800))  # 010203 carried it
        w.recording("D1", at(1800), at(3600))  # 040506 from the hand-over
        both = w.action("A-1", ["010203", "040506"], at(0), at(3600))
        first = w.action("A-2", ["010203"], at(0), at(3600))
        return both, first

    both, first = build(catalog, fill)
    cov = coverage(catalog, both)
    by = {o.officer.number: o for o in cov.officers}
    assert [g.start for g in by["010203"].layout.gaps(30)] == [at(1800)]
    assert [g.end for g in by["040506"].layout.gaps(30)] == [at(1800)]
    assert (by["010203"].layout.share, by["040506"].layout.share) == (0.5, 0.5)
    assert cov.together.share == 1.0
    alone = coverage(catalog, first)
    assert alone.share == 0.5
    assert [(g.start, g.end) for g in alone.gaps] == [(at(1800), at(3600))]
    assert alone.officers[0].recordings == [r for r in by["010203"].recordings]


def test_recording_of_another_holder_or_outside_the_window_is_not_counted(
    catalog: Catalog,
) -> None:
    def fill(w: World) -> int:
        w.assign("D1", "999999", at(-86400))
        w.assign("D2", "010203", at(-86400))
        w.recording("D1", at(0), at(3600))  # someone else's recorder
        w.recording("D2", at(-7200), at(-1))  # ends a second before the window
        w.recording("D2", at(-60), at(0))  # ends exactly at its start: touches, covers nothing
        w.recording("D2", at(3600), at(3700))  # starts exactly at its end
        return w.action("A-1", ["010203"], at(0), at(3600))

    cov = coverage(catalog, build(catalog, fill))
    assert (cov.status, cov.share, cov.officers[0].recordings) == ("none", 0.0, [])
    assert cov.officers[0].layout.started_late_s == 3600


def test_device_without_assignment_counts_for_the_officer_the_catalog_resolved(
    catalog: Catalog,
) -> None:
    def fill(w: World) -> int:
        w.recording("D9", at(0), at(3600), officer="010203")
        return w.action("A-1", ["010203"], at(0), at(3600))

    assert coverage(catalog, build(catalog, fill)).status == "complete"


def test_doubtful_clock_makes_the_action_uncertain_never_counted(catalog: Catalog) -> None:
    flag = "file name and embedded creation time differ by 3600 s (threshold 120 s)"

    def fill(w: World) -> tuple[int, int]:
        w.assign("D1", "010203", at(-86400))
        w.assign("D2", "040506", at(-86400))
        w.recording("D1", at(0), at(3600))
        rec = w.recording("D2", at(0), at(3600), time_flags=[flag])
        return rec, w.action("A-1", ["010203", "040506"], at(0), at(3600))

    rec, action = build(catalog, fill)
    cov = coverage(catalog, action)
    assert cov.status == "uncertain"
    assert cov.reasons == [f"recording {rec} of officer 040506: capture time in doubt: {flag}"]
    by = {o.officer.number: o for o in cov.officers}
    assert by["040506"].layout.share == 0.0  # not silently counted
    assert by["040506"].recordings == []


def test_unprobed_recording_near_the_window_is_uncertain(catalog: Catalog) -> None:
    def fill(w: World) -> int:
        w.assign("D1", "010203", at(-86400))
        w.recording("D1", at(3800), None)  # 200 s after the end, no end known yet
        return w.action("A-1", ["010203"], at(0), at(3600))

    cov = coverage(catalog, build(catalog, fill))
    assert cov.status == "uncertain"
    assert "capture end unknown" in cov.reasons[0]
    far = replace(RULES, doubt_margin_s=100)
    assert coverage(catalog, cov.action.id, far).status == "none"


def test_case_coverage_lists_every_action(catalog: Catalog) -> None:
    def fill(w: World) -> None:
        w.assign("D1", "010203", at(-86400))
        w.recording("D1", at(0), at(600))
        w.action("A-1", ["010203"], at(0), at(600))
        w.action("A-2", ["010203"], at(7200), at(7800))

    build(catalog, fill)
    with catalog.session() as s:
        found = case_coverage(s, "沪徐市监罚〔2026〕1号", RULES)
    assert [(c.action.external_id, c.status) for c in found] == [
        ("A-1", "complete"),
        ("A-2", "none"),
    ]


def test_cli_coverage_json_and_table(app: Any, capsys: pytest.CaptureFixture[str]) -> None:
    with app.catalog.transaction() as s:
        w = World(s)
        w.assign("D1", "010203", at(-86400))
        w.recording("D1", at(0), at(1000))
        w.recording("D1", at(1100), at(3600))
        action = w.action("A-1", ["010203"], at(0), at(3600))
    r = run_cli(capsys, "coverage", str(action), "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["status"] == "partial"
    assert data["gaps"] == [
        {
            "start": at(1000).isoformat(),
            "end": at(1100).isoformat(),
            "seconds": 100.0,
            "officer": "010203",
        }
    ]
    assert data["start"] == T0.isoformat()
    r = run_cli(capsys, "coverage", "A-1")
    assert r.code == 0, r.err
    assert "partly recorded" in r.out
    # Times as the station reads them: Shanghai, with the offset.
    assert "2026-11-03 09:00:00 +08:00 → 2026-11-03 10:00:00 +08:00" in r.out
    assert "gap 2026-11-03 09:16:40 +08:00 → 2026-11-03 09:18:20 +08:00 (100 s)" in r.out
    assert "gap" in r.out and "100 s" in r.out
    r = run_cli(capsys, "coverage", "--case", "沪徐市监罚〔2026〕1号", "--json")
    assert [c["external_id"] for c in json.loads(r.out)] == ["A-1"]
    r = run_cli(capsys, "coverage", "A-404")
    assert r.code == 66 and "no enforcement action" in r.err
    r = run_cli(capsys, "coverage", "A-1", "--case", "沪徐市监罚〔2026〕1号")
    assert r.code == 2 and "either ACTION or --case" in r.err


def test_compliance_settings_are_validated(tmp_path: Any) -> None:
    from config import LiuhenError, load_settings

    cfg = tmp_path / "liuhen.toml"
    cfg.write_text('[compliance]\nrule = "all"\n', encoding="utf-8")
    with pytest.raises(LiuhenError, match=r"compliance\.rule"):
        load_settings(tmp_path, cfg, environ={})
    cfg.write_text("[compliance]\ncomplete_share = 1.5\n", encoding="utf-8")
    with pytest.raises(LiuhenError, match="between 0 and 1"):
        load_settings(tmp_path, cfg, environ={})
    cfg.write_text('[compliance]\nrule = "any"\ngap_threshold_s = 10\n', encoding="utf-8")
    s = load_settings(tmp_path, cfg, environ={})
    assert Rules.of(s.compliance) == Rules(rule="any", gap_threshold_s=10.0)


def test_external_id_in_two_cases_must_be_named_by_row_id(catalog: Catalog) -> None:
    from catalog.errors import CatalogError

    def fill(w: World) -> tuple[int, int]:
        one = w.action("A-1", ["010203"], at(0), at(60))
        two = w.action("A-1", ["010203"], at(0), at(60), case="沪徐市监罚〔2026〕2号")
        return one, two

    one, two = build(catalog, fill)
    with catalog.session() as s, pytest.raises(CatalogError, match="2 actions have the id"):
        action_coverage(s, "A-1", RULES)
    assert coverage(catalog, one).action.case_number == "沪徐市监罚〔2026〕1号"
    assert coverage(catalog, two).action.case_number == "沪徐市监罚〔2026〕2号"
