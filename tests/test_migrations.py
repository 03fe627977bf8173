"""Schema migrations (Alembic), on SQLite and PostgreSQL: the newest revision is exactly the
tables the code uses; an empty database gets it on first use; an older one is refused with the
command that upgrades it, and `clustermatch db upgrade` keeps its rows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from service.cli import main
from service.config import Settings
from service.embedding.fake import FakeEmbedder
from service.errors import StoreSchemaError
from service.runtime import Runtime
from service.store import SqlProfileStore, migrate
from service.store.sql import metadata
from tests.conftest import unused_port
from tests.factories import make_actor
from tests.test_store import put


@pytest.fixture
def engine(store_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(SqlProfileStore(store_url).url)
    yield engine
    engine.dispose()


def upgrade_to(engine: sa.Engine, revision: str) -> None:
    with engine.begin() as conn:
        command.upgrade(migrate._config(conn), revision)


def test_the_newest_revision_is_the_schema_the_code_uses(engine: sa.Engine) -> None:
    upgrade_to(engine, "head")
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)
    assert differences == [], "a table changed without a migration (service/store/migrations)"


def test_an_empty_database_gets_the_newest_schema_on_first_use(store_url: str) -> None:
    store = SqlProfileStore(store_url)
    assert store.schema_state().empty
    put(store, make_actor("a", ["x"]))
    state = store.schema_state()
    assert state.up_to_date and state.current == migrate.head()
    store.close()


def test_an_older_schema_is_refused_with_the_command_that_fixes_it(
    store_url: str, engine: sa.Engine
) -> None:
    upgrade_to(engine, "0001")
    store = SqlProfileStore(store_url)
    with pytest.raises(StoreSchemaError, match="clustermatch db upgrade"):
        store.counts()
    assert store.upgrade_schema() == ("0001", migrate.head())
    assert store.counts().actors == 0
    store.close()


def test_a_store_from_before_migrations_upgrades_and_keeps_its_rows(
    store_url: str, engine: sa.Engine
) -> None:
    # What a release before migrations left: the tables, a schema_version row, no alembic_version.
    upgrade_to(engine, "0001")
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE alembic_version"))
        conn.execute(sa.text("INSERT INTO store_meta (key, value) VALUES ('schema_version', '1')"))
        conn.execute(
            sa.text(
                "INSERT INTO actors (id, name, kind, country, region, url, tenant, networks, "
                "updated_at) VALUES ('old', 'Old Actor', 'company', 'AT', NULL, NULL, '', '[]', "
                "'2026-01-01T00:00:00+00:00')"
            )
        )
    store = SqlProfileStore(store_url)
    with pytest.raises(StoreSchemaError, match=r"pre-migrations.*clustermatch db upgrade"):
        store.get_actor("old")
    before, after = store.upgrade_schema()
    assert before == migrate.LEGACY and after == migrate.head()
    assert store.actor_summaries(["old"])["old"].name == "Old Actor"
    store.close()


def test_a_schema_from_a_newer_release_is_refused(store_url: str, engine: sa.Engine) -> None:
    upgrade_to(engine, "head")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StoreSchemaError, match="newer release"):
        SqlProfileStore(store_url).counts()


def test_db_status_and_upgrade_on_the_command_line(
    store_url: str, engine: sa.Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    upgrade_to(engine, "0001")
    settings = Settings(data_dir=tmp_path / "data", database_url=store_url, port=unused_port())
    assert main(["db", "status", "--json"], Runtime(settings, FakeEmbedder())) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["revision"] == "0001" and not status["up_to_date"]
    assert "clustermatch db upgrade" in status["action"]
    # The server refuses to start on it, and says what to run.
    assert main(["serve", "--workers", "1"], Runtime(settings, FakeEmbedder())) == 1
    assert "clustermatch db upgrade" in capsys.readouterr().err
    assert main(["db", "upgrade"], Runtime(settings, FakeEmbedder())) == 0
    assert f"0001 -> {migrate.head()}" in capsys.readouterr().out
    assert main(["db", "status", "--json"], Runtime(settings, FakeEmbedder())) == 0
    assert json.loads(capsys.readouterr().out)["up_to_date"] is True
