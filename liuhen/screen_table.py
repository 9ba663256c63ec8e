"""Every table of the command line at the terminal's width: the one place that measures
text on the screen, decides which columns a table can show, and what happens to a table
that does not fit.

Width is counted in terminal cells, as :func:`cells` counts them: a Chinese character
(and any other East Asian wide character) takes two, a Latin one one; :func:`clip` is
the one cut of a text to a width (a summary line, never an identifier). What people look up
or copy (a case number, a serial, a 警号, a station id, a file name) is never cut with
"…" nor folded: its column is ``whole``. A table that would not fit the terminal gives
way in one of two manners, the caller's choice:

* :func:`fit_table`, for a list of many rows: the less important columns (``drop``) are
  left out, the least important first, until it fits (they are in ``--json`` and on a
  wider terminal); the other columns fold their long texts.
* :func:`print_rows`, for a few rows each worth reading whole (a station, a process):
  the table if its key columns and short cells fit whole, else each row as a block, its
  key values on a line of their own and the other columns under them as
  ``heading: value``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from config.i18n import _

# One cell of padding after a column, and the box's (blank) divider: two cells between
# columns, none at the table's edges.
GAP = 2
# A folding column narrower than this reads as a column of single characters.
MIN_FOLD = 8
# print_rows keeps cells up to this wide on one line (a state, a time, a count with its
# label); a longer cell may wrap between its words, never inside one.
SHORT_CELL = 24


def cells(text: str) -> int:
    """How many terminal cells ``text`` takes (a Chinese character two)."""
    return cell_len(text)


def clip(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` cells: whole when it fits, else cut and ended with
    "…" (never an identifier: only a summary, such as a command's one-line help)."""
    if cells(text) <= limit:
        return text
    cut = text
    while cut and cells(cut) > limit - 1:
        cut = cut[:-1]
    return cut.rstrip(" ，,;；") + "…"


@dataclass(frozen=True)
class Column:
    header: str
    # Never cut or folded: an identifier a person copies or compares (shown whole, or
    # the whole column is dropped at narrow widths).
    whole: bool = False
    # 0: always shown; otherwise dropped, highest first, until the table fits.
    drop: int = 0
    justify: Literal["left", "right", "center"] = "left"
    # The narrowest a folding column may get before optional columns are dropped for it.
    fold_width: int = MIN_FOLD


def _table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    *,
    title: str | None,
    min_widths: Sequence[int | None] | None = None,
) -> Table:
    """The table of every command (one look): plain-text cells, whole columns unwrapped,
    every other cell folding rather than losing its end."""
    table = Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),
        title=title,
        title_justify="left",
        expand=False,
    )
    for i, col in enumerate(columns):
        table.add_column(
            col.header,
            no_wrap=col.whole,
            min_width=min_widths[i] if min_widths else None,
            overflow="fold",
            justify=col.justify,
        )
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


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
        widest = max([cells(col.header), *(cells(r[index]) for r in rows)])
        return widest if col.whole else min(widest, col.fold_width)

    def total() -> int:
        return sum(need(i) for i in keep) + GAP * (len(keep) - 1)

    for index in sorted((i for i in keep if columns[i].drop), key=lambda i: -columns[i].drop):
        if total() <= width:
            break
        keep.remove(index)
    return _table(
        [columns[i] for i in keep],
        [[row[i] for i in keep] for row in rows],
        title=title,
        min_widths=[need(i) if columns[i].whole else None for i in keep],
    )


def _fits(table: Table, values: Sequence[str], width: int) -> bool:
    """Whether every value is shown whole on one line of ``table`` drawn ``width`` wide:
    found by drawing it, so the rule is rich's own, not a guess at it."""
    probe = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    probe.print(table)
    lines = probe.export_text().splitlines()
    return all(any(v in line for line in lines) for v in values if v)


def print_rows(
    console: Console,
    heads: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    keys: Sequence[int] = (0,),
    title: str | None = None,
) -> None:
    """``rows`` as a table if its key columns fit ``console`` whole, else as blocks."""
    columns = [Column(head, whole=i in keys) for i, head in enumerate(heads)]
    table = _table(columns, rows, title=title)
    # The table is drawn when the keys fit whole and every short cell (a state, a number,
    # a time) does too, and no longer cell has a word broken inside: a table squeezed
    # further reads worse than blocks.
    values = [row[i] for row in rows for i in keys]
    for row in rows:
        for cell in row:
            values += [cell] if cells(cell) <= SHORT_CELL else cell.split()
    if title:
        console.print()  # a blank line between sections
    if _fits(table, values, console.width):
        console.print(table)
        return
    if title:
        console.print(Text(title, style="italic"))
    for row in rows:
        # The key values first, whole (a line this long wraps between them, not inside).
        console.print(
            Text("  ".join(row[i] for i in keys if row[i]), style="bold"), soft_wrap=False
        )
        for i, (head, cell) in enumerate(zip(heads, row, strict=True)):
            if i not in keys and cell:
                line = _("{heading}: {value}").format(heading=escape(head), value=escape(cell))
                console.print("  " + line, soft_wrap=False)
