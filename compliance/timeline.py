"""Intervals laid on a window: covered time, gaps, late start and early stop.

Pure arithmetic on datetimes (no catalog): the one place the figures of
docs/compliance.md are computed, for one action or a hundred thousand.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Gap:
    start: datetime
    end: datetime
    officer: str | None = None  # the officer whose recording has the gap; None: all together

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "seconds": self.seconds,
        }
        if self.officer is not None:
            d["officer"] = self.officer
        return d


@dataclass
class Layout:
    """What a set of recordings covers of one window."""

    window_s: float
    covered_s: float = 0.0
    # Every uncovered stretch, including before the first and after the last recording.
    holes: list[Gap] = field(default_factory=list)
    started_late_s: float = 0.0  # window start to the first covered instant
    stopped_early_s: float = 0.0  # last covered instant to the window end

    @property
    def share(self) -> float:
        if self.window_s <= 0:
            # A window of no length is covered when a recording contains its instant.
            return 0.0 if self.holes else 1.0
        return self.covered_s / self.window_s

    @property
    def longest_gap_s(self) -> float:
        return max((g.seconds for g in self.holes), default=0.0)

    def gaps(self, threshold_s: float) -> list[Gap]:
        """The uncovered stretches longer than the threshold (exactly it is not a gap)."""
        return [g for g in self.holes if g.seconds > threshold_s]


def lay(
    start: datetime,
    end: datetime,
    intervals: Iterable[tuple[datetime, datetime]],
    officer: str | None = None,
) -> Layout:
    """Lay intervals on ``[start, end]``: the union, clipped, and what it leaves uncovered."""
    window_s = (end - start).total_seconds()
    layout = Layout(window_s=window_s)
    if window_s <= 0:
        if not any(s <= start <= e for s, e in intervals):
            layout.holes.append(Gap(start, end, officer))
        return layout
    # Strict: a recording that only touches the window at its start or end covers nothing.
    clipped = [
        (s if s > start else start, e if e < end else end)
        for s, e in intervals
        if s < end and e > start
    ]
    if not clipped:
        layout.holes.append(Gap(start, end, officer))
        layout.started_late_s = layout.stopped_early_s = window_s
        return layout
    clipped.sort()
    cursor = start  # the end of what is covered so far (only grows)
    covered = 0.0
    for s, e in clipped:
        if s > cursor:
            layout.holes.append(Gap(cursor, s, officer))
            cursor = s
        if e > cursor:
            covered += (e - cursor).total_seconds()
            cursor = e
    if cursor < end:
        layout.holes.append(Gap(cursor, end, officer))
    layout.covered_s = covered
    layout.started_late_s = (clipped[0][0] - start).total_seconds()
    layout.stopped_early_s = (end - cursor).total_seconds()
    return layout
