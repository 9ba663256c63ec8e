"""A recording's page reads what it shows once: the policy's look-up, the report and the
page's cases share one read session (api.recordings.view), the custody table is not
preceded by reading the recording again; and a view still goes through the policy and
leaves its audit event, a refusal its ``access.denied``."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import event
from starlette.testclient import TestClient

from tests import test_web_pages as pages
from tests.api_helpers import access_events, add_user

zh, web, rec = pages.zh, pages.web, pages.rec
RECORDING_ROW = re.compile(r"^SELECT recordings\.id, .* FROM recordings\s+WHERE recordings\.id = ")


def _statements(web: TestClient, path: str) -> tuple[Any, list[str]]:
    seen: list[str] = []

    def log(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(" ".join(statement.split()))

    engine = web.app.state.ctx.catalog.engine  # type: ignore[attr-defined]
    event.listen(engine, "before_cursor_execute", log)
    try:
        return web.get(path), seen
    finally:
        event.remove(engine, "before_cursor_execute", log)


def test_a_recording_page_reads_the_recording_once_and_is_audited(
    app: Any, web: TestClient, rec: int
) -> None:
    add_user(app, "reader", "auditor", unit=pages.UNIT)
    pages._login(web, "reader")
    r, statements = _statements(web, f"/recordings/{rec}")
    assert r.status_code == 200, r.text
    assert "DEV-A" in r.text  # the recorder the policy's look-up read, shown by the report
    # Once for the policy and the report (one session), once by the audit event's own
    # transaction (which names the recording by its digest): not again for the custody.
    rows = [s for s in statements if RECORDING_ROW.match(s)]
    assert len(rows) == 2, rows
    assert not [s for s in statements if s.startswith("SELECT devices.")][1:]
    views = access_events(app, actions=["access.view"], actor="reader")
    assert [e.recording_id for e in views] == [rec]


def test_a_refused_recording_page_is_audited_as_refused(
    app: Any, web: TestClient, rec: int
) -> None:
    add_user(app, "elsewhere", "reviewer", unit="黄浦分局")  # another unit's reviewer
    pages._login(web, "elsewhere")
    r = web.get(f"/recordings/{rec}")
    assert r.status_code == 403
    assert "DEV-A" not in r.text
    denied = access_events(app, actions=["access.denied"], actor="elsewhere")
    assert [(e.recording_id, e.details["permission"]) for e in denied] == [(rec, "recording.view")]
    assert not access_events(app, actions=["access.view"], actor="elsewhere")
