"""Hot reads: the few SELECTs every search and match makes, run on the DB-API connection.

A ranked response reads the store once or twice (its page, the tenant's dismissals). Through
SQLAlchemy's `Connection` each such read cost ~170 us of CPU on SQLite, of which the statement
itself (sqlite3: parse-cached, a few indexed rows) is ~20 us: the rest is the `Connection`
(execution context, the statement's cache key walked on every call, `Row` objects) and, on
SQLite, the explicit `BEGIN` a multi-statement read needs (`sql._sqlite_begin`) and a
single SELECT does not, since one statement always sees one snapshot (SQLite: its implicit
read transaction; PostgreSQL: READ COMMITTED takes one snapshot per statement). At ~7 ms of
CPU per search through HTTP, that was ~5% of it (BENCHMARKS.md, session 10).

`HotSelect` keeps SQLAlchemy for what it is good at, writing the SQL of each dialect from the
table definitions (so a migration that renames a column breaks these too, and the contract
suite runs them on SQLite and PostgreSQL), and compiles it once per dialect and list length.
The list parameter (chunk ids, labels) is padded up to one of a few `SIZES` by repeating its
last value (`IN` ignores repeats), so a handful of compiled strings serve every request.
Connections still come from the engine's pool, whose `connect` event set SQLite's pragmas.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect, Engine

SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900)
"""List lengths compiled; 900 is the most one statement binds (`sql._chunked`)."""


class HotSelect:
    """One SELECT with one expanding list parameter (`IN :name`) and any scalar parameters."""

    def __init__(
        self, statement: sa.Select[Any], expanding: str, scalars: tuple[str, ...] = ()
    ) -> None:
        self.statement = statement
        self.expanding = expanding
        self.scalars = scalars
        self._compiled: dict[tuple[str, int], tuple[str, tuple[str, ...] | None]] = {}
        self._lock = threading.Lock()

    def rows(self, engine: Engine, values: Sequence[Any], **scalars: Any) -> list[tuple[Any, ...]]:
        """The statement's rows for `values` (at most `SIZES[-1]`) and the scalars given."""
        if not values:
            return []
        size = next((s for s in SIZES if s >= len(values)), None)
        if size is None:
            raise ValueError(f"at most {SIZES[-1]} values per statement, not {len(values)}")
        sql, order = self._sql(engine.dialect, size)
        bound = {f"{self.expanding}_{i + 1}": v for i, v in enumerate(values)}
        bound.update({f"{self.expanding}_{i + 1}": values[-1] for i in range(len(values), size)})
        bound.update(scalars)
        arguments: Any = bound if order is None else tuple(bound[name] for name in order)
        connection = engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                cursor.execute(sql, arguments)
                return [tuple(row) for row in cursor.fetchall()]
            finally:
                cursor.close()
        finally:
            connection.close()  # back to the pool, which rolls back: nothing to undo

    def _sql(self, dialect: Dialect, size: int) -> tuple[str, tuple[str, ...] | None]:
        key = (dialect.name, size)
        found = self._compiled.get(key)
        if found is None:
            with self._lock:
                found = self._compiled.get(key) or self._compile(dialect, size)
                self._compiled[key] = found
        return found

    def _compile(self, dialect: Dialect, size: int) -> tuple[str, tuple[str, ...] | None]:
        # Placeholder values, never sent: the compiler needs them to expand the list (and
        # checks that every scalar has one), and renders parameters, not values.
        values: dict[str, Any] = {self.expanding: [None] * size}
        values.update(dict.fromkeys(self.scalars))
        compiled = self.statement.params(values).compile(
            dialect=dialect, compile_kwargs={"render_postcompile": True}
        )
        order = tuple(compiled.positiontup or ()) if dialect.positional else None
        return compiled.string, order
