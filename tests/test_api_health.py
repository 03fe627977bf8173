"""Liveness and readiness of the HTTP app."""

from __future__ import annotations

import os

from fastapi.testclient import TestClient

from service.api.app import create_app
from service.runtime import Runtime
from tests.factories import make_actor


def test_health_and_readiness(runtime: Runtime) -> None:
    client = TestClient(create_app(runtime))
    assert client.get("/healthz").json() == {"status": "ok"}
    empty = client.get("/readyz")
    assert empty.status_code == 200, "an empty store can serve: writes, matches, searches"
    assert empty.json() == {
        "status": "ready",
        "generation": None,
        "pending_changes": 0,
        "stale": True,
        "worker": os.getpid(),
        "warming": False,
    }
    runtime.ingestor.upsert([make_actor("a", ["wind"])])
    generation = runtime.reindexer.run().generation
    runtime.index.reload()  # what the watcher does within CLUSTERMATCH_WATCH_SECONDS
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["generation"] == generation
    assert ready.json()["stale"] is False
