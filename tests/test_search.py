"""Recording search (catalog/search.py) on SQLite and PostgreSQL: each filter finds what
it names and nothing else, and paging with the cursor shows every match exactly once,
newest capture first, whatever the page size."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from catalog import attach as A
from catalog import cases as C
from catalog import retention as R
from catalog.devices import add_device
from catalog.models import Recording
from catalog.search import SearchError, SearchQuery, search_recordings, time_range
from config.settings import zone_of
from tests.case_helpers import cst, make_recording

ZONE = zone_of("Asia/Shanghai")


def _ids(app: Any, **query: Any) -> list[int]:
    with app.catalog.session() as s:
        page = search_recordings(s, SearchQuery(**query), zone=ZONE, policy=app.settings.retention)
    return [item["id"] for item in page.items]


@pytest.fixture
def corpus(app: Any) -> dict[str, int]:
    """Six recordings: two recorders of two units, officers, one case, a hold, damage."""
    with app.catalog.transaction() as s:
        add_device(s, app.signer, serial="DEV-A", unit="徐汇分局", actor="test")
        add_device(s, app.signer, serial="DEV-B", unit="黄浦分局", actor="test")
    r: dict[str, int] = {}
    r["a1"] = make_recording(
        app, serial="DEV-A", docking_officer="010203", start=cst(2026, 12, 1, 7)
    )
    r["a2"] = make_recording(
        app, serial="DEV-A", docking_officer="010203", start=cst(2026, 12, 1, 23, 59)
    )
    r["a3"] = make_recording(
        app, serial="DEV-A", docking_officer="010203", start=cst(2026, 12, 2, 0, 0)
    )
    r["b1"] = make_recording(
        app, serial="DEV-B", docking_officer="040506", start=cst(2026, 12, 1, 9)
    )
    r["b2"] = make_recording(
        app, serial="DEV-B", docking_officer="040506", start=cst(2026, 12, 3, 9)
    )
    # Docked but not probed: no capture time is known yet.
    r["b3"] = make_recording(
        app, serial="DEV-B", docking_officer="040506", start=cst(2026, 12, 4), probe=False
    )
    with app.catalog.transaction() as s:
        s.get(Recording, r["b3"]).captured_at = None
        damaged = s.get(Recording, r["a2"])
        assert damaged is not None
        damaged.flags = {**damaged.flags, "damaged": "the media data ends after 0.4 s"}
        C.create_case(s, app.signer, number="沪徐市监罚〔2026〕7号", actor="test")
        A.attach_manual(
            s,
            app.signer,
            case_number="沪徐市监罚〔2026〕7号",
            rec=s.get(Recording, r["b1"]),
            reason="seen at the scene",
            actor="test",
            policy=app.settings.retention,
            store=app.store,
        )
        R.hold(s, app.signer, app.store, s.get(Recording, r["a1"]), reason="court", actor="t")
    return r


def test_every_filter_finds_what_it_names(app: Any, corpus: dict[str, int]) -> None:
    r = corpus
    newest_first = [r["b2"], r["a3"], r["a2"], r["b1"], r["a1"], r["b3"]]
    assert _ids(app) == newest_first
    assert _ids(app, device="DEV-A") == [r["a3"], r["a2"], r["a1"]]
    assert _ids(app, officer="040506") == [r["b2"], r["b1"], r["b3"]]
    assert _ids(app, unit="黄浦分局") == [r["b2"], r["b1"], r["b3"]]
    # The case as people type it: other brackets name the same case.
    assert _ids(app, case="沪徐市监罚[2026]7号") == [r["b1"]]
    assert _ids(app, flags=("damaged",)) == [r["a2"]]
    assert _ids(app, flags=("on_hold",)) == [r["a1"]]
    assert r["b1"] not in _ids(app, flags=("unattached",))
    assert _ids(app, states=("stored",)) == [r["b3"]]
    assert _ids(app, device="DEV-A", flags=("on_hold", "damaged")) == []
    assert _ids(app, officer="999999") == []


def test_a_day_range_is_the_stations_day_with_an_exclusive_end(
    app: Any, corpus: dict[str, int]
) -> None:
    r = corpus
    lo, hi = time_range("2026-12-01", "2026-12-02", ZONE)
    # 1 December in Shanghai: 23:59 is in, midnight of the 2nd is not.
    assert _ids(app, captured_from=lo, captured_to=hi) == [r["a2"], r["b1"], r["a1"]]
    lo, hi = time_range("2026年12月2日", None, ZONE)
    assert _ids(app, captured_from=lo, captured_to=hi) == [r["b2"], r["a3"]]
    with pytest.raises(SearchError) as err:
        time_range("2026-12-02", "2026-12-02", ZONE)
    assert "exclusive" in err.value.message


@pytest.mark.parametrize("size", [1, 2, 4])
def test_paging_shows_every_match_once_in_order(
    app: Any, corpus: dict[str, int], size: int
) -> None:
    everything = _ids(app)
    seen: list[int] = []
    cursor = None
    while True:
        with app.catalog.session() as s:
            page = search_recordings(
                s, SearchQuery(limit=size, cursor=cursor), zone=ZONE, policy=app.settings.retention
            )
        assert len(page.items) <= size
        seen += [i["id"] for i in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == everything
    # A recording docked while someone pages does not shift the pages already cut: the
    # cursor of page one still leads to the old page two.
    with app.catalog.session() as s:
        first = search_recordings(s, SearchQuery(limit=size), zone=ZONE)
    make_recording(app, serial="DEV-A", start=cst(2026, 12, 9))
    assert _ids(app, limit=size, cursor=first.next_cursor) == everything[size : 2 * size]


@pytest.mark.parametrize("size", [1, 2, 4])
def test_a_scope_of_several_terms_pages_each_match_once(
    app: Any, corpus: dict[str, int], size: int
) -> None:
    """An access scope that is an OR (an officer's own recordings, or a granted case's)
    is searched one term at a time: a recording matching two terms is listed once, and
    the pages keep the one order."""
    from sqlalchemy import or_, select

    from catalog.models import Device

    r = corpus
    dev_a = select(Device.id).where(Device.serial == "DEV-A").scalar_subquery()
    scope = or_(
        Recording.device_id == dev_a,  # a1, a2, a3
        Recording.id.in_([r["a1"], r["b1"]]),  # a1 again, and b1
        or_(Recording.captured_at < cst(2026, 12, 1, 8), Recording.id == r["b3"]),
    )
    expected = [i for i in _ids(app) if i in {r["a1"], r["a2"], r["a3"], r["b1"], r["b3"]}]
    seen: list[int] = []
    cursor = None
    while True:
        with app.catalog.session() as s:
            page = search_recordings(
                s, SearchQuery(limit=size, cursor=cursor), zone=ZONE, scope=scope
            )
        assert len(page.items) <= size
        seen += [i["id"] for i in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == expected


def test_summaries_say_what_a_list_shows(app: Any, corpus: dict[str, int]) -> None:
    with app.catalog.session() as s:
        page = search_recordings(s, SearchQuery(device="DEV-A", limit=1), zone=ZONE)
    item = page.items[0]
    assert item["id"] == corpus["a3"]
    assert item["captured_at"] == "2026-12-02T00:00:00+08:00"
    assert item["device"] == "DEV-A" and item["unit"] == "徐汇分局"
    assert item["officer"] == "010203"
    assert page.next_cursor


@pytest.mark.parametrize(
    ("query", "words"),
    [
        (SearchQuery(cursor="not-a-cursor"), "cursor"),
        (SearchQuery(cursor="eyJpIjoxfQ"), None),  # a well-formed cursor of phase 1
        (SearchQuery(flags=("shiny",)), "shiny"),
        (SearchQuery(states=("LOST",)), "LOST"),
        (SearchQuery(limit=0), "limit"),
        (SearchQuery(case="沪徐市监罚〔2026〕8号"), "7号"),
    ],
)
def test_bad_searches_say_what_is_wrong(
    app: Any, corpus: dict[str, int], query: SearchQuery, words: str | None
) -> None:
    from config.errors import LiuhenError

    with app.catalog.session() as s:
        if words is None:
            search_recordings(s, query, zone=ZONE)
            return
        with pytest.raises(LiuhenError) as err:
            search_recordings(s, query, zone=ZONE)
    assert words in err.value.message


def test_expiring_lists_what_the_sweep_would_delete_soon(app: Any) -> None:
    now = datetime.now(UTC)
    days = app.settings.retention.unattached_days
    old = now - timedelta(days=days - 5)
    due_soon = make_recording(app, start=old, received=old)
    later = make_recording(app, start=now - timedelta(days=1), received=now - timedelta(days=1))
    # Not probed: counted from its receipt, whatever the (unchecked) time in its name.
    unprobed = make_recording(app, start=now + timedelta(days=400), received=old, probe=False)
    with app.catalog.session() as s:
        page = search_recordings(
            s,
            SearchQuery(flags=("expiring",), expiring_within_days=10),
            zone=ZONE,
            policy=app.settings.retention,
        )
    ids = [i["id"] for i in page.items]
    assert ids == [unprobed, due_soon]
    assert later not in ids
