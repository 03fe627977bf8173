"""Abuse and keys: rate limits, time limits, key revocation and rotation, the keys file's
permissions, CORS and the security headers. No test measures time: clocks are injected and
counted."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.api.deps import request_deadline
from service.cli import main
from service.config import Settings
from service.deadline import Deadline
from service.domain import Actor
from service.embedding.fake import FakeEmbedder
from service.errors import InsecureConfiguration, RateLimited, TimedOut, Unauthorized
from service.keys import KeyFile
from service.ratelimit import RateLimiter
from service.runtime import Runtime
from tests.factories import actor_data


class Ticks:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[tuple[TestClient, KeyFile, Runtime]]:
    settings = Settings(data_dir=tmp_path / "data", keys_file=tmp_path / "keys.json")
    runtime = Runtime(settings, embedder=FakeEmbedder())
    with TestClient(create_app(runtime), raise_server_exceptions=False) as client:
        yield client, KeyFile(tmp_path / "keys.json"), runtime
    runtime.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- rate limits -------------------------------------------------------------------------------


def test_token_bucket_counts_tokens_not_seconds() -> None:
    clock = Ticks()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    for _ in range(3):
        limiter.take("k")
    with pytest.raises(RateLimited) as refused:
        limiter.take("k")
    assert refused.value.retry_after == 1
    limiter.take("other")  # buckets are per key
    clock.now += 0.5  # one token back at 2 per second
    limiter.take("k")
    with pytest.raises(RateLimited):
        limiter.take("k")


def test_429_problem_with_retry_after(keyed: tuple[TestClient, KeyFile, Runtime]) -> None:
    client, keys, _ = keyed
    services = client.app.state.services  # type: ignore[attr-defined]
    clock = Ticks()
    services.limiter = RateLimiter(rate=0.5, burst=2, clock=clock)
    token = keys.create(("read",), "agency-a")
    for _ in range(2):
        assert client.get("/v1/actors", headers=bearer(token)).status_code == 200
    refused = client.get("/v1/actors", headers=bearer(token))
    body = problem(refused, 429)
    assert refused.headers["retry-after"] == "2" and "retry in 2 s" in body["detail"]
    other = keys.create(("read",), "agency-b")
    assert client.get("/v1/actors", headers=bearer(other)).status_code == 200
    clock.now += 2
    assert client.get("/v1/actors", headers=bearer(token)).status_code == 200
    assert client.get("/healthz").status_code == 200, "liveness is never limited"


def test_the_openapi_documents_429_and_503_on_every_keyed_operation(
    keyed: tuple[TestClient, KeyFile, Runtime],
) -> None:
    client, _, _ = keyed
    spec = client.get("/openapi.json").json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if "security" in operation:
                assert {"429", "503"} <= set(operation["responses"]), (method, path)
                assert "Retry-After" in operation["responses"]["429"]["headers"]


# --- time limits -------------------------------------------------------------------------------


def test_deadline_is_checked_between_steps() -> None:
    clock = Ticks()
    deadline = Deadline(2.0, clock)
    deadline.check("one")
    clock.now = 2.5
    with pytest.raises(TimedOut, match=r"past its limit of 2 s.*at two"):
        deadline.check("two")
    assert deadline.checks == 2


def test_a_match_past_its_limit_is_a_503_problem(runtime: Runtime) -> None:
    for i in range(3):
        runtime.ingestor.upsert(
            [Actor.parse(actor_data(f"a{i}", [f"laser welding of steel frames {i}"]))]
        )
    clock = Ticks()

    def ticking() -> float:
        clock.now += 1.0  # every checkpoint costs a "second"
        return clock.now

    app = create_app(runtime)
    seen: list[Deadline] = []

    def budget() -> Deadline:
        seen.append(Deadline(2.5, ticking))
        return seen[-1]

    app.dependency_overrides[request_deadline] = budget
    with TestClient(app, raise_server_exceptions=False) as client:
        body = problem(client.get("/v1/search", params={"q": "laser welding"}), 503)
        assert (
            body["title"] == "Request timed out"
            and "CLUSTERMATCH_REQUEST_TIMEOUT" in body["detail"]
        )
        assert seen[-1].checks == 3, "embedding, candidates, then scoring ran past 2.5"
        problem(client.post("/v1/match", json={"actor_id": "a0"}), 503)
        problem(client.get("/v1/actors/a0/matches"), 503)
        app.dependency_overrides.clear()
        assert client.get("/v1/search", params={"q": "laser welding"}).status_code == 200


# --- keys: revoke, rotate, list, tenant settings ---------------------------------------------


def test_revocation_is_seen_by_every_worker_at_its_next_request(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    token = KeyFile(path).create(("read",), "agency-a")
    workers = [KeyFile(path), KeyFile(path)]  # each worker process has its own
    for worker in workers:
        assert worker.authenticate(token).tenant == "agency-a"
    KeyFile(path).revoke(token.split("_")[1])
    for worker in workers:
        with pytest.raises(Unauthorized, match="unknown or revoked"):
            worker.authenticate(token)


def test_rotation_keeps_the_old_key_for_its_grace_period(tmp_path: Path) -> None:
    now = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    clock = [now]
    keys = KeyFile(tmp_path / "keys.json", clock=lambda: clock[0])
    old = keys.create(("read", "write"), "agency-a", ("alps",), "crm")
    new_key, new = keys.rotate(old.split("_")[1], grace_seconds=600)
    assert (new_key.scopes, new_key.tenant, new_key.networks) == (
        ("read", "write"),
        "agency-a",
        ("alps",),
    )
    assert keys.authenticate(old).key_id == old.split("_")[1], "still valid during the grace"
    assert keys.authenticate(new).key_id == new_key.id
    clock[0] = now + timedelta(seconds=601)
    with pytest.raises(Unauthorized, match="revoked"):
        keys.authenticate(old)
    assert keys.authenticate(new).tenant == "agency-a"


def run_cli(argv: list[str], settings: Settings, capsys: Any) -> tuple[int, str, str]:
    code = main(argv, Runtime(settings, embedder=FakeEmbedder()))
    out, err = capsys.readouterr()
    return code, out, err


def test_keys_cli_create_list_revoke_rotate_tenant(tmp_path: Path, capsys: Any) -> None:
    settings = Settings(data_dir=tmp_path / "data", keys_file=tmp_path / "keys.json")
    code, out, _ = run_cli(
        ["keys", "create", "--scopes", "read", "--tenant", "agency-a", "--json"], settings, capsys
    )
    token = json.loads(out)["key"]
    key_id = token.split("_")[1]
    code, out, _ = run_cli(["keys", "list", "--json"], settings, capsys)
    (row,) = json.loads(out)["keys"]
    assert row["id"] == key_id and row["state"] == "active" and "hash" not in row
    assert token.split("_")[2] not in out
    code, out, _ = run_cli(["keys", "rotate", key_id, "--json"], settings, capsys)
    rotated = json.loads(out)
    assert code == 0 and rotated["replaces"] == key_id
    code, out, _ = run_cli(["keys", "list", "--json"], settings, capsys)
    states = {r["id"]: r["state"] for r in json.loads(out)["keys"]}
    assert states == {key_id: "revoked", rotated["id"]: "active"}
    code, out, _ = run_cli(["keys", "revoke", rotated["id"]], settings, capsys)
    assert code == 0 and "revoked" in out
    code, _, err = run_cli(["keys", "revoke", "nope"], settings, capsys)
    assert code == 1 and "keys list" in err
    code, _, _ = run_cli(
        ["keys", "tenant", "agency-a", "--private-in-matching", "all"], settings, capsys
    )
    assert code == 0
    other = KeyFile(tmp_path / "keys.json").create(("read",), "agency-b")
    viewer = KeyFile(tmp_path / "keys.json").authenticate(other).viewer
    assert viewer.shared_by == frozenset({"agency-a"})
    raw = json.loads((tmp_path / "keys.json").read_text())
    assert raw["tenants"] == {"agency-a": {"private_in_matching": "all"}}
    assert (tmp_path / "keys.json").stat().st_mode & 0o077 == 0


def test_a_keys_file_open_to_others_is_refused(
    tmp_path: Path, capsys: Any, keyed: tuple[TestClient, KeyFile, Runtime]
) -> None:
    client, keys, _ = keyed
    token = keys.create(("read",), "agency-a")
    os.chmod(keys.path, 0o644)
    with pytest.raises(InsecureConfiguration, match=re.escape(f"chmod 600 {keys.path}")):
        KeyFile(keys.path).authenticate(token)
    body = problem(client.get("/v1/actors", headers=bearer(token)), 503)
    assert str(keys.path) not in body["detail"], "clients are not told the server's paths"
    settings = Settings(data_dir=tmp_path / "data", keys_file=keys.path)
    code, _, err = run_cli(["serve", "--host", "127.0.0.1"], settings, capsys)
    assert code == 1 and f"chmod 600 {keys.path}" in err
    os.chmod(keys.path, 0o600)
    assert client.get("/v1/actors", headers=bearer(token)).status_code == 200


# --- CORS and headers --------------------------------------------------------------------------


def test_cors_is_off_by_default_and_configurable(tmp_path: Path) -> None:
    origin = {"Origin": "https://crm.example", "Access-Control-Request-Method": "GET"}
    closed = Runtime(Settings(data_dir=tmp_path / "a"), embedder=FakeEmbedder())
    with TestClient(create_app(closed)) as client:
        assert "access-control-allow-origin" not in client.get("/v1/actors", headers=origin).headers
        assert (
            "access-control-allow-origin"
            not in client.options("/v1/actors", headers=origin).headers
        )
    settings = Settings(
        data_dir=tmp_path / "b", cors_origins="https://crm.example, https://x.example"
    )
    opened = Runtime(settings, embedder=FakeEmbedder())
    with TestClient(create_app(opened)) as client:
        preflight = client.options("/v1/actors", headers=origin)
        assert preflight.headers["access-control-allow-origin"] == "https://crm.example"
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        got = client.get("/v1/actors", headers={"Origin": "https://crm.example"})
        assert got.headers["access-control-allow-origin"] == "https://crm.example"
        stranger = client.get("/v1/actors", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in stranger.headers
    closed.close()
    opened.close()


def test_security_headers(client_open: TestClient) -> None:
    for path in ("/", "/actors/x", "/shortlist", "/map", "/docs", "/redoc"):
        page = client_open.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        headers = page.headers
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["x-frame-options"] == "DENY", path
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
        assert headers["referrer-policy"] in ("same-origin", "no-referrer"), path
        assert headers["cross-origin-opener-policy"] == "same-origin", path
        assert "camera=()" in headers["permissions-policy"], path
    workspace = client_open.get("/").headers["content-security-policy"]
    assert "default-src 'self'" in workspace, "the workspace keeps its own strict policy"
    api = client_open.get("/v1/actors").headers
    assert api["cache-control"] == "no-store" and api["x-content-type-options"] == "nosniff"


@pytest.fixture
def client_open(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime)) as client:
        yield client
