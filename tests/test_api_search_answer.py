"""The search answer over HTTP is exactly what its documented model (SearchPage in the
OpenAPI description) says, on SQLite and PostgreSQL: the route sends the page as
catalog/search.py built it, without validating it again, so a field added, dropped or of
another type there would reach clients unannounced; this test says so instead."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from api.models import RecordingSummary, SearchPage
from catalog.devices import add_device
from catalog.models import Recording
from tests.api_helpers import client, served, session_secret
from tests.case_helpers import cst, make_recording


@pytest.fixture
def api(app: Any) -> Iterator[httpx.Client]:
    """A unit's archivist (a scope of several terms: the unit's recorders, its cases)."""
    token = session_secret(app, "archivist", "徐汇分局")
    with served(app.settings) as base, client(base, Authorization=f"Bearer {token}") as http:
        yield http


def test_the_answer_is_exactly_its_documented_model(app: Any, api: httpx.Client) -> None:
    with app.catalog.transaction() as s:
        add_device(s, app.signer, serial="DEV-A", unit="徐汇分局", actor="test")
    timed = [
        make_recording(app, serial="DEV-A", docking_officer="010203", start=cst(2026, 12, 1, h))
        for h in (7, 9)
    ]
    untimed = make_recording(
        app, serial="DEV-A", docking_officer="010203", start=cst(2026, 12, 2), probe=False
    )
    with app.catalog.transaction() as s:
        s.get(Recording, untimed).captured_at = None
        damaged = s.get(Recording, timed[0])
        assert damaged is not None
        damaged.flags = {**damaged.flags, "damaged": "the media data ends early"}

    pages = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        r = api.get("/api/v1/recordings", params=params)
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/json"
        pages.append(r.json())
        if not pages[-1]["next_cursor"]:
            break
        params["cursor"] = pages[-1]["next_cursor"]

    items = [item for page in pages for item in page["items"]]
    assert [i["id"] for i in items] == [timed[1], timed[0], untimed]
    for page in pages:
        # What validating against the model would have sent: the same, field for field.
        assert SearchPage.model_validate(page).model_dump(mode="json") == page
        for item in page["items"]:
            assert list(item) == list(RecordingSummary.model_fields)
    assert items[1]["flags"] == ["damaged"]
    assert items[0]["device"] == "DEV-A" and items[0]["unit"] == "徐汇分局"
    assert items[2]["captured_at"] is None
