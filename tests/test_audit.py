"""The audit log: writes audited in their own transaction, key use counted per minute, admin
actions, admin-only reading, pruning, and never a text."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.api.audit import AuditWriter
from service.audit import AuditEvent, AuditQuery, KeyUse, Who
from service.cli import main
from service.config import Settings
from service.embedding.fake import FakeEmbedder
from service.keys import KeyFile
from service.runtime import Runtime
from service.store.sql import SqlProfileStore, audit_log
from tests.factories import actor_data

SECRET = "unique confidential sentence about zirconia sintering"


def body(texts: list[str]) -> dict[str, Any]:
    data = actor_data("x", texts)
    del data["id"]
    data["documents"][0]["visibility"] = "private"
    return data


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, dict[str, str]], Runtime]]:
    settings = Settings(data_dir=tmp_path / "data", keys_file=tmp_path / "keys.json")
    keys = KeyFile(tmp_path / "keys.json")
    tokens = {
        "admin": keys.create(("admin",), "ops"),
        "writer": keys.create(("read", "write"), "agency-a"),
    }
    runtime = Runtime(settings, embedder=FakeEmbedder())
    with TestClient(create_app(runtime), raise_server_exceptions=False) as client:
        yield client, {k: {"Authorization": f"Bearer {v}"} for k, v in tokens.items()}, runtime
    runtime.close()


def events(runtime: Runtime, **query: Any) -> list[AuditEvent]:
    return runtime.store.audit_events(AuditQuery(limit=1000, **query))


def test_writes_and_deletes_are_audited_with_key_and_tenant(
    keyed: tuple[TestClient, dict[str, dict[str, str]], Runtime],
) -> None:
    client, h, runtime = keyed
    assert client.put("/v1/actors/z", json=body([SECRET]), headers=h["writer"]).status_code == 201
    assert client.put("/v1/actors/z", json=body([SECRET]), headers=h["writer"]).status_code == 200
    bulk = [dict(body(["bulk text"]), id=f"b{i}") for i in range(3)]
    assert client.post("/v1/actors/bulk", json=bulk, headers=h["writer"]).status_code == 200
    assert client.delete("/v1/actors/z", headers=h["writer"]).status_code == 204
    writer_id = h["writer"]["Authorization"].split("_")[1]
    got = [
        (e.action, e.target, e.who.key_id, e.who.tenant)
        for e in events(runtime)
        if e.action.startswith("actor.")
    ]
    assert got == [
        ("actor.create", "z", writer_id, "agency-a"),
        ("actor.replace", "z", writer_id, "agency-a"),
        ("actor.create", "b0", writer_id, "agency-a"),
        ("actor.create", "b1", writer_id, "agency-a"),
        ("actor.create", "b2", writer_id, "agency-a"),
        ("actor.delete", "z", writer_id, "agency-a"),
    ]
    started = client.post("/v1/index/rebuild", headers=h["admin"])
    assert started.status_code == 202
    (rebuild,) = events(runtime, action="index.rebuild")
    assert rebuild.target == started.json()["id"] and rebuild.who.tenant == "ops"


def test_a_write_and_its_audit_event_commit_together(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.domain import Actor

    def broken(*_: Any) -> None:
        raise RuntimeError("audit insert failed")

    monkeypatch.setattr(SqlProfileStore, "_append_audit", staticmethod(broken))
    with pytest.raises(RuntimeError):
        runtime.ingestor.upsert(
            [Actor.parse(actor_data("a", ["laser welding"]))], who=Who("k1", "agency-a")
        )
    assert runtime.store.get_actor("a") is None, "no write without its audit event"


def test_key_use_is_counted_per_minute_and_flushed_not_written_per_request(
    keyed: tuple[TestClient, dict[str, dict[str, str]], Runtime],
) -> None:
    client, h, runtime = keyed
    services = client.app.state.services  # type: ignore[attr-defined]
    minute = [600.0]
    services.key_use = KeyUse(clock=lambda: minute[0])
    for _ in range(5):
        assert client.get("/v1/actors", headers=h["writer"]).status_code == 200
    refused = client.get("/v1/actors", headers={"Authorization": "Bearer cm_madeup_nothing"})
    assert refused.status_code == 401
    writer = AuditWriter(runtime.store, services.key_use, 365, 60)
    assert writer.flush() == 0, "the minute is not over: nothing is written yet"
    assert not events(runtime, action="key.use")
    minute[0] += 60
    assert client.get("/v1/actors", headers=h["writer"]).status_code == 200
    assert writer.flush() == 2
    (use,) = events(runtime, action="key.use")
    assert use.count == 5 and use.who.tenant == "agency-a" and use.at.endswith("00:10:00+00:00")
    (refusal,) = events(runtime, action="key.refused")
    assert refusal.who.key_id is None, "a made-up key id is not recorded"
    writer.flush(everything=True)
    assert sum(e.count for e in events(runtime, action="key.use")) == 6


def test_only_admins_read_the_audit_log(
    keyed: tuple[TestClient, dict[str, dict[str, str]], Runtime],
) -> None:
    client, h, _ = keyed
    client.put("/v1/actors/z", json=body([SECRET]), headers=h["writer"])
    assert client.get("/v1/audit", headers=h["writer"]).status_code == 403
    page = client.get("/v1/audit", params={"limit": 1}, headers=h["admin"]).json()
    assert [e["action"] for e in page["events"]] == ["actor.create"]
    rest = client.get("/v1/audit", params={"after": page["next_after"]}, headers=h["admin"]).json()
    assert all(e["id"] > page["next_after"] for e in rest["events"])
    filtered = client.get(
        "/v1/audit",
        params={"action": "actor.create", "tenant": "agency-a", "since": "2000-01-01"},
        headers=h["admin"],
    ).json()
    assert [e["target"] for e in filtered["events"]] == ["z"]
    assert client.get("/v1/audit?action=nonsense", headers=h["admin"]).status_code == 422


def test_the_log_holds_no_text(
    keyed: tuple[TestClient, dict[str, dict[str, str]], Runtime],
) -> None:
    client, h, runtime = keyed
    client.put("/v1/actors/z", json=body([SECRET]), headers=h["writer"])
    client.get("/v1/search", params={"q": "zirconia sintering"}, headers=h["writer"])
    services = client.app.state.services  # type: ignore[attr-defined]
    AuditWriter(runtime.store, services.key_use, 365, 60).flush(everything=True)
    engine = runtime.store.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        rows = json.dumps([list(r) for r in conn.execute(sa.select(audit_log))], default=str)
    assert "zirconia" not in rows and "sintering" not in rows


def test_pruning_removes_events_past_the_retention(runtime: Runtime) -> None:
    who = Who("k", "t")
    runtime.store.record_audit(
        [
            AuditEvent("key.use", who, at="2020-01-01T00:00:00+00:00"),
            AuditEvent("key.use", who),
        ]
    )
    removed = AuditWriter(runtime.store, KeyUse(), retention_days=30, seconds=60).prune()
    assert removed == 1
    left = [e.action for e in events(runtime)]
    assert left == ["key.use", "audit.prune"]


def test_audit_cli_lists_and_prunes(tmp_path: Path, capsys: Any) -> None:
    settings = Settings(data_dir=tmp_path / "data", keys_file=tmp_path / "keys.json")

    def cli(argv: list[str]) -> tuple[int, str]:
        code = main(argv, Runtime(settings, embedder=FakeEmbedder()))
        return code, capsys.readouterr().out

    cli(["keys", "create", "--scopes", "read", "--tenant", "agency-a"])
    code, out = cli(["audit", "--json"])
    (created,) = json.loads(out)["events"]
    assert code == 0 and created["action"] == "keys.create"
    assert created["origin"].startswith("cli:") and created["key_id"] is None
    code, out = cli(["audit", "prune", "--days", "1", "--json"])
    assert code == 0 and json.loads(out)["removed"] == 0
