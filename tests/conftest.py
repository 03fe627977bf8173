"""Shared fixtures: a runtime on a temporary data directory with the fake embedder.

Most tests need no model: `FakeEmbedder` hashes words into vectors, so texts sharing words are
similar. Tests marked `slow` load the real packaged model (and still run in `make test`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from service.config import Settings
from service.embedding.fake import FakeEmbedder
from service.runtime import Runtime


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # A port nothing listens on: the CLI's `--server auto` must not find a developer's server.
    return Settings(data_dir=tmp_path / "data", port=unused_port())


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime(settings, embedder=FakeEmbedder())
    yield rt
    rt.close()


# --- PostgreSQL -------------------------------------------------------------------------------
# Tests that need PostgreSQL get a schema of their own in the `test` database (dropped after the
# test). Unreachable PostgreSQL skips them locally; `.ci/run` sets CLUSTERMATCH_REQUIRE_POSTGRES=1,
# which turns the skip into a failure.
POSTGRES_URL = os.environ.get(
    "CLUSTERMATCH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _require_postgres() -> None:
    """Return if PostgreSQL answers; else skip the test (fail it under CI's requirement)."""
    import sqlalchemy as sa

    engine = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:
        message = (
            f"PostgreSQL is not reachable at {POSTGRES_URL} ({type(exc).__name__}); start it "
            f"or point CLUSTERMATCH_TEST_POSTGRES_URL at one"
        )
        if os.environ.get("CLUSTERMATCH_REQUIRE_POSTGRES"):
            pytest.fail(message + " (CLUSTERMATCH_REQUIRE_POSTGRES is set)")
        pytest.skip(message)
    finally:
        engine.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A SQLAlchemy URL whose connections live in a fresh schema (search_path), dropped after."""
    from service.store.pg import scratch_schema

    _require_postgres()
    with scratch_schema(POSTGRES_URL, "cm_test") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The store contract runs on both backends."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite3'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def backend_runtime(tmp_path: Path, store_url: str) -> Iterator[Runtime]:
    """A fake-embedder runtime on each store backend."""
    settings = Settings(data_dir=tmp_path / "data", port=unused_port(), database_url=store_url)
    rt = Runtime(settings, embedder=FakeEmbedder())
    yield rt
    rt.close()
