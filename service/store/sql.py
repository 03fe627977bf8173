"""The profile store in SQL (SQLAlchemy Core): SQLite by default, PostgreSQL (psycopg 3) for scale.

All SQL of the project lives in `service/store/`: this module, the alerts' outbox
(`subscriptions.py`, its tables defined here on the one `metadata`), the PostgreSQL locks
(`pg.py`) and the migrations (`migrate.py`, `migrations/versions/`). The tables below are the
newest revision; a change to them needs a migration, and `tests/test_migrations.py` holds the
two equal.

Every write is one transaction, so a profile is either stored whole (actor, documents, chunks) or
not at all. Chunk ids come from an AUTOINCREMENT key (a sequence on PostgreSQL): they are never
reused, which lets them double as stable FAISS ids and lets "chunks newer than the index" be a
simple `id > watermark` (on PostgreSQL writes take a lock so ids also commit in order: `pg.py`).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from service.audit import AuditEvent, AuditQuery, Who
from service.domain import Actor, ActorSummary, Document, Owner
from service.failpoints import failpoint
from service.feedback import Feedback, FeedbackCounts, Label
from service.index.base import ChunkSelection
from service.store import migrate, pg
from service.store.base import (
    ActorFilter,
    ActorPage,
    ChunkDraft,
    FreshChunks,
    StoreCounts,
    StoredChunk,
)
from service.store.hot import HotSelect

log = logging.getLogger("clustermatch.store")

LOCAL = Owner()
BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite statement waits for another process's write lock."""
CHECKPOINT_WAIT_MS = 2_000
# Chunk ids are FAISS ids and watermarks and are never reused, so a busy store burns through them:
# 64 bits on PostgreSQL; SQLite's AUTOINCREMENT key must be declared INTEGER (64-bit anyway).
CHUNK_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Actor ids compare byte-wise on every backend, so cursors page the same way everywhere.
ACTOR_ID = sa.String(128).with_variant(sa.String(128, collation="C"), "postgresql")

metadata = sa.MetaData()

actors = sa.Table(
    "actors",
    metadata,
    sa.Column("id", ACTOR_ID, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False, index=True),
    # "" where unknown: the column predates optional countries, and "" keeps schema 1 valid.
    sa.Column("country", sa.String(2), nullable=False, index=True),
    sa.Column("region", sa.String(5), nullable=True, index=True),
    sa.Column("url", sa.Text, nullable=True),
    sa.Column("tenant", sa.String(128), nullable=False, index=True),
    sa.Column("networks", sa.Text, nullable=False),  # JSON list: the writer's networks
    sa.Column("updated_at", sa.String(32), nullable=False),
)

actor_sectors = sa.Table(
    "actor_sectors",
    metadata,
    sa.Column("actor_id", sa.ForeignKey("actors.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("ordinal", sa.Integer, primary_key=True),
    sa.Column("code", sa.String(16), nullable=False, index=True),
)

actor_clusters = sa.Table(
    "actor_clusters",
    metadata,
    sa.Column("actor_id", sa.ForeignKey("actors.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("ordinal", sa.Integer, primary_key=True),
    sa.Column("cluster_id", sa.String(128), nullable=False, index=True),
)

actor_partners = sa.Table(
    "actor_partners",
    metadata,
    sa.Column("actor_id", sa.ForeignKey("actors.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("ordinal", sa.Integer, primary_key=True),
    sa.Column("partner_id", sa.String(128), nullable=False),
)

documents = sa.Table(
    "documents",
    metadata,
    sa.Column("actor_id", sa.ForeignKey("actors.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("ordinal", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("title", sa.Text, nullable=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("language", sa.String(2), nullable=False),
    sa.Column("language_given", sa.Boolean, nullable=False),
    sa.Column("visibility", sa.String(16), nullable=False),
    sa.Column("intent", sa.String(8), nullable=True),
    sa.Column("codes", sa.Text, nullable=False),  # JSON list of CPC/IPC classes
)

chunks = sa.Table(
    "chunks",
    metadata,
    sa.Column("id", CHUNK_ID, primary_key=True, autoincrement=True),
    sa.Column("actor_id", sa.ForeignKey("actors.id", ondelete="CASCADE"), nullable=False),
    sa.Column("document_id", sa.String(128), nullable=False),
    sa.Column("ordinal", sa.Integer, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("language", sa.String(2), nullable=False),
    sa.Index("ix_chunks_actor", "actor_id"),
    # Erasure asks "does any chunk still use this hash?" for every hash an actor leaves behind
    # (revision 0003).
    sa.Index("ix_chunks_content_hash", "content_hash"),
    sqlite_autoincrement=True,  # never reuse an id: ids are FAISS ids and watermarks
)

embeddings = sa.Table(
    "embeddings",
    metadata,
    sa.Column("content_hash", sa.String(64), primary_key=True),
    sa.Column("model_id", sa.String(200), primary_key=True),
    sa.Column("vector", sa.LargeBinary, nullable=False),  # float32, little-endian
)

# Feedback on suggestions (service.feedback): the current label per tenant, context and actor. Not
# tied to `actors` by a foreign key: feedback on an actor outlives its replacement, and counts for
# the evaluation even after the actor is deleted.
feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("tenant", sa.String(128), primary_key=True),
    sa.Column("context", sa.String(700), primary_key=True),
    sa.Column("actor_id", sa.String(128), primary_key=True),
    sa.Column("for_actor", sa.String(128), nullable=True),
    sa.Column("query", sa.Text, nullable=True),
    sa.Column("label", sa.String(16), nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
)

# New-match alerts (service.alerts): a tenant's subscriptions, the actors each has already been
# told about, and the outbox of events with every delivery attempt. An event and the "seen" rows
# it adds are written in one transaction, so a crash never loses an event nor sends one twice as
# two different events (its id is fixed when it is written).
subscriptions = sa.Table(
    "subscriptions",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant", sa.String(128), nullable=False, index=True),
    sa.Column("networks", sa.Text, nullable=False),  # JSON list: whose texts it may be sent
    sa.Column("actor_id", sa.String(128), nullable=True),
    sa.Column("query", sa.Text, nullable=True),
    sa.Column("filters", sa.Text, nullable=False),  # JSON object, `Filters` spelling
    sa.Column("top", sa.Integer, nullable=False),
    sa.Column("min_score", sa.Float, nullable=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("secret", sa.Text, nullable=False),  # needed in clear to sign each body
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("checked_generation", sa.String(64), nullable=True),
    sa.Column("checked_changes", sa.Integer, nullable=False),
    sa.Column("checked_at", sa.Float, nullable=False),  # epoch seconds
    sa.Column("last_error", sa.Text, nullable=True),
)

subscription_seen = sa.Table(
    "subscription_seen",
    metadata,
    sa.Column(
        "subscription_id",
        sa.ForeignKey("subscriptions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("actor_id", sa.String(128), primary_key=True),
)

alert_events = sa.Table(
    "alert_events",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column(
        "subscription_id",
        sa.ForeignKey("subscriptions.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("generation", sa.String(64), nullable=False),
    sa.Column("body", sa.Text, nullable=False),  # the exact bytes signed and sent, as UTF-8
    sa.Column("matches", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),  # pending|delivered|failed
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("delivered_at", sa.Float, nullable=True),
)

delivery_attempts = sa.Table(
    "delivery_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "event_id", sa.ForeignKey("alert_events.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("seconds", sa.Float, nullable=False),
)

# The audit log (service.audit): appended to, pruned by age, never updated; never a text.
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.String(32), nullable=False, index=True),
    sa.Column("key_id", sa.String(64), nullable=True, index=True),
    sa.Column("tenant", sa.String(128), nullable=False, index=True),
    sa.Column("origin", sa.String(140), nullable=False),
    sa.Column("action", sa.String(32), nullable=False, index=True),
    sa.Column("target", sa.String(256), nullable=True),
    sa.Column("count", sa.Integer, nullable=False),
    sqlite_autoincrement=True,
)

store_meta = sa.Table(
    "store_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# Which generation is served, when the store is shared by replicas (revision 0002).
generation_pointer = sa.Table(
    "generation_pointer",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("generation", sa.String(64), nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
)


SQLITE_MMAP_BYTES = 256 * 2**20
"""Reads through a memory map of the first 256 MiB of the file (SQLite's `mmap_size`): a result
page reads its rows from scattered pages, and through `read()` each page is a system call and
a copy into a 2 MB per-connection cache; mapped, it is a memory access into the OS page cache
that every worker shares (the page statement of a match: 1.8 -> 1.1 ms CPU for 150 random
chunks at 100k). Writes still go through `write()`; a disk error under a mapped read ends the
process instead of raising (SQLite's documented trade-off), and the store stays intact."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
    # WAL: readers never block the writer; a crash mid-write rolls back to the last commit.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    # Erasure: a deleted row's bytes are overwritten with zeros, not left in a free page.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()
    # pysqlite starts transactions only before writes, so a read of several SELECTs would see
    # several snapshots. Let SQLAlchemy's "begin" event issue BEGIN instead (`_sqlite_begin`):
    # SQLAlchemy's documented recipe for real SQLite transactions.
    dbapi_connection.isolation_level = None


def _sqlite_begin(conn: Connection) -> None:
    write = conn.get_execution_options().get("clustermatch_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _chunked(items: Sequence[Any], size: int = 900) -> Iterator[Sequence[Any]]:
    """SQLite caps bound parameters per statement; query long id lists in slices."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


# An actor's rows, parents first.
_ACTOR_TABLES = (actors, actor_sectors, actor_clusters, actor_partners, documents, chunks)


def _actor_rows(
    actor: Actor, drafts: Sequence[ChunkDraft], now: str, owner: Owner
) -> dict[sa.Table, list[dict[str, Any]]]:
    languages = {d.document_id: d.language for d in drafts}
    return {
        actors: [
            {
                "id": actor.id,
                "name": actor.name,
                "kind": actor.kind.value,
                "country": actor.country or "",
                "region": actor.region,
                "url": actor.url,
                "tenant": owner.tenant,
                "networks": json.dumps(list(owner.networks)),
                "updated_at": now,
            }
        ],
        actor_sectors: [
            {"actor_id": actor.id, "ordinal": i, "code": c} for i, c in enumerate(actor.sectors)
        ],
        actor_clusters: [
            {"actor_id": actor.id, "ordinal": i, "cluster_id": c}
            for i, c in enumerate(actor.clusters)
        ],
        actor_partners: [
            {"actor_id": actor.id, "ordinal": i, "partner_id": p}
            for i, p in enumerate(actor.partners)
        ],
        documents: [
            {
                "actor_id": actor.id,
                "id": doc.id,
                "ordinal": i,
                "kind": doc.kind.value,
                "title": doc.title,
                "text": doc.text,
                "language": doc.language or languages.get(doc.id, "en"),
                "language_given": doc.language is not None,
                "visibility": doc.visibility.value,
                "intent": doc.intent.value if doc.intent else None,
                "codes": json.dumps(list(doc.codes)),
            }
            for i, doc in enumerate(actor.documents)
        ],
        chunks: [
            {
                "actor_id": actor.id,
                "document_id": d.document_id,
                "ordinal": d.ordinal,
                "text": d.text,
                "content_hash": d.content_hash,
                "language": d.language,
            }
            for d in drafts
        ],
    }


def normalise_url(url: str) -> str:
    """`postgresql://` and `postgres://` mean psycopg 3 (the driver clustermatch ships with)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


class SqlProfileStore:
    """`ProfileStore` over SQLAlchemy Core. Cheap to construct; connects on first use, and then
    creates the schema in an empty database or refuses an outdated one (`service.store.migrate`)."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self._engine: Engine | None = None
        # The first requests of a fresh server arrive together: one of them creates the schema.
        self._engine_lock = threading.Lock()
        self._write_key: int | None = None
        self._feedback_queries: dict[tuple[bool, bool], HotSelect] = {}
        """`feedback_actors`' statements, by (any tenant, any context)."""

    @property
    def is_postgresql(self) -> bool:
        return self.url.startswith("postgresql")

    @property
    def engine(self) -> Engine:
        if self._engine is not None:
            return self._engine
        with self._engine_lock:
            if self._engine is None:
                engine = self._new_engine()
                try:
                    migrate.ensure(engine)
                except BaseException:
                    engine.dispose()
                    raise
                self._engine = engine
            return self._engine

    def _new_engine(self) -> Engine:
        if self.url.startswith("sqlite:///"):
            Path(self.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        if self.is_postgresql:
            # pre_ping: a replica outlives PostgreSQL restarts and idle-connection reaping.
            engine = sa.create_engine(self.url, pool_pre_ping=True, pool_size=10, max_overflow=20)
        else:
            engine = sa.create_engine(self.url)
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine, "connect", _sqlite_pragmas)
            sa.event.listen(engine, "begin", _sqlite_begin)
        return engine

    def schema_state(self) -> migrate.SchemaState:
        engine = self._new_engine()
        try:
            with engine.connect() as connection:
                return migrate.state(connection)
        finally:
            engine.dispose()

    def upgrade_schema(self) -> tuple[str | None, str]:
        """Run the pending migrations (`clustermatch db upgrade`); returns (before, after)."""
        engine = self._new_engine()
        try:
            return migrate.upgrade(engine)
        finally:
            engine.dispose()

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction. On PostgreSQL it first takes the store's write lock, so chunk ids
        commit in the order they are allocated (`service.store.pg` says why that matters); on
        SQLite it is BEGIN IMMEDIATE, so a second writer waits at the start (busy_timeout)
        instead of failing half-way when it first writes."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(clustermatch_write=True)
            with conn.begin():
                if self.is_postgresql:
                    if self._write_key is None:
                        self._write_key = pg.advisory_key(conn, "write")
                    pg.lock_writes(conn, self._write_key)
                yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A read that sees one snapshot across all its statements: an actor and its documents
        read by two SELECTs must not straddle a concurrent delete (PostgreSQL: REPEATABLE READ;
        SQLite: one BEGIN, see `_sqlite_transactions`)."""
        with self.engine.connect() as conn:
            if self.is_postgresql:
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            yield conn

    # --- writes ----------------------------------------------------------------------------

    def upsert_actors(
        self,
        items: Sequence[tuple[Actor, Sequence[ChunkDraft]]],
        owner: Owner = LOCAL,
        who: Who | None = None,
    ) -> list[bool]:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        # One statement per table for the whole batch, not per actor: a bulk import costs a dozen
        # round trips, which matters on PostgreSQL. An id written twice in one batch ends as its
        # last version, as if the writes had run one after the other.
        last = {actor.id: i for i, (actor, _) in enumerate(items)}
        ids = list(last)
        rows: dict[sa.Table, list[dict[str, Any]]] = {t: [] for t in _ACTOR_TABLES}
        for i, (actor, drafts) in enumerate(items):
            if last[actor.id] == i:
                for table, found in _actor_rows(actor, drafts, now, owner).items():
                    rows[table].extend(found)
        with self._write() as conn:
            replaced = self._hashes_of(conn, ids)
            stored = self._delete(conn, ids)
            for table in _ACTOR_TABLES:  # parents first
                if rows[table]:
                    conn.execute(table.insert(), rows[table])
            self._drop_unused_vectors(conn, replaced)  # a rewritten text's vector goes with it
            failpoint("store-write")
            self._count_changes(conn, len(items))
            created = []
            for actor, _ in items:
                created.append(actor.id not in stored)
                stored.add(actor.id)
            if who is not None:  # audited in the write's own transaction
                events = [
                    AuditEvent("actor.create" if new else "actor.replace", who, actor.id, at=now)
                    for (actor, _), new in zip(items, created, strict=True)
                ]
                self._append_audit(conn, events)
        return created

    def delete_actor(self, actor_id: str, who: Who | None = None) -> bool:
        """Erase the actor: its rows, and the cached vectors of its texts that no other chunk
        uses, in one transaction; `secure_delete` zeroes the freed bytes (SQLite). The change
        count at the latest erasure is recorded, so a rebuild knows which older generations
        still hold erased vectors (see `last_erasure`). With `who`, the deletion is audited in
        the same transaction."""
        with self._write() as conn:
            hashes = self._hashes_of(conn, [actor_id])
            deleted = bool(self._delete(conn, [actor_id]))
            if deleted:
                self._drop_unused_vectors(conn, hashes)
                self._count_changes(conn, 1)
                self._set_meta(conn, "erased_at", str(self._meta_int(conn, "changes")))
                if who is not None:
                    self._append_audit(conn, [AuditEvent("actor.delete", who, actor_id)])
            return deleted

    def last_erasure(self) -> int:
        with self._read() as conn:
            return self._meta_int(conn, "erased_at")

    @staticmethod
    def _hashes_of(conn: Connection, actor_ids: Sequence[str]) -> set[str]:
        hashes: set[str] = set()
        for part in _chunked(actor_ids):
            query = sa.select(chunks.c.content_hash).where(chunks.c.actor_id.in_(part))
            hashes.update(conn.execute(query).scalars())
        return hashes

    @staticmethod
    def _meta_int(conn: Connection, key: str) -> int:
        value = conn.execute(sa.select(store_meta.c.value).where(store_meta.c.key == key)).scalar()
        return int(value or 0)

    @staticmethod
    def _set_meta(conn: Connection, key: str, value: str) -> None:
        updated = conn.execute(
            store_meta.update().where(store_meta.c.key == key).values(value=value)
        )
        if updated.rowcount == 0:
            conn.execute(store_meta.insert().values(key=key, value=value))

    @staticmethod
    def _drop_unused_vectors(conn: Connection, hashes: Collection[str]) -> None:
        """Cached vectors (of every model) of `hashes` that no stored chunk uses any more."""
        unused = ~sa.exists().where(chunks.c.content_hash == embeddings.c.content_hash)
        for part in _chunked(sorted(hashes)):
            conn.execute(embeddings.delete().where(embeddings.c.content_hash.in_(part), unused))

    def drop_orphan_vectors(self) -> int:
        """Remove every cached vector whose text no stored chunk holds (e.g. cached by a write
        that raced a delete, or by a rebuild that read the chunk just before it was erased)."""
        unused = ~sa.exists().where(chunks.c.content_hash == embeddings.c.content_hash)
        with self._write() as conn:
            return int(conn.execute(embeddings.delete().where(unused)).rowcount or 0)

    def compact(self) -> None:
        """Let deleted bytes leave the files: SQLite keeps the pages a delete rewrote in its
        write-ahead log until a checkpoint copies them into the database; TRUNCATE then empties
        the log file. (PostgreSQL: a VACUUM, which the operator's maintenance runs.)"""
        if self.is_postgresql:
            return
        # On the raw connection, outside any transaction (a checkpoint cannot pass an open
        # snapshot). A TRUNCATE checkpoint holds new writers back while it waits for readers:
        # wait briefly (not the usual 30 s), and leave the rest to the next one.
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(f"PRAGMA busy_timeout={CHECKPOINT_WAIT_MS}")
            busy, _, _ = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cursor.close()
        finally:
            raw.close()
        if busy:
            log.warning("WAL checkpoint incomplete: readers held it; the next one completes it")

    @staticmethod
    def _count_changes(conn: Connection, n: int) -> None:
        """A monotonic count of actor writes and deletes: a generation records the count it saw,
        so `changes() - manifest.changes` is what the served index does not know yet."""
        updated = conn.execute(
            store_meta.update()
            .where(store_meta.c.key == "changes")
            .values(value=sa.cast(sa.cast(store_meta.c.value, sa.Integer) + n, sa.Text))
        )
        if updated.rowcount == 0:
            conn.execute(store_meta.insert().values(key="changes", value=str(n)))

    def changes(self) -> int:
        with self._read() as conn:
            return self._meta_int(conn, "changes")

    def get_owner(self, actor_id: str) -> Owner | None:
        with self._read() as conn:
            row = conn.execute(
                sa.select(actors.c.tenant, actors.c.networks).where(actors.c.id == actor_id)
            ).first()
        return None if row is None else Owner(row.tenant, tuple(json.loads(row.networks)))

    @staticmethod
    def _delete(conn: Connection, actor_ids: Sequence[str]) -> set[str]:
        """Delete actors with everything they own (ON DELETE CASCADE, which both backends enforce:
        SQLite through `PRAGMA foreign_keys=ON` on every connection); returns the ids that were
        there. One statement per 900 ids."""
        deleted: set[str] = set()
        for part in _chunked(actor_ids):
            statement = actors.delete().where(actors.c.id.in_(part)).returning(actors.c.id)
            deleted.update(conn.execute(statement).scalars())
        return deleted

    # --- reads -----------------------------------------------------------------------------

    def get_actor(self, actor_id: str) -> Actor | None:
        with self._read() as conn:
            row = conn.execute(sa.select(actors).where(actors.c.id == actor_id)).mappings().first()
            if row is None:
                return None
            sectors = self._codes(conn, actor_sectors, actor_sectors.c.code, [actor_id])
            clusters = self._codes(conn, actor_clusters, actor_clusters.c.cluster_id, [actor_id])
            partners = self._codes(conn, actor_partners, actor_partners.c.partner_id, [actor_id])
            docs = conn.execute(
                sa.select(documents)
                .where(documents.c.actor_id == actor_id)
                .order_by(documents.c.ordinal)
            ).mappings()
            return Actor.model_validate(
                {
                    "id": row["id"],
                    "name": row["name"],
                    "kind": row["kind"],
                    "country": row["country"] or None,
                    "region": row["region"],
                    "url": row["url"],
                    "sectors": sectors.get(actor_id, ()),
                    "clusters": clusters.get(actor_id, ()),
                    "partners": partners.get(actor_id, ()),
                    "documents": [
                        Document(
                            id=d["id"],
                            kind=d["kind"],
                            text=d["text"],
                            title=d["title"],
                            language=d["language"],
                            visibility=d["visibility"],
                            intent=d["intent"],
                            codes=tuple(json.loads(d["codes"])),
                        )
                        for d in docs
                    ],
                }
            )

    @staticmethod
    def _codes(
        conn: Connection, table: sa.Table, column: sa.Column[Any], actor_ids: Sequence[str]
    ) -> dict[str, tuple[str, ...]]:
        found: dict[str, list[str]] = {}
        for part in _chunked(actor_ids):
            rows = conn.execute(
                sa.select(table.c.actor_id, column)
                .where(table.c.actor_id.in_(part))
                .order_by(table.c.actor_id, table.c.ordinal)
            )
            for actor_id, code in rows:
                found.setdefault(actor_id, []).append(code)
        return {k: tuple(v) for k, v in found.items()}

    def actor_summaries(self, actor_ids: Sequence[str]) -> dict[str, ActorSummary]:
        ids = list(dict.fromkeys(actor_ids))
        with self._read() as conn:
            return self._summaries(conn, ids)

    def actor_names(self) -> list[tuple[str, str]]:
        with self._read() as conn:
            return [(r.id, r.name) for r in conn.execute(sa.select(actors.c.id, actors.c.name))]

    @cached_property
    def _names_query(self) -> HotSelect:
        return HotSelect(
            sa.select(actors.c.id, actors.c.name).where(
                actors.c.id.in_(sa.bindparam("ids", expanding=True))
            ),
            "ids",
        )

    def names_of(self, actor_ids: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for part in _chunked(list(dict.fromkeys(actor_ids))):
            out.update((row[0], row[1]) for row in self._names_query.rows(self.engine, part))
        return out

    def _summaries(self, conn: Connection, ids: Sequence[str]) -> dict[str, ActorSummary]:
        sectors = self._codes(conn, actor_sectors, actor_sectors.c.code, ids)
        clusters = self._codes(conn, actor_clusters, actor_clusters.c.cluster_id, ids)
        out: dict[str, ActorSummary] = {}
        for part in _chunked(ids):
            rows = conn.execute(
                sa.select(
                    actors.c.id,
                    actors.c.name,
                    actors.c.kind,
                    actors.c.country,
                    actors.c.region,
                    actors.c.tenant,
                    actors.c.networks,
                ).where(actors.c.id.in_(part))
            )
            for row in rows:
                out[row.id] = ActorSummary(
                    id=row.id,
                    name=row.name,
                    kind=row.kind,
                    country=row.country or None,
                    region=row.region,
                    sectors=sectors.get(row.id, ()),
                    clusters=clusters.get(row.id, ()),
                    owner=Owner(row.tenant, tuple(json.loads(row.networks))),
                )
        return out

    def list_actors(
        self,
        limit: int,
        after: str | None = None,
        countries: Sequence[str] = (),
        kinds: Sequence[str] = (),
        clusters: Sequence[str] = (),
    ) -> ActorPage:
        query = sa.select(actors.c.id)
        if countries:
            query = query.where(actors.c.country.in_(countries))
        if kinds:
            query = query.where(actors.c.kind.in_(kinds))
        if clusters:
            query = query.where(
                actors.c.id.in_(
                    sa.select(actor_clusters.c.actor_id).where(
                        actor_clusters.c.cluster_id.in_(clusters)
                    )
                )
            )
        with self._read() as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar()
            if after is not None:
                query = query.where(actors.c.id > after)
            ids = list(conn.execute(query.order_by(actors.c.id).limit(limit + 1)).scalars())
            page = ids[:limit]
            summaries = self._summaries(conn, page)
        return ActorPage(
            actors=[summaries[i] for i in page],
            next_cursor=page[-1] if len(ids) > limit else None,
            total=int(total or 0),
        )

    _CHUNK_COLUMNS = (
        chunks.c.id,
        chunks.c.actor_id,
        chunks.c.document_id,
        documents.c.kind,
        documents.c.visibility,
        chunks.c.ordinal,
        chunks.c.text,
        chunks.c.content_hash,
        chunks.c.language,
        documents.c.intent,
    )

    @classmethod
    def _chunk_query(cls) -> sa.Select[Any]:
        return sa.select(*cls._CHUNK_COLUMNS).join(
            documents,
            sa.and_(
                documents.c.actor_id == chunks.c.actor_id, documents.c.id == chunks.c.document_id
            ),
        )

    @staticmethod
    def _chunk(row: Any) -> StoredChunk:
        return StoredChunk(*row)

    def chunks_by_ids(self, chunk_ids: Sequence[int]) -> dict[int, StoredChunk]:
        out: dict[int, StoredChunk] = {}
        with self._read() as conn:
            for part in _chunked([int(i) for i in chunk_ids]):
                for row in conn.execute(self._chunk_query().where(chunks.c.id.in_(part))):
                    out[row[0]] = self._chunk(row)
        return out

    @cached_property
    def _page_query(self) -> HotSelect:
        """One statement per page (`service.store.hot`: compiled once, run on the DB-API)."""
        return HotSelect(
            self._chunk_query()
            .add_columns(actors.c.name)
            .join(actors, actors.c.id == chunks.c.actor_id)
            .where(chunks.c.id.in_(sa.bindparam("ids", expanding=True))),
            "ids",
        )

    def page(self, chunk_ids: Sequence[int]) -> tuple[dict[int, StoredChunk], dict[str, str]]:
        found: dict[int, StoredChunk] = {}
        names: dict[str, str] = {}
        # One statement for a page (up to 900 chunks; each slice beyond is its own snapshot,
        # which is fine: every chunk proves its own actor's version).
        for part in _chunked(list(dict.fromkeys(int(i) for i in chunk_ids))):
            for row in self._page_query.rows(self.engine, part):
                found[row[0]] = StoredChunk(*row[:-1])
                names[row[1]] = row[-1]
        return found, names

    def chunks_of_actors(self, actor_ids: Sequence[str]) -> list[StoredChunk]:
        out: list[StoredChunk] = []
        with self._read() as conn:
            for part in _chunked(list(actor_ids)):
                query = self._chunk_query().where(chunks.c.actor_id.in_(part))
                out.extend(self._chunk(r) for r in conn.execute(query.order_by(chunks.c.id)))
        return out

    def iter_chunks(self, batch_size: int = 2_000, after: int = 0) -> Iterator[list[StoredChunk]]:
        """Chunks with id > `after` in id order, in batches, each read in its own transaction.
        A short batch is the last (no closing empty read)."""
        last = after
        while True:
            with self._read() as conn:
                query = self._chunk_query().where(chunks.c.id > last).order_by(chunks.c.id)
                batch = [self._chunk(r) for r in conn.execute(query.limit(batch_size))]
            if batch:
                yield batch
            if len(batch) < batch_size:
                return
            last = batch[-1].id

    def fresh_chunks(self, after: int, model_id: str) -> FreshChunks:
        with self._read() as conn:
            query = self._chunk_query().where(chunks.c.id > after).order_by(chunks.c.id)
            found = [self._chunk(r) for r in conn.execute(query)]
            if not found:
                return FreshChunks([], {}, {})
            vectors = self._cached(conn, [c.content_hash for c in found], model_id)
            summaries = self._summaries(conn, list(dict.fromkeys(c.actor_id for c in found)))
        return FreshChunks(found, vectors, summaries)

    def select_chunks(self, actor_filter: ActorFilter) -> ChunkSelection:
        if actor_filter.is_empty:
            return ChunkSelection()
        conditions = self._positive_conditions(actor_filter)
        exclusions = self._exclusion_conditions(actor_filter)
        base = sa.select(chunks.c.id).join(actors, actors.c.id == chunks.c.actor_id)
        if actor_filter.exclude_needs:
            base = base.join(
                documents,
                sa.and_(
                    documents.c.actor_id == chunks.c.actor_id,
                    documents.c.id == chunks.c.document_id,
                ),
            )
            exclusions.append(sa.func.coalesce(documents.c.intent, "") == "need")
        with self._read() as conn:
            if conditions:
                # An allow-list: exact, and FAISS then never returns a filtered-out chunk.
                query = base.where(*conditions, *(sa.not_(e) for e in exclusions))
                ids = np.fromiter(conn.execute(query).scalars(), dtype=np.int64)
                return ChunkSelection(allow=ids)
            if not exclusions:  # e.g. exclude_same region for a query of unknown region
                return ChunkSelection()
            query = base.where(sa.or_(*exclusions))
            ids = np.fromiter(conn.execute(query).scalars(), dtype=np.int64)
            return ChunkSelection(deny=ids)

    @staticmethod
    def _positive_conditions(f: ActorFilter) -> list[sa.ColumnElement[bool]]:
        conditions: list[sa.ColumnElement[bool]] = []
        if f.countries:
            conditions.append(actors.c.country.in_(f.countries))
        if f.kinds:
            conditions.append(actors.c.kind.in_(f.kinds))
        if f.regions:
            conditions.append(sa.or_(*(actors.c.region.startswith(r) for r in f.regions)))
        if f.sectors:
            conditions.append(
                actors.c.id.in_(
                    sa.select(actor_sectors.c.actor_id).where(actor_sectors.c.code.in_(f.sectors))
                )
            )
        if f.clusters:
            conditions.append(
                actors.c.id.in_(
                    sa.select(actor_clusters.c.actor_id).where(
                        actor_clusters.c.cluster_id.in_(f.clusters)
                    )
                )
            )
        return conditions

    @staticmethod
    def _exclusion_conditions(f: ActorFilter) -> list[sa.ColumnElement[bool]]:
        out: list[sa.ColumnElement[bool]] = []
        if f.exclude_actor_ids:
            out.append(actors.c.id.in_(sorted(f.exclude_actor_ids)))
        ref = f.reference
        if ref is None:
            return out
        if "country" in f.exclude_same and ref.country:
            out.append(actors.c.country == ref.country)
        if "kind" in f.exclude_same:
            out.append(actors.c.kind == ref.kind)
        if "region" in f.exclude_same and ref.region:
            # Same region at the coarser of the two NUTS levels: AT3 and AT31 share a region.
            # An unknown region shares none (and must not turn the condition into NULL, which
            # `NOT` keeps NULL and would drop the actor from an allow-list).
            out.append(
                sa.and_(
                    actors.c.region.is_not(None),
                    sa.or_(
                        actors.c.region.startswith(ref.region),
                        sa.literal(ref.region).startswith(actors.c.region),
                    ),
                )
            )
        if "sector" in f.exclude_same and ref.sectors:
            out.append(
                actors.c.id.in_(
                    sa.select(actor_sectors.c.actor_id).where(actor_sectors.c.code.in_(ref.sectors))
                )
            )
        if "cluster" in f.exclude_same and ref.clusters:
            out.append(
                actors.c.id.in_(
                    sa.select(actor_clusters.c.actor_id).where(
                        actor_clusters.c.cluster_id.in_(ref.clusters)
                    )
                )
            )
        return out

    # --- feedback --------------------------------------------------------------------------

    def put_feedback(self, item: Feedback) -> Feedback:
        """Store `item` as the tenant's current label for that suggestion (replacing an older
        one); returns it with its time stamp."""
        stored = replace(item, updated_at=datetime.now(UTC).isoformat(timespec="seconds"))
        key = (
            (feedback.c.tenant == item.tenant)
            & (feedback.c.context == item.context)
            & (feedback.c.actor_id == item.actor_id)
        )
        with self._write() as conn:
            conn.execute(feedback.delete().where(key))
            conn.execute(
                feedback.insert().values(
                    tenant=stored.tenant,
                    context=stored.context,
                    actor_id=stored.actor_id,
                    for_actor=stored.for_actor,
                    query=stored.query,
                    label=stored.label.value,
                    note=stored.note,
                    updated_at=stored.updated_at,
                )
            )
        return stored

    def list_feedback(
        self,
        tenant: str | None = None,
        context: str | None = None,
        labels: Collection[str] = (),
    ) -> list[Feedback]:
        query = sa.select(feedback)
        if tenant is not None:
            query = query.where(feedback.c.tenant == tenant)
        if context is not None:
            query = query.where(feedback.c.context == context)
        if labels:
            query = query.where(feedback.c.label.in_(sorted(labels)))
        order = (feedback.c.tenant, feedback.c.updated_at, feedback.c.context, feedback.c.actor_id)
        with self._read() as conn:
            rows = conn.execute(query.order_by(*order)).mappings().all()
        return [
            Feedback(
                tenant=r["tenant"],
                actor_id=r["actor_id"],
                label=Label(r["label"]),
                for_actor=r["for_actor"],
                query=r["query"],
                note=r["note"],
                updated_at=r["updated_at"],
            )
            for r in rows
        ]

    def feedback_actors(
        self, tenant: str | None, context: str | None, labels: Collection[str]
    ) -> set[str]:
        if not labels:
            return set()
        key = (tenant is None, context is None)
        hot = self._feedback_queries.get(key)
        if hot is None:
            query = sa.select(feedback.c.actor_id).where(
                feedback.c.label.in_(sa.bindparam("labels", expanding=True))
            )
            scalars: tuple[str, ...] = ()
            if tenant is not None:
                query = query.where(feedback.c.tenant == sa.bindparam("tenant"))
                scalars += ("tenant",)
            if context is not None:
                query = query.where(feedback.c.context == sa.bindparam("context"))
                scalars += ("context",)
            hot = self._feedback_queries[key] = HotSelect(query, "labels", scalars)
        given = {"tenant": tenant, "context": context}
        rows = hot.rows(self.engine, sorted(labels), **{k: given[k] for k in hot.scalars})
        return {row[0] for row in rows}

    def feedback_counts(self, tenant: str | None = None) -> list[FeedbackCounts]:
        query = sa.select(feedback.c.tenant, feedback.c.label, sa.func.count()).group_by(
            feedback.c.tenant, feedback.c.label
        )
        if tenant is not None:
            query = query.where(feedback.c.tenant == tenant)
        counts: dict[str, dict[str, int]] = {}
        with self._read() as conn:
            for row_tenant, label, n in conn.execute(query.order_by(feedback.c.tenant)):
                counts.setdefault(row_tenant, {})[label] = int(n)
        return [FeedbackCounts(t, labels) for t, labels in counts.items()]

    def partners_of(self, actor_id: str) -> tuple[str, ...]:
        with self._read() as conn:
            found = self._codes(conn, actor_partners, actor_partners.c.partner_id, [actor_id])
        return found.get(actor_id, ())

    def partners_of_actors(self, actor_ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
        with self._read() as conn:
            return self._codes(conn, actor_partners, actor_partners.c.partner_id, actor_ids)

    # --- audit log -------------------------------------------------------------------------

    def record_audit(self, events: Sequence[AuditEvent]) -> None:
        if events:
            with self.engine.begin() as conn:
                self._append_audit(conn, events)

    @staticmethod
    def _append_audit(conn: Connection, events: Sequence[AuditEvent]) -> None:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        conn.execute(
            audit_log.insert(),
            [
                {
                    "at": e.at or now,
                    "key_id": e.who.key_id,
                    "tenant": e.who.tenant,
                    "origin": e.who.origin,
                    "action": e.action,
                    "target": e.target,
                    "count": e.count,
                }
                for e in events
            ],
        )

    def audit_events(self, query: AuditQuery) -> list[AuditEvent]:
        """Events in order of their id (the order they were appended), after `after_id`."""
        select = sa.select(audit_log).where(audit_log.c.id > query.after_id)
        for column, value in (
            (audit_log.c.tenant, query.tenant),
            (audit_log.c.key_id, query.key_id),
            (audit_log.c.action, query.action),
        ):
            if value is not None:
                select = select.where(column == value)
        if query.since is not None:
            select = select.where(audit_log.c.at >= query.since)
        if query.until is not None:
            select = select.where(audit_log.c.at < query.until)
        select = select.order_by(audit_log.c.id).limit(query.limit)
        with self.engine.connect() as conn:
            rows = conn.execute(select).mappings().all()
        return [
            AuditEvent(
                action=r["action"],
                who=Who(r["key_id"], r["tenant"], r["origin"]),
                target=r["target"],
                count=r["count"],
                at=r["at"],
                id=r["id"],
            )
            for r in rows
        ]

    def prune_audit(self, before: str) -> int:
        """Delete the events older than `before` (ISO 8601 UTC); returns how many."""
        with self.engine.begin() as conn:
            return int(conn.execute(audit_log.delete().where(audit_log.c.at < before)).rowcount)

    # --- embedding cache -------------------------------------------------------------------

    def cached_vectors(
        self, content_hashes: Sequence[str], model_id: str
    ) -> dict[str, npt.NDArray[np.float32]]:
        with self._read() as conn:
            return self._cached(conn, content_hashes, model_id)

    @staticmethod
    def _cached(
        conn: Connection, content_hashes: Sequence[str], model_id: str
    ) -> dict[str, npt.NDArray[np.float32]]:
        out: dict[str, npt.NDArray[np.float32]] = {}
        for part in _chunked(list(dict.fromkeys(content_hashes))):
            rows = conn.execute(
                sa.select(embeddings.c.content_hash, embeddings.c.vector).where(
                    embeddings.c.model_id == model_id, embeddings.c.content_hash.in_(part)
                )
            )
            for content_hash, blob in rows:
                out[content_hash] = np.frombuffer(blob, dtype="<f4").astype(np.float32)
        return out

    def put_vectors(self, model_id: str, vectors: Mapping[str, npt.NDArray[np.float32]]) -> None:
        """Cache vectors by content hash. Several processes embed the same new text at once (every
        replica embeds what another wrote): a hash already cached is kept, never an error."""
        if not vectors:
            return
        rows = [
            {"content_hash": h, "model_id": model_id, "vector": np.asarray(v, "<f4").tobytes()}
            for h, v in vectors.items()
        ]
        insert = (
            postgresql.insert(embeddings) if self.is_postgresql else sqlite.insert(embeddings)
        ).on_conflict_do_nothing(index_elements=["content_hash", "model_id"])
        with self.engine.begin() as conn:
            for part in _chunked(rows, 500):
                conn.execute(insert, list(part))

    # --- bookkeeping -----------------------------------------------------------------------

    def counts(self) -> StoreCounts:
        with self._read() as conn:

            def count(table: sa.Table) -> int:
                return int(
                    conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() or 0
                )

            return StoreCounts(
                actors=count(actors), documents=count(documents), chunks=count(chunks)
            )

    def max_chunk_id(self) -> int:
        with self._read() as conn:
            return int(conn.execute(sa.select(sa.func.max(chunks.c.id))).scalar() or 0)


class StorePointer:
    """`GenerationPointer` as a row of the store: with a PostgreSQL store every replica, on any
    host, reads the same truth. Written only by a rebuild (under the rebuild lock) or a rollback."""

    NAME = "current"

    def __init__(self, store: SqlProfileStore) -> None:
        self._store = store

    def read(self) -> str | None:
        with self._store._read() as conn:
            found = conn.execute(
                sa.select(generation_pointer.c.generation).where(
                    generation_pointer.c.name == self.NAME
                )
            ).scalar()
        return str(found) if found else None

    def write(self, generation: str) -> None:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self._store._write() as conn:
            updated = conn.execute(
                generation_pointer.update()
                .where(generation_pointer.c.name == self.NAME)
                .values(generation=generation, updated_at=now)
            )
            if updated.rowcount == 0:
                conn.execute(
                    generation_pointer.insert().values(
                        name=self.NAME, generation=generation, updated_at=now
                    )
                )
