"""Liveness and readiness of the HTTP app."""

from __future__ import annotations

from fastapi.testclient import TestClient

from service.api.app import create_app
from service.runtime import Runtime
from tests.factories import make_actor


def test_health_and_readiness(runtime: Runtime) -> None:
    client = TestClient(create_app(runtime))
    assert client.get("/healthz").json() == {"status": "ok"}
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503 and "no index" in not_ready.json()["detail"]
    runtime.ingestor.upsert([make_actor("a", ["wind"])])
    generation = runtime.reindexer.run().generation
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["generation"] == generation
