"""Review repro: a recording registered under a generic name ("VID_0001.MP4": the station
stores captured_at = None until the probe) of the officer's device, docked after the
action and not yet probed, is not looked at by compliance.history.load_history (it
selects by captured_at), so the action reads 未记录 ("none") — a finding against the
officer — instead of 存疑 with "not probed yet" (the reason doubt_of already has)."""

from __future__ import annotations

from sqlalchemy import update

from catalog import Catalog
from catalog.models import Recording
from tests.compliance_helpers import World, at
from tests.test_coverage import RULES, build, coverage


def test_unprobed_recording_without_a_time_makes_the_action_uncertain(catalog: Catalog) -> None:
    def fill(w: World) -> int:
        w.assign("D1", "010203", at(-86400))
        rid = w.recording("D1", at(0), None, received=at(7200))  # docked after the action
        w.s.execute(update(Recording).where(Recording.id == rid).values(captured_at=None))
        return w.action("A-1", ["010203"], at(0), at(3600))

    cov = coverage(catalog, build(catalog, fill), RULES)
    assert cov.status == "uncertain"  # today: "none"
