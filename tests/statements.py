"""Every statement SQLite runs, counted at the DB-API connection (`set_trace_callback`): what
SQLAlchemy's events see and what the hot reads (`service.store.hot`) send past them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa


@contextmanager
def sqlite_statements(engine: sa.Engine) -> Iterator[list[str]]:
    """The statements run while inside, on connections opened from here on (the pool is
    emptied first, and again after, so no connection keeps the callback)."""
    seen: list[str] = []

    def trace(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.set_trace_callback(seen.append)

    engine.dispose()
    sa.event.listen(engine, "connect", trace)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "connect", trace)
        engine.dispose()
