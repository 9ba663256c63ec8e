"""What a text value must be to fit the catalog column it goes into.

The limits come from the model's column types (``String(200)`` → at most 200 characters),
so the schema stays the one place a length is written. SQLite accepts any length and
PostgreSQL refuses the whole transaction (``DataError``), so a value is checked here,
before it reaches either database: one bad row of an import is then reported and the
others land, the same on both.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import InstrumentedAttribute

# The longest value of an unbounded text column (a title, a place) an import takes: the
# csv module's default field limit, so a CSV field and a JSON value get the same answer.
MAX_TEXT = 128 * 1024


def column_length(column: InstrumentedAttribute[Any]) -> int | None:
    """The declared length of a model's string column; None for unbounded text."""
    return getattr(column.property.columns[0].type, "length", None)


def text_problems(label: str, value: str, column: InstrumentedAttribute[Any]) -> list[str]:
    """Every reason ``value`` cannot be stored in ``column`` (empty when it can)."""
    problems = []
    if "\x00" in value:
        # PostgreSQL text cannot hold NUL at all.
        problems.append(f"{label} contains a NUL character")
    if any("\ud800" <= c <= "\udfff" for c in value):
        # A lone surrogate (e.g. a JSON "\ud800" escape) is not encodable as UTF-8.
        problems.append(f"{label} is not valid Unicode (it holds a lone surrogate)")
    limit = column_length(column) or MAX_TEXT
    if len(value) > limit:
        problems.append(f"{label} is {len(value)} characters long, more than the {limit} "
                        "it may have")
    return problems


def fields_problems(values: dict[str, tuple[str, InstrumentedAttribute[Any]]]) -> list[str]:
    """``text_problems`` of several values: {label: (value, column)}."""
    return [p for label, (value, column) in values.items()
            for p in text_problems(label, value, column)]


def shown(text: str) -> str:
    """A value short enough to quote in a message (an import may hold a 100 KB field)."""
    return text if len(text) <= 80 else text[:80] + "…"
