"""Several replicas, one truth (PostgreSQL store): the rebuild lock and the CURRENT pointer live in
the database, so exactly one rebuild runs on any host, every replica converges on what a third
process publishes, a write on one replica is matchable on another within the watch interval, and
a delete on one is never returned by another after the DELETE returned."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.config import Settings
from service.embedding.fake import FakeEmbedder
from service.errors import Conflict
from service.runtime import Runtime
from service.store.pg import AdvisoryRebuildLock
from tests.conftest import unused_port
from tests.factories import actor_data, make_actor
from tests.servers import WIND, run_cli, running, seed_wind_store


def runtime_on(url: str, data_dir: Path) -> Runtime:
    settings = Settings(data_dir=data_dir, database_url=url, port=unused_port())
    return Runtime(settings, embedder=FakeEmbedder())


def test_one_rebuild_at_a_time_on_any_host_and_none_left_by_a_killed_one(
    postgres_url: str, tmp_path: Path
) -> None:
    # Two runtimes with separate generation folders stand for two hosts: no file lock is shared.
    first, second = (
        runtime_on(postgres_url, tmp_path / "a"),
        runtime_on(postgres_url, tmp_path / "b"),
    )
    first.ingestor.upsert([make_actor("a", ["offshore wind"])])
    assert isinstance(first.rebuild_lock, AdvisoryRebuildLock)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from service.store import SqlProfileStore\n"
            "from service.store.pg import AdvisoryRebuildLock\n"
            "with AdvisoryRebuildLock(SqlProfileStore(sys.argv[1])).hold('a rebuild'):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(600)\n",
            postgres_url,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        for runtime in (first, second):
            assert runtime.rebuild_lock.held()
            with pytest.raises(Conflict, match="already running"):
                runtime.reindexer.run()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    deadline = time.monotonic() + 10  # PostgreSQL notices the dead connection at once, or soon
    while second.rebuild_lock.held():
        assert time.monotonic() < deadline, "a killed rebuild left its lock behind"
        time.sleep(0.1)
    report = second.reindexer.run()
    # The pointer is a row: the runtime on the other "host" serves what this one published.
    assert first.generations.current_id() == report.generation
    assert not (tmp_path / "b" / "CURRENT").exists()
    first.close()
    second.close()


@pytest.fixture
def replicas(postgres_url: str, tmp_path: Path) -> Iterator[tuple[str, str, dict[str, str]]]:
    env = os.environ | {
        "CLUSTERMATCH_DATABASE_URL": postgres_url,
        "CLUSTERMATCH_DATA_DIR": str(tmp_path / "shared"),  # the shared generations folder
        "CLUSTERMATCH_WATCH_SECONDS": "0.5",
        "CLUSTERMATCH_MICRO_BATCH_MS": "0",
    }
    seed_wind_store(env, tmp_path / "profiles.jsonl")
    with running(env, "--workers", "1") as a, running(env, "--workers", "1") as b:
        yield a.url, b.url, env


def generation(url: str) -> str | None:
    served: str | None = httpx.get(f"{url}/readyz", timeout=10).json()["generation"]
    return served


def search_ids(url: str, q: str) -> set[str]:
    response = httpx.get(f"{url}/v1/search", params={"q": q, "limit": 10}, timeout=30)
    assert response.status_code == 200, response.text
    return {r["actor"]["id"] for r in response.json()["results"]}


@pytest.mark.slow
def test_two_replicas_share_one_postgres_and_converge(
    replicas: tuple[str, str, dict[str, str]],
) -> None:
    url_a, url_b, env = replicas
    first = generation(url_a)
    assert first is not None and generation(url_b) == first

    # A write on A is a candidate on B within the watch interval (B embeds what A wrote).
    data = actor_data("late", ["hydrogen electrolyser stacks for steel plants"])
    del data["id"]
    assert httpx.put(f"{url_a}/v1/actors/late", json=data, timeout=30).status_code == 201
    deadline = time.monotonic() + 5
    while "late" not in search_ids(url_b, "hydrogen electrolyser stacks"):
        assert time.monotonic() < deadline, "a write on A never became a candidate on B"
        time.sleep(0.2)

    # A delete on A is never returned by B once the DELETE has returned.
    assert "w1" in search_ids(url_b, WIND)
    assert httpx.delete(f"{url_a}/v1/actors/w1", timeout=30).status_code == 204
    for _ in range(10):
        assert "w1" not in search_ids(url_b, WIND)

    # A third process publishes; both replicas converge on it.
    run_cli(env, "reindex")
    published = json.loads(run_cli(env, "index", "status", "--json"))["current"]
    assert published != first
    deadline = time.monotonic() + 10
    while {generation(url_a), generation(url_b)} != {published}:
        assert time.monotonic() < deadline, "the replicas did not converge on the new generation"
        time.sleep(0.3)
    assert "late" in search_ids(url_a, "hydrogen electrolyser stacks")
    assert "w1" not in search_ids(url_a, WIND) | search_ids(url_b, WIND)
