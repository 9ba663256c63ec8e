"""Bulk inserts straight to the database driver, for the station's hot registration path.

SQLAlchemy Core's executemany processes every row on its own: it builds the row's
parameters, calls each column's Python default and each value's bind processor. For a
docking of thousands of small files that per-row work was about a quarter of the
committer thread's CPU (a yappi profile: ``_init_compiled`` alone 0.85 s of 3.9 s for
2,001 files). :class:`BulkInsert` compiles its INSERT once per dialect and hands the
driver rows of values already in the driver's form: the same bind processors and
defaults as Core (so a row reads back the same), but a datetime shared by a batch (its
``now``) is converted once, and a callable default is called once per batch.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Table, insert
from sqlalchemy.engine import Dialect


@dataclass(frozen=True)
class _Compiled:
    sql: str
    positional: bool
    names: tuple[str, ...]  # the bind names, in the order of the row's values
    processors: tuple[tuple[int, Any], ...]  # (value index, bind processor)
    order: Callable[[list[Any]], tuple[Any, ...]]  # a row's values → the bind names' order


def _one(i: int) -> Callable[[list[Any]], tuple[Any, ...]]:
    return lambda values: (values[i],)


class BulkInsert:
    """``INSERT INTO table (columns…)`` run with the driver's executemany.

    Rows are tuples of the values of ``columns``, in that order. Every other column of
    the table gets its Core default (a constant, or a callable called once per
    :meth:`run`), except an autoincrement primary key and columns without a default,
    which the database fills (NULL, or its own default).
    """

    def __init__(self, table: Table, columns: Sequence[str]) -> None:
        self.table = table
        self.columns = tuple(columns)
        unknown = set(self.columns) - set(table.c.keys())
        if unknown:
            raise ValueError(f"{table.name} has no columns {sorted(unknown)}")
        for c in table.columns:
            if c.default is not None and not (c.default.is_scalar or c.default.is_callable):
                raise ValueError(f"{table.name}.{c.key}: only constant or callable defaults")
        self._defaults = tuple(
            c.key
            for c in table.columns
            if c.key not in self.columns
            and c.default is not None
            and not (c.primary_key and c.autoincrement in (True, "auto"))
        )
        # Per dialect object, held weakly: an id() could be reused by another engine's
        # dialect (another database, another parameter style) once the first is gone.
        self._compiled: weakref.WeakKeyDictionary[Dialect, _Compiled] = weakref.WeakKeyDictionary()

    def _for(self, dialect: Dialect) -> _Compiled:
        found = self._compiled.get(dialect)
        if found is not None:
            return found
        keys = self.columns + self._defaults
        compiled = insert(self.table).compile(dialect=dialect, column_keys=list(keys))
        # Bind names are the column keys; positional styles list them in the SQL's order.
        names = tuple(compiled.positiontup or ()) if compiled.positional else keys
        index = {k: i for i, k in enumerate(keys)}
        processors = []
        for name in names:
            proc = self.table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            if proc is not None:
                processors.append((index[name], proc))
        order = itemgetter(*(index[n] for n in names)) if len(names) > 1 else _one(index[names[0]])
        found = _Compiled(compiled.string, compiled.positional, names, tuple(processors), order)
        self._compiled[dialect] = found
        return found

    def run(self, conn: Connection, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        c = self._for(conn.dialect)
        defaults = tuple(self._default_value(k) for k in self._defaults)
        memo: dict[tuple[int, datetime], Any] = {}
        out: list[Any] = []
        for row in rows:
            values = list(row) + list(defaults) if defaults else list(row)
            for i, proc in c.processors:
                v = values[i]
                if v is None:
                    continue
                if isinstance(v, datetime):  # a batch shares a few: convert each once
                    k = (i, v)
                    if k not in memo:
                        memo[k] = proc(v)
                    values[i] = memo[k]
                else:
                    values[i] = proc(v)
            ordered = c.order(values)
            out.append(ordered if c.positional else dict(zip(c.names, ordered, strict=True)))
        conn.exec_driver_sql(c.sql, out)

    def _default_value(self, key: str) -> Any:
        default = self.table.c[key].default
        assert default is not None
        arg = getattr(default, "arg", None)
        if getattr(default, "is_callable", False):
            return arg(None)  # type: ignore[misc]  # Core wraps it to take a context
        return arg
