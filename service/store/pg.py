"""What only PostgreSQL does for clustermatch: advisory locks and the generation pointer row.

With SQLite everything runs on one host, and a file lock and a CURRENT file do. With PostgreSQL,
API replicas and rebuild jobs may run on several hosts; what they must agree on lives in the
database they share:

- **Writes in id order.** Chunk ids come from a sequence, and "chunks newer than the generation"
  is `id > watermark`. Two concurrent transactions could commit their ids out of order (the
  higher first), and a reader who saw the higher id as the newest would never look at the lower
  one. So every write transaction first takes one transaction-scoped advisory lock: ids are then
  allocated and committed in the same order. (SQLite serialises writers anyway.) It also makes
  two upserts of one actor, or a delete racing an upsert, simply happen one after the other.
- **One rebuild at a time**, on any host: a session-level advisory lock held by the rebuild's own
  connection. PostgreSQL drops it when that connection ends, so a SIGKILLed rebuild leaves no
  stale lock (the same promise `flock` gives on one host).
- **The current generation** is a row of `generation_pointer` (`sql.StorePointer`), which every
  replica reads.

Lock keys are derived from the database and schema name, so stores in different schemas of one
database (tests, several deployments) never block each other.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from service.errors import Conflict


def advisory_key(connection: Connection, purpose: str) -> int:
    """A signed 64-bit advisory lock key for `purpose` in this connection's database and schema."""
    database, schema = connection.execute(
        sa.text("SELECT current_database(), current_schema()")
    ).one()
    digest = hashlib.sha256(f"clustermatch:{database}:{schema}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_writes(connection: Connection, key: int) -> None:
    """Take the write lock for the rest of this transaction (released at commit or rollback)."""
    connection.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


class _HasEngine(Protocol):
    @property
    def engine(self) -> Engine: ...


class AdvisoryRebuildLock:
    """`RebuildLock` across hosts: one rebuild per store, whichever host starts it."""

    def __init__(self, store: _HasEngine) -> None:
        self._store = store
        self._key: int | None = None

    def _key_for(self, connection: Connection) -> int:
        """Derived once (database and schema do not change under a store), then reused."""
        if self._key is None:
            self._key = advisory_key(connection, "rebuild")
        return self._key

    @staticmethod
    def _try_lock(connection: Connection, key: int) -> bool:
        taken = connection.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key})
        return bool(taken.scalar())

    @staticmethod
    def _unlock(connection: Connection, key: int) -> None:
        connection.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        connection.commit()

    @contextmanager
    def hold(self, what: str) -> Iterator[None]:
        with self._store.engine.connect() as connection:
            key = self._key_for(connection)
            if not self._try_lock(connection, key):
                raise Conflict(f"{what} is already running (PostgreSQL advisory lock {key})")
            connection.commit()  # hold the session lock, not an open transaction
            try:
                yield
            finally:
                self._unlock(connection, key)

    def held(self) -> bool:
        with self._store.engine.connect() as connection:
            key = self._key_for(connection)
            if self._try_lock(connection, key):
                self._unlock(connection, key)
                return False
            return True


@contextmanager
def scratch_schema(url: str, prefix: str) -> Iterator[str]:
    """A fresh schema in the database at `url`, for one test or benchmark run: yields a URL whose
    connections live in it (`search_path`), and drops it, with everything in it, afterwards."""
    admin = sa.create_engine(
        url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    schema = f"{prefix}_{secrets.token_hex(6)}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        try:
            base = admin.url.render_as_string(hide_password=False)
            yield f"{base}?options=-csearch_path%3D{schema}"
        finally:
            with admin.connect() as conn:
                # Sessions still open in that schema (a killed server's) would block the drop.
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()
