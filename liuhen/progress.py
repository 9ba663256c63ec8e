"""Progress on long jobs: one bar on stderr with done/total, rate and time left, shown only
to a person at a terminal (never in scripts, pipes or ``--json``).

    with job_progress(_("Exporting"), total=size, unit="bytes", enabled=not as_json) as p:
        for chunk in work:
            p.advance(len(chunk))

``unit`` is ``"bytes"`` (sizes and MB/s) or ``"items"`` (counts and items/s). The total
may be unknown (None) and set later with :meth:`Ticker.set_total`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from config.i18n import _
from liuhen.output import err

Unit = Literal["bytes", "items"]


class Ticker:
    """What a job calls as it goes; does nothing when no bar is shown."""

    def __init__(self, bar: Progress | None = None, task: TaskID | None = None) -> None:
        self._bar = bar
        self._task = task

    @property
    def shown(self) -> bool:
        return self._bar is not None

    def advance(self, amount: int = 1) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, amount)

    def update(self, done: int, total: int | None = None) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=done, total=total)

    def set_total(self, total: int | None) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, total=total)

    def describe(self, text: str) -> None:
        """The bar's label (e.g. the file now being worked on)."""
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, description=text)


class _ItemRate(ProgressColumn):
    def render(self, task: object) -> Text:
        speed = getattr(task, "finished_speed", None) or getattr(task, "speed", None)
        if speed is None:
            return Text("—", style="progress.data.speed")
        return Text(_("{rate:.1f}/s").format(rate=speed), style="progress.data.speed")


def _columns(unit: Unit) -> list[ProgressColumn]:
    label = TextColumn("{task.description}")
    if unit == "bytes":
        return [label, BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()]
    return [label, BarColumn(), MofNCompleteColumn(), _ItemRate(), TimeRemainingColumn()]


@contextmanager
def job_progress(
    label: str, *, total: int | None, unit: Unit = "items", enabled: bool = True
) -> Iterator[Ticker]:
    """A bar for one job while the block runs; removed when it ends."""
    if not enabled or not err.is_terminal:
        yield Ticker()
        return
    with Progress(*_columns(unit), console=err, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield Ticker(bar, task)
