"""Tables of the case, device and retention commands as a person reads them on a
docking station's small screen: identifiers (case numbers, serials, 警号, file names) are
never cut or folded; less important columns fold, or are left out when the terminal is
too narrow for them (they are in ``--json`` and on a wider terminal)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from rich import box
from rich.cells import cell_len
from rich.table import Table

from config.timetext import offset_text, show_time

# Two cells between columns: the box's (blank) divider and one cell of padding before it;
# none at the table's edges.
GAP = 2
# A folding column narrower than this reads as a column of single characters.
MIN_FOLD = 8


@dataclass(frozen=True)
class Column:
    header: str
    # Never cut or folded: an identifier a person copies or compares (shown whole, or
    # the whole column is dropped at narrow widths).
    whole: bool = False
    # 0: always shown; otherwise dropped, highest first, until the table fits.
    drop: int = 0
    justify: str = "left"
    # The narrowest a folding column may get before optional columns are dropped for it.
    fold_width: int = MIN_FOLD


def fit_table(
    columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int, title: str | None = None
) -> Table:
    """A table of ``rows`` that fits ``width`` cells: whole columns at their widest value,
    optional columns dropped (highest ``drop`` first) while it would not fit, and optional
    columns with nothing in them left out."""
    keep = [
        i
        for i, col in enumerate(columns)
        if not col.drop or any(r[i] and r[i] != "—" for r in rows)
    ]

    def need(index: int) -> int:
        col = columns[index]
        widest = max([cell_len(col.header), *(cell_len(r[index]) for r in rows)])
        return widest if col.whole else min(widest, col.fold_width)

    def total() -> int:
        return sum(need(i) for i in keep) + GAP * (len(keep) - 1)

    for index in sorted((i for i in keep if columns[i].drop), key=lambda i: -columns[i].drop):
        if total() <= width:
            break
        keep.remove(index)
    table = Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),
        title=title,
        title_justify="left",
        expand=False,
    )
    for i in keep:
        col = columns[i]
        table.add_column(
            col.header,
            no_wrap=col.whole,
            min_width=need(i) if col.whole else None,
            overflow="fold",
            justify=col.justify,  # type: ignore[arg-type]
        )
    for row in rows:
        table.add_row(*(row[i] for i in keep))
    return table


def minutes(value: datetime | None, zone: tzinfo) -> str:
    """``2026-12-01 07:00`` in ``zone`` (the offset is in the column's header)."""
    return show_time(value, zone, seconds=False).rsplit(" ", 1)[0] if value else "—"


def span(start: datetime | None, end: datetime | None, zone: tzinfo) -> str:
    """``2026-12-01 07:00–08:30``, or both days when the span crosses midnight."""
    if start is None:
        return "—"
    first = minutes(start, zone)
    if end is None:
        return first
    last = minutes(end, zone)
    if last[:10] == first[:10]:
        last = last[11:]
    return f"{first}–{last}"


def zone_suffix(zone: tzinfo, when: datetime | None = None) -> str:
    """`` (+08:00)``: the offset a column's times are in, for its header."""
    moment = (when or datetime.now(UTC)).astimezone(zone)
    return f" ({offset_text(moment)})"
