"""A recording docked under a generic name has no capture time until the probe reads one.

Coverage cannot count it, but it may have been captured during any action its officer
took before it was received: until probed, such an action is 存疑 ("uncertain", naming
the recording), never 未记录 ("none"), a finding against the officer.
"""

from __future__ import annotations

import pytest
from sqlalchemy import update

from catalog import Catalog
from catalog.models import Recording
from compliance.history import UNPROBED
from tests.compliance_helpers import World, at
from tests.test_coverage import RULES, build, coverage


def _unprobed(w: World, serial: str, received: int) -> int:
    rid = w.recording(serial, at(0), None, received=at(received))
    w.s.execute(update(Recording).where(Recording.id == rid).values(captured_at=None))
    return rid


def test_an_unprobed_recording_docked_after_the_action_makes_it_uncertain(
    catalog: Catalog,
) -> None:
    ids: list[int] = []

    def fill(w: World) -> int:
        w.assign("D1", "010203", at(-86400))
        ids.append(_unprobed(w, "D1", received=7200))
        return w.action("A-1", ["010203"], at(0), at(3600))

    cov = coverage(catalog, build(catalog, fill), RULES)
    assert cov.status == "uncertain"
    assert cov.officers[0].doubts == [(ids[0], UNPROBED)]
    assert cov.as_dict()["officers"][0]["uncertain"] == [
        {"recording": ids[0], "reason": "not probed yet: capture time unknown"}
    ]


@pytest.mark.parametrize(
    ("received", "status"),
    [(-86400, "none"), (-301, "none"), (-300, "uncertain"), (1800, "uncertain")],
)
def test_received_before_the_window_it_cannot_be_of_the_action(
    catalog: Catalog, received: int, status: str
) -> None:
    """Received before the window opened (beyond the doubt margin, 300 s): captured
    before it too, so it casts no doubt."""

    def fill(w: World) -> int:
        w.assign("D1", "010203", at(-2 * 86400))
        _unprobed(w, "D1", received=received)
        return w.action("A-1", ["010203"], at(0), at(3600))

    assert coverage(catalog, build(catalog, fill), RULES).status == status


def test_another_officer_s_unprobed_recording_is_not_this_one_s_doubt(catalog: Catalog) -> None:
    def fill(w: World) -> int:
        w.assign("D1", "010203", at(-86400))
        w.assign("D2", "040506", at(-86400))
        w.recording("D1", at(0), at(3600))
        _unprobed(w, "D2", received=7200)
        return w.action("A-1", ["010203"], at(0), at(3600))

    assert coverage(catalog, build(catalog, fill), RULES).status == "complete"
