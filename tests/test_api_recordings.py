"""The HTTP API's recordings over real TCP (uvicorn, httpx), on SQLite and PostgreSQL:
byte ranges of a proxy, search and paging, detail and custody, holds, and errors as JSON
with the command line's words."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bench.api import nginx_in_front
from catalog.devices import add_device
from tests.api_helpers import (
    access_events,
    add_proxy,
    client,
    error_of,
    served,
    session_secret,
)
from tests.case_helpers import cst, make_recording
from tests.conftest import service_missing


@pytest.fixture
def base(app: Any) -> Iterator[str]:
    with served(app.settings) as url:
        yield url


@pytest.fixture
def api(app: Any, base: str) -> Iterator[httpx.Client]:
    """An archivist of 徐汇分局, logged in (its session secret as Bearer)."""
    token = session_secret(app, "archivist", "徐汇分局")
    with client(base, Authorization=f"Bearer {token}") as http:
        yield http


@pytest.fixture
def rec(app: Any) -> int:
    with app.catalog.transaction() as s:
        add_device(s, app.signer, serial="DEV-A", unit="徐汇分局", actor="test")
    return make_recording(app, serial="DEV-A", docking_officer="010203", start=cst(2026, 12, 1, 7))


def test_a_range_of_a_proxy_is_exactly_those_bytes(app: Any, api: httpx.Client, rec: int) -> None:
    data = add_proxy(app, rec)
    url = f"/api/v1/recordings/{rec}/media/proxy"

    r = api.get(url, headers={"Range": "bytes=1000-1999"})

    assert r.status_code == 206
    assert r.content == data[1000:2000]
    assert r.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    assert r.headers["content-length"] == "1000"
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-type"] == "video/mp4"
    # The last bytes, an open end, and the whole file without a Range.
    assert api.get(url, headers={"Range": "bytes=-100"}).content == data[-100:]
    assert api.get(url, headers={"Range": f"bytes={len(data) - 5}-"}).content == data[-5:]
    whole = api.get(url)
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["accept-ranges"] == "bytes"


@pytest.mark.parametrize("bad", ["bytes=200000-", "bytes=500-100", "bytes=-0", "bytes=x-y"])
def test_a_range_outside_the_file_is_416_with_its_size(
    app: Any, api: httpx.Client, rec: int, bad: str
) -> None:
    data = add_proxy(app, rec)
    r = api.get(f"/api/v1/recordings/{rec}/media/proxy", headers={"Range": bad})
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{len(data)}"
    assert "range" in error_of(r)["message"]


def test_no_proxy_yet_and_no_such_recording_are_404_in_json(
    app: Any, base: str, api: httpx.Client, rec: int
) -> None:
    missing = api.get(f"/api/v1/recordings/{rec}/media/proxy")
    assert missing.status_code == 404
    assert "no proxy copy" in error_of(missing)["message"]
    # A recording that does not exist is not in a unit: only a role reaching every unit
    # learns that it does not exist (the others are refused, as for another unit's).
    assert api.get("/api/v1/recordings/999999").status_code == 403
    auditor = session_secret(app, "auditor")
    with client(base, Authorization=f"Bearer {auditor}") as every_unit:
        nothing = every_unit.get("/api/v1/recordings/999999")
    assert nothing.status_code == 404
    error = error_of(nothing)
    # The same words as `liuhen show 999999`'s error.
    assert error["message"] == "no recording matches '999999'"
    assert error["code"] == "RecordingNotFound"


def test_search_filters_and_pages_over_http(app: Any, api: httpx.Client, rec: int) -> None:
    with app.catalog.transaction() as s:
        add_device(s, app.signer, serial="DEV-B", unit="黄浦分局", actor="test")
    more = [
        make_recording(app, serial="DEV-A", docking_officer="010203", start=cst(2026, 12, 1, h))
        for h in (9, 11, 13)
    ]
    other = make_recording(
        app, serial="DEV-B", docking_officer="040506", start=cst(2026, 12, 1, 10)
    )

    seen: list[int] = []
    params: dict[str, Any] = {"device": "DEV-A", "limit": 3}
    while True:
        page = api.get("/api/v1/recordings", params=params).json()
        seen += [item["id"] for item in page["items"]]
        if not page["next_cursor"]:
            break
        params["cursor"] = page["next_cursor"]
    assert seen == [*reversed(more), rec]

    # 1 December from 10:00 (station time) to 13:00 exclusive.
    r = api.get(
        "/api/v1/recordings",
        params={"from": "2026-12-01 10:00", "to": "2026年12月1日 13:00"},
    ).json()
    # Another unit's recording of 10:00 is not shown to this unit's archivist.
    assert [i["id"] for i in r["items"]] == [more[1]]
    assert r["items"][0]["captured_at"] == "2026-12-01T11:00:00+08:00"
    assert api.get("/api/v1/recordings", params={"device": "DEV-B"}).json()["items"] == []
    assert api.get(f"/api/v1/recordings/{other}").status_code == 403
    assert [
        i["id"] for i in api.get("/api/v1/recordings", params={"unit": "徐汇分局"}).json()["items"]
    ] == [*reversed(more), rec]
    held = api.get("/api/v1/recordings", params={"flag": "on_hold"}).json()
    assert held["items"] == []


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"from": "2026-12-02", "to": "2026-12-01"}, "--to is exclusive"),
        ({"from": "yesterday"}, "is not a date or time"),
        ({"cursor": "garbage"}, "cursor"),
        # A case out of reach (here: none such) is refused before it is looked up.
        ({"case": "no such case"}, "no such case"),
        ({"flag": "shiny"}, "flag"),
        ({"limit": "0"}, "limit"),
    ],
)
def test_bad_searches_answer_json_errors(
    api: httpx.Client, params: dict[str, str], words: str
) -> None:
    r = api.get("/api/v1/recordings", params=params)
    assert r.status_code in (400, 403, 422)
    assert words in error_of(r)["message"]


def test_detail_custody_and_holds(app: Any, api: httpx.Client, rec: int) -> None:
    detail = api.get(f"/api/v1/recordings/{rec}").json()
    assert detail["id"] == rec and detail["device"] == "DEV-A"
    assert detail["retention"]["recording"] == rec and detail["retention"]["rule"]

    placed = api.post(f"/api/v1/recordings/{rec}/holds", json={"reason": "court order 12"})
    assert placed.status_code == 201
    hold = placed.json()
    assert hold["reason"] == "court order 12" and hold["released_at"] is None
    held = api.get("/api/v1/recordings", params={"flag": "on_hold"}).json()["items"]
    assert [i["id"] for i in held] == [rec]

    released = api.post(
        f"/api/v1/recordings/{rec}/holds/{hold['id']}/release", json={"reason": "case closed"}
    )
    assert released.status_code == 200 and released.json()["release_reason"] == "case closed"
    again = api.post(
        f"/api/v1/recordings/{rec}/holds/{hold['id']}/release", json={"reason": "again"}
    )
    assert again.status_code == 400
    assert error_of(again)["hint"]

    events = api.get(f"/api/v1/recordings/{rec}/custody").json()["events"]
    actions = [e["action"] for e in events]
    assert "legal-hold-placed" in actions and "legal-hold-released" in actions
    assert all(e["event_hash"] for e in events)
    page = api.get(f"/api/v1/recordings/{rec}/custody", params={"limit": 1}).json()
    assert len(page["events"]) == 1 and page["next_after"] == page["events"][0]["id"]


def test_requests_that_do_not_fit_the_description_are_json_errors(api: httpx.Client) -> None:
    for r in (
        api.get("/api/v1/recordings/abc"),
        api.post("/api/v1/recordings/1/holds", json={}),
        api.post("/api/v1/recordings/1/holds", content=b"{not json"),
        api.get("/api/v1/nowhere"),
        api.delete("/api/v1/recordings"),
    ):
        assert r.status_code in (404, 405, 422), r.text
        error_of(r)


def test_without_credentials_nothing_is_answered(base: str, rec: int) -> None:
    with client(base) as anonymous:
        for r in (
            anonymous.get("/api/v1/recordings"),
            anonymous.get(f"/api/v1/recordings/{rec}/media/proxy"),
            anonymous.post(f"/api/v1/recordings/{rec}/holds", json={"reason": "x"}),
        ):
            assert r.status_code == 401
            assert "log in" in error_of(r)["message"]
            assert r.headers["www-authenticate"].startswith("Bearer")
    with client(base, Authorization="Bearer lht_not-a-token") as forged:
        r = forged.get("/api/v1/recordings")
        assert r.status_code == 401
        assert "unknown or was revoked" in error_of(r)["message"]


def test_behind_nginx_the_bytes_come_from_nginx_after_the_api_allowed_them(
    app: Any, rec: int, tmp_path: Any
) -> None:
    import shutil

    if shutil.which("nginx") is None and not os.path.exists("/usr/sbin/nginx"):
        service_missing("nginx (scripts/setup.sh installs it)")
    data = add_proxy(app, rec)
    store_root = app.store.root
    token = session_secret(app, "archivist", "徐汇分局")
    with (
        served(app.settings, accel_redirect="/_liuhen_store/") as upstream,
        nginx_in_front(upstream, str(store_root), tmp_path) as base,
        client(base, Authorization=f"Bearer {token}") as http,
    ):
        direct = client(upstream, Authorization=f"Bearer {token}")
        handed = direct.get(f"/api/v1/recordings/{rec}/media/proxy")
        assert handed.headers["x-accel-redirect"].startswith("/_liuhen_store/sha256/")
        assert handed.content == b""
        r = http.get(f"/api/v1/recordings/{rec}/media/proxy", headers={"Range": "bytes=1000-1999"})
        assert r.status_code == 206 and r.content == data[1000:2000]
        assert r.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
        # The store itself is not reachable through nginx, and refusals stay refusals.
        assert (
            http.get(f"/_liuhen_store/{handed.headers['x-accel-redirect'][15:]}").status_code == 404
        )
        with client(base) as anonymous:
            assert anonymous.get(f"/api/v1/recordings/{rec}/media/proxy").status_code == 401
        direct.close()


def test_values_the_catalog_cannot_hold_are_400_not_500(api: httpx.Client, rec: int) -> None:
    for r in (
        api.get("/api/v1/recordings", params={"officer": "01\x0002"}),
        api.get("/api/v1/recordings", params={"unit": "徐\x00汇"}),
        api.post(f"/api/v1/recordings/{rec}/holds", json={"reason": "court\x00order"}),
    ):
        assert r.status_code in (200, 201, 400), r.text
        if r.status_code == 400:
            error_of(r)


def _plays(app: Any, rec: int) -> list[Any]:
    return [e for e in access_events(app, actions=["access.play"]) if e.recording_id == rec]


def test_a_poster_is_a_view_never_a_playback(app: Any, api: httpx.Client, rec: int) -> None:
    poster = add_proxy(app, rec, size=3000, seed=2, kind="poster")
    for _shown in range(2):
        r = api.get(f"/api/v1/recordings/{rec}/media/poster")
        assert r.status_code == 200 and r.content == poster
    assert _plays(app, rec) == []
    views = access_events(app, actions=["access.view"])
    assert [(e.recording_id, e.details["kind"]) for e in views] == [(rec, "poster")] * 2


def test_a_playback_resumed_at_an_offset_is_one_playback_start(
    app: Any, base: str, api: httpx.Client, rec: int
) -> None:
    add_proxy(app, rec)
    url = f"/api/v1/recordings/{rec}/media/proxy"
    # A player resuming where it was left: its first request is part-way into the file.
    assert api.get(url, headers={"Range": "bytes=150000-"}).status_code == 206
    plays = _plays(app, rec)
    assert len(plays) == 1
    assert plays[0].details["offset_bytes"] == 150000
    # Its seeks and further buffering, back to the start too, are the same playback.
    for seek in ("bytes=5000-", "bytes=0-", "bytes=199000-"):
        assert api.get(url, headers={"Range": seek}).status_code == 206
    assert len(_plays(app, rec)) == 1
    # Another person opening it is another playback.
    other = session_secret(app, "reviewer", "徐汇分局", name="li")
    with client(base, Authorization=f"Bearer {other}") as li:
        assert li.get(url, headers={"Range": "bytes=5000-"}).status_code == 206
    plays = _plays(app, rec)
    assert [p.actor for p in plays][1:] == ["li"]
    assert plays[1].details["offset_bytes"] == 5000


def test_a_playback_counts_again_after_thirty_minutes(
    app: Any, api: httpx.Client, rec: int
) -> None:
    from datetime import UTC, datetime, timedelta

    from access.audit import playing_already

    add_proxy(app, rec)
    assert api.get(f"/api/v1/recordings/{rec}/media/proxy").status_code == 200
    actor = _plays(app, rec)[0].actor
    with app.catalog.session() as s:
        assert playing_already(s, actor, rec)
        later = datetime.now(UTC) + timedelta(minutes=31)
        assert not playing_already(s, actor, rec, now=later)
