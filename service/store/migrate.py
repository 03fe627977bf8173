"""The store's schema, versioned by Alembic revisions in `service/store/migrations/versions/`.

- An empty database is brought to the newest revision on first use (a fresh `make run`, a new
  PostgreSQL database): nothing to migrate, so nothing to ask.
- A database at an older revision is refused with the command that upgrades it
  (`clustermatch db upgrade`): a migration may rewrite tables, which an operator should start
  on purpose (after a backup), never a web worker as a side effect of its first request.
- A database at a revision this release does not know (written by a newer release) is refused.

A store from before migrations (a `schema_version` row of 1 and no `alembic_version` table) counts
as older than revision 0001, whose tables are created only where missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from service.errors import StoreSchemaError
from service.locks import waiting

MIGRATIONS = Path(__file__).parent / "migrations"
LEGACY = "pre-migrations (schema_version 1)"
UPGRADE_HINT = "run `clustermatch db upgrade` (after a backup: `clustermatch backup DIR`)"


@dataclass(frozen=True)
class SchemaState:
    current: str | None
    """The database's revision; None for an empty database, LEGACY for a pre-migrations store."""
    head: str

    @property
    def empty(self) -> bool:
        return self.current is None

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head() -> str:
    found = ScriptDirectory.from_config(_config()).get_current_head()
    assert found is not None, "no migrations are packaged"
    return found


def known_revisions() -> set[str]:
    return {s.revision for s in ScriptDirectory.from_config(_config()).walk_revisions()}


def state(connection: Connection) -> SchemaState:
    current = MigrationContext.configure(connection).get_current_revision()
    if current is None and sa.inspect(connection).has_table("actors"):
        current = LEGACY
    return SchemaState(current=current, head=head())


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the database to the newest revision; returns (before, after). Serialised across
    processes, so two starting workers never run the same migration twice."""
    with _serialised(engine), engine.begin() as connection:
        before = state(connection).current
        command.upgrade(_config(connection), "head")
        return before, head()


def ensure(engine: Engine) -> SchemaState:
    """Create the schema in an empty database; refuse an older or unknown one."""
    with engine.connect() as connection:
        found = state(connection)
    if found.up_to_date:
        return found
    if found.empty:
        _, after = upgrade(engine)
        return SchemaState(current=after, head=found.head)
    if found.current not in known_revisions() and found.current != LEGACY:
        raise StoreSchemaError(
            f"the store is at schema revision {found.current}, which this release of clustermatch "
            f"does not know (its newest is {found.head}): it was migrated by a newer release; "
            f"run that release, or restore a backup taken before the upgrade"
        )
    raise StoreSchemaError(
        f"the store is at schema revision {found.current}, this release needs {found.head}: "
        f"{UPGRADE_HINT}"
    )


@contextmanager
def _serialised(engine: Engine) -> Iterator[None]:
    """One migration at a time: a PostgreSQL advisory lock (seen by every host), or a lock file
    beside a SQLite database."""
    if engine.dialect.name == "postgresql":
        from service.store.pg import advisory_key

        with engine.connect() as lock_connection:
            key = advisory_key(lock_connection, "migrate")
            lock_connection.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                lock_connection.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                lock_connection.commit()
        return
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        with waiting(Path(database).with_suffix(".migrate.lock")):
            yield
        return
    yield
