"""Tables that never cut what people look up: a station id, a serial, an officer or case
number, a file name.

A table is drawn when its key columns fit the terminal whole; when they would not (an
80-column station screen, long host names), the rows are shown as blocks instead: the key
values on a line of their own, the other columns under them as ``heading: value``. Which
layout fits is found by drawing the table at the console's width and looking for every
key value on one line, so the rule is rich's own, not a guess at it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from config.i18n import _

# Cells up to this wide are kept on one line (a state, a time, a count with its label).
SHORT_CELL = 24


def key_table(
    heads: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    keys: Sequence[int] = (0,),
    title: str | None = None,
) -> Table:
    """A compact table whose ``keys`` columns are never wrapped (cells are plain text)."""
    table = Table(
        *heads,
        title=title,
        box=box.SIMPLE_HEAD,
        title_justify="left",
        pad_edge=False,
        show_edge=False,
        collapse_padding=True,
    )
    for i, column in enumerate(table.columns):
        # Never "…": a cell too wide for its column folds rather than loses its end.
        column.overflow = "fold"
        column.no_wrap = i in keys
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


def fits(table: Table, values: Sequence[str], width: int) -> bool:
    """Whether every value is shown whole on one line of ``table`` drawn ``width`` wide."""
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
    table = key_table(heads, rows, keys=keys, title=title)
    # The table is drawn when the keys fit whole and every short cell (a state, a number,
    # a time) does too, and no longer cell has a word broken inside: a table squeezed
    # further reads worse than blocks.
    values = [row[i] for row in rows for i in keys]
    for row in rows:
        for cell in row:
            values += [cell] if cell_len(cell) <= SHORT_CELL else cell.split()
    if title:
        console.print()  # a blank line between sections
    if fits(table, values, console.width):
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
