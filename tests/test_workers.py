"""`clustermatch serve --workers 2` as a real deployment: two worker processes share one store
and one generation folder; a rebuild published by a third process reaches both; a write is a
query on every worker at once; a delete is never returned after it returned."""

from __future__ import annotations

import http.client
import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.factories import actor_data
from tests.servers import WIND, run_cli, running, seed_wind_store

pytestmark = pytest.mark.slow


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    with serving(tmp_path, {}) as served:
        yield served


@contextmanager
def serving(tmp_path: Path, extra: dict[str, str]) -> Iterator[tuple[str, dict[str, str]]]:
    """Two workers serving a small store (built by other processes), until the block ends."""
    env = os.environ | {
        "CLUSTERMATCH_DATA_DIR": str(tmp_path / "data"),
        "CLUSTERMATCH_WATCH_SECONDS": "0.5",
        "CLUSTERMATCH_MICRO_BATCH_MS": "0",
        **extra,
    }
    seed_wind_store(env, tmp_path / "profiles.jsonl")
    with running(env, "--workers", "2") as server:
        yield server.url, env


def readiness(url: str, n: int = 60) -> dict[int, str | None]:
    """Worker pid -> the generation it serves, over `n` fresh connections."""
    seen: dict[int, str | None] = {}
    for _ in range(n):
        body = httpx.get(f"{url}/readyz", timeout=10).json()
        seen[body["worker"]] = body["generation"]
    return seen


def test_two_workers_serve_converge_and_never_return_a_deleted_actor(
    deployment: tuple[str, dict[str, str]],
) -> None:
    url, env = deployment
    deadline = time.monotonic() + 120  # the second worker may still be loading its model
    while len(first := readiness(url, 20)) < 2:
        assert time.monotonic() < deadline, f"only {len(first)} worker answers"
        time.sleep(1)
    assert len(set(first.values())) == 1 and None not in first.values()

    data = actor_data("late", [f"{WIND}, repaired in the field"])
    del data["id"]
    assert httpx.put(f"{url}/v1/actors/late", json=data, timeout=30).status_code == 201
    for _ in range(10):  # a written actor is a query at once, whichever worker answers
        response = httpx.post(f"{url}/v1/match", json={"actor_id": "late"}, timeout=30)
        assert response.status_code == 200 and response.json()["matches"]

    run_cli(env, "reindex")  # a third process publishes
    deadline = time.monotonic() + 20
    while True:
        now = readiness(url)
        if (
            len(now) == 2
            and len(set(now.values())) == 1
            and set(now.values()) != set(first.values())
        ):
            break
        assert time.monotonic() < deadline, f"workers did not converge: {now}"
        time.sleep(0.3)

    assert httpx.delete(f"{url}/v1/actors/w1", timeout=30).status_code == 204
    for _ in range(20):
        found = httpx.get(f"{url}/v1/search", params={"q": WIND, "limit": 10}, timeout=30).json()
        assert "w1" not in {r["actor"]["id"] for r in found["results"]}


def test_a_revoked_key_is_refused_by_every_worker_at_once(tmp_path: Path) -> None:
    from service.keys import KeyFile

    keys = KeyFile(tmp_path / "keys.json")
    token = keys.create(("read",), "agency-a")
    headers = {"Authorization": f"Bearer {token}"}
    with serving(tmp_path, {"CLUSTERMATCH_KEYS_FILE": str(keys.path)}) as (url, env):
        deadline = time.monotonic() + 120  # the second worker may still be loading its model
        while len(readiness(url, 20)) < 2:
            assert time.monotonic() < deadline, "only one worker answers"
            time.sleep(1)
        for _ in range(10):  # fresh connections: both workers answer
            assert httpx.get(f"{url}/v1/actors", headers=headers, timeout=30).status_code == 200
        run_cli(env, "keys", "revoke", token.split("_")[1])  # another process edits the file
        codes = [
            httpx.get(f"{url}/v1/actors", headers=headers, timeout=30).status_code
            for _ in range(20)
        ]
        assert codes == [401] * 20, "every worker refuses it from its next request on"


def test_keep_alive_connections_spread_over_both_workers(
    deployment: tuple[str, dict[str, str]],
) -> None:
    """Each worker listens on its own SO_REUSEPORT socket, so the kernel spreads connections
    over them. With one shared socket, 16 keep-alive clients all landed on one worker in about
    one run of three (half the throughput); by hash, all 16 on one worker has odds of 2^-15."""
    url, _ = deployment
    deadline = time.monotonic() + 120  # both workers answer once their models are loaded
    while len(readiness(url, 20)) < 2:
        assert time.monotonic() < deadline
        time.sleep(1)
    clients = [httpx.Client(base_url=url, timeout=10) for _ in range(16)]
    try:
        workers = {c.get("/readyz").json()["worker"] for c in clients}
        again = {c.get("/readyz").json()["worker"] for c in clients}  # the same connections
    finally:
        for client in clients:
            client.close()
    assert len(workers) == 2 and again == workers


def test_keep_alive_connections_even_out_when_the_hash_splits_them_unevenly(
    deployment: tuple[str, dict[str, str]],
) -> None:
    """The kernel places connections, not requests: 12 kept-alive connections on one worker
    and 4 on the other stay so unless the fuller worker closes its surplus
    (service.api.balance), after which its clients reconnect and the hash places them anew."""
    url, _ = deployment
    deadline = time.monotonic() + 120  # both workers answer once their models are loaded
    while len(readiness(url, 20)) < 2:
        assert time.monotonic() < deadline
        time.sleep(1)
    target = httpx.URL(url)

    def ask(connection: http.client.HTTPConnection) -> tuple[int, bool]:
        connection.request("GET", "/readyz")
        response = connection.getresponse()
        body = json.loads(response.read())
        # http.client reconnects by itself on the next request after a `Connection: close`
        return body["worker"], response.getheader("connection", "").lower() == "close"

    kept: dict[int, list[http.client.HTTPConnection]] = {}
    for _ in range(400):  # keep 12 connections that landed on one worker, 4 on the other
        connection = http.client.HTTPConnection(target.host, target.port, timeout=10)
        worker, _closed = ask(connection)
        first = next(iter(kept), worker)
        wanted = 12 if worker == first else 4
        if len(kept.setdefault(worker, [])) < wanted:
            kept[worker].append(connection)
        else:
            connection.close()
        if sorted(len(c) for c in kept.values()) == [4, 12]:
            break
    assert sorted(len(c) for c in kept.values()) == [4, 12], "could not set up the uneven split"
    connections = [c for group in kept.values() for c in group]
    closes = 0
    deadline = time.monotonic() + 30
    try:
        while True:
            answers = [ask(c) for c in connections]
            closes += sum(closed for _, closed in answers)
            split = Counter(worker for worker, closed in answers if not closed)
            if not any(closed for _, closed in answers) and sorted(split.values()) == [8, 8]:
                break
            assert time.monotonic() < deadline, f"still uneven after 30 s: {split}"
            time.sleep(0.05)
    finally:
        for connection in connections:
            connection.close()
    assert closes >= 4, "the fuller worker closed its surplus"
