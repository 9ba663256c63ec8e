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

from catalog.models import Base
from config.i18n import _

# The longest value of an unbounded text column (a title, a place) an import takes: the
# csv module's default field limit, so a CSV field and a JSON value get the same answer.
MAX_TEXT = 128 * 1024


def column_length(column: InstrumentedAttribute[Any]) -> int | None:
    """The declared length of a model's string column; None for unbounded text."""
    return getattr(column.property.columns[0].type, "length", None)


def text_problems(label: str, value: str, column: InstrumentedAttribute[Any]) -> list[str]:
    """Every reason ``value`` cannot be stored in ``column`` (empty when it can)."""
    return limit_problems(label, value, column_length(column) or MAX_TEXT)


def limit_problems(label: str, value: str, limit: int) -> list[str]:
    """Every reason ``value`` cannot be stored in a text column of ``limit`` characters."""
    problems = []
    if "\x00" in value:
        # PostgreSQL text cannot hold NUL at all.
        problems.append(_("{label} contains a NUL character").format(label=label))
    if any("\ud800" <= c <= "\udfff" for c in value):
        # A lone surrogate (e.g. a JSON "\ud800" escape) is not encodable as UTF-8.
        problems.append(
            _("{label} is not valid Unicode (it holds a lone surrogate)").format(label=label)
        )
    if len(value) > limit:
        problems.append(
            _("{label} is {length} characters long, more than the {limit} it may have").format(
                label=label, length=len(value), limit=limit
            )
        )
    return problems


def fields_problems(values: dict[str, tuple[str, InstrumentedAttribute[Any]]]) -> list[str]:
    """``text_problems`` of several values: {label: (value, column)}."""
    return [
        p for label, (value, column) in values.items() for p in text_problems(label, value, column)
    ]


def actor_problems(value: str, label: str | None = None) -> list[str]:
    """Every reason ``value`` cannot be recorded as who did something. An actor goes into
    the custody event and into the acting row (an assignment, an attachment, a hold, an
    export…), so it must fit the narrowest of those columns."""
    return limit_problems(label or _("the actor"), value, actor_length())


def actor_length() -> int:
    """The length of the narrowest column that records an actor: by the schema's naming
    rule, a string column called ``actor`` or ``…_by``."""
    lengths = [
        getattr(col.type, "length", None) or MAX_TEXT
        for mapper in Base.registry.mappers
        for prop in mapper.column_attrs
        if prop.key == "actor" or prop.key.endswith("_by")
        for col in prop.columns
    ]
    return min(lengths, default=MAX_TEXT)


def shown(text: str) -> str:
    """A value short enough to quote in a message (an import may hold a 100 KB field)."""
    return text if len(text) <= 80 else text[:80] + "…"
