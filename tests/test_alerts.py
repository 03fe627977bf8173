"""New-match alerts end to end in one process: the API creates subscriptions, `Alerts.tick()`
checks and delivers to a real HTTP receiver on loopback, on a clock the test moves by hand (no
test waits for a backoff)."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.alerts import Alerts
from service.api.app import create_app
from service.config import Settings
from service.domain import Actor, Owner
from service.embedding.fake import FakeEmbedder
from service.keys import KeyFile
from service.locks import exclusive
from service.runtime import Runtime
from tests.alert_receiver import Receiver, receiving
from tests.conftest import unused_port
from tests.factories import actor_data, make_actor

WIND = "offshore wind turbine blades made of glass fibre composites"
SECRET = "receiver-secret-0123456789"


class Clock:
    """Starts at the real time (the API stamps subscriptions with it), then moves by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world(runtime: Runtime) -> Iterator[tuple[Runtime, TestClient, Alerts, Clock]]:
    runtime.settings.alert_retry_seconds = 10
    runtime.settings.alert_write_seconds = 300
    runtime.ingestor.upsert([make_actor(f"w{i}", [f"{WIND}, variant {i}"]) for i in range(3)])
    runtime.ingestor.upsert([make_actor("bakery", ["sourdough bread and pastry"])])
    runtime.reindexer.run()
    clock = Clock()
    # No `with`: the app's own alert thread stays off, the test runs every round itself.
    client = TestClient(create_app(runtime))
    yield runtime, client, Alerts(runtime, clock=clock), clock


def subscribe(client: TestClient, url: str, **fields: Any) -> dict[str, Any]:
    body = {"actor_id": "w0", "top": 10, "min_score": 0.3, "url": url, "secret": SECRET}
    response = client.post("/v1/subscriptions", json=body | fields)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def rebuild_with(runtime: Runtime, *actors: Actor) -> str:
    runtime.ingestor.upsert(list(actors))
    generation = runtime.reindexer.run().generation
    runtime.index.reload()
    return generation


def test_new_matches_after_a_rebuild_are_delivered_signed(
    world: tuple[Runtime, TestClient, Alerts, Clock],
) -> None:
    runtime, client, alerts, _ = world
    with receiving(Receiver(unused_port())) as receiver:
        created = subscribe(client, receiver.url)
        assert created["baseline"] == 2, "w1 and w2 already match: they are not news"
        assert alerts.tick().checked == 0 and receiver.received == []

        generation = rebuild_with(runtime, make_actor("w9", [f"{WIND}, recycled at end of life"]))
        report = alerts.tick()
        assert (report.checked, report.events, report.delivered) == (1, 1, 1)

        (got,) = receiver.received
        expected = hmac.new(SECRET.encode(), got.body, hashlib.sha256).hexdigest()
        assert got.headers["X-Clustermatch-Signature"] == f"sha256={expected}"
        event = got.json
        assert event["subscription_id"] == created["id"] and event["generation"] == generation
        assert got.headers["X-Clustermatch-Event"] == event["event_id"]
        assert [m["actor"]["id"] for m in event["matches"]] == ["w9"]
        assert event["matches"][0]["evidence"][0]["text"].startswith(WIND)
        assert set(event["matches"][0]) == {"actor", "score", "evidence"}

        assert alerts.tick().events == 0, "nothing new: nothing sent again"
        assert len(receiver.received) == 1

    log = client.get(f"/v1/subscriptions/{created['id']}/deliveries").json()["deliveries"]
    assert [(d["event_id"], d["state"]) for d in log] == [(event["event_id"], "delivered")]
    assert [(a["status_code"], a["error"]) for a in log[0]["attempts"]] == [(200, None)]


def test_a_receiver_down_then_up_gets_each_event_once_after_backoff(
    world: tuple[Runtime, TestClient, Alerts, Clock],
) -> None:
    runtime, client, alerts, clock = world
    port = unused_port()
    created = subscribe(client, Receiver(port).url)
    rebuild_with(runtime, make_actor("w9", [f"{WIND}, repaired in the field"]))

    first = alerts.tick()  # nobody listens on the port
    assert (first.events, first.attempts, first.delivered) == (1, 1, 0)
    with receiving(Receiver(port, statuses=[500])) as receiver:
        clock.now += 9  # the first retry waits 10 s
        assert alerts.tick().attempts == 0 and receiver.received == []
        clock.now += 1
        assert alerts.tick().attempts == 1, "retried: answered 500"
        clock.now += 19  # the second retry waits twice as long
        assert alerts.tick().attempts == 0
        clock.now += 1
        assert alerts.tick().delivered == 1
        clock.now += 1_000
        assert alerts.tick().attempts == 0, "a delivered event is never sent again"

    ids = [r.json["event_id"] for r in receiver.received]
    assert len(ids) == 2 and len(set(ids)) == 1, "the retry carries the same event id"
    assert receiver.received[0].body == receiver.received[1].body
    assert receiver.accepted == ids[:1]
    (delivery,) = client.get(f"/v1/subscriptions/{created['id']}/deliveries").json()["deliveries"]
    attempts = delivery["attempts"]
    assert [a["status_code"] for a in attempts] == [None, 500, 200]
    assert "ConnectError" in attempts[0]["error"] and attempts[1]["error"] == "HTTP 500"
    assert delivery["state"] == "delivered" and delivery["next_attempt_at"] is None


def test_a_timed_out_post_is_retried_with_the_same_event_id(
    world: tuple[Runtime, TestClient, Alerts, Clock],
) -> None:
    runtime, client, alerts, clock = world
    runtime.settings.alert_timeout_seconds = 0.2
    with receiving(Receiver(unused_port(), delays=[1.0])) as receiver:
        created = subscribe(client, receiver.url)
        rebuild_with(runtime, make_actor("w9", [f"{WIND}, inspected by drones"]))
        assert alerts.tick().delivered == 0
        clock.now += 10
        assert alerts.tick().delivered == 1
    ids = {r.json["event_id"] for r in receiver.received}
    assert len(receiver.received) == 2 and len(ids) == 1
    (delivery,) = client.get(f"/v1/subscriptions/{created['id']}/deliveries").json()["deliveries"]
    assert "timed out" in delivery["attempts"][0]["error"]


def test_only_text_the_tenant_may_see_is_sent(
    world: tuple[Runtime, TestClient, Alerts, Clock],
) -> None:
    runtime, client, alerts, _ = world
    with receiving(Receiver(unused_port())) as receiver:
        subscribe(client, receiver.url)  # the open service's tenant, "local"
        data = actor_data("w9", [f"{WIND}, public statement"])
        data["documents"].append(
            {"id": "plan", "kind": "self_assessment", "visibility": "private", "text": WIND}
        )
        runtime.ingestor.upsert([Actor.parse(data)], owner=Owner("agency-a"))
        runtime.reindexer.run()
        assert alerts.tick().delivered == 1
    (match,) = receiver.received[0].json["matches"]
    assert [e["document_id"] for e in match["evidence"]] == ["d0"], "the private plan is hidden"


def test_a_saved_search_honours_its_filters_and_writes_trigger_at_most_every_period(
    world: tuple[Runtime, TestClient, Alerts, Clock],
) -> None:
    runtime, client, alerts, clock = world
    with receiving(Receiver(unused_port())) as receiver:
        query = {"q": "glass fibre turbine blades", "filters": {"country": ["AT"]}}
        created = subscribe(client, receiver.url, actor_id=None, query=query, min_score=None)
        assert created["query"] == {
            "q": query["q"],
            "filters": {
                **{name: [] for name in ("country", "region", "kind", "sector", "cluster")},
                "country": ["AT"],
            },
        }
        runtime.ingestor.upsert(
            [
                make_actor("de-blades", [f"{WIND} in Bremen"], country="DE"),
                make_actor("at-blades", [f"{WIND} in Linz"], country="AT"),
            ]
        )
        stored = runtime.subscriptions.get(created["id"])
        assert stored is not None
        clock.now = stored.checked_at + 299
        assert alerts.tick().checked == 0, "writes wait for the period"
        clock.now += 1
        report = alerts.tick()
        assert (report.checked, report.delivered) == (1, 1)
    event = receiver.received[0].json
    assert [m["actor"]["id"] for m in event["matches"]] == ["at-blades"]
    assert event["trigger"] == "writes"


def test_one_process_at_a_time(world: tuple[Runtime, TestClient, Alerts, Clock]) -> None:
    runtime, client, alerts, _ = world
    with receiving(Receiver(unused_port())) as receiver:
        subscribe(client, receiver.url)
        rebuild_with(runtime, make_actor("w9", [f"{WIND}, coated"]))
        with exclusive(alerts.lock_path, "another worker"):
            assert alerts.tick().locked is False
        assert receiver.received == []
        assert alerts.tick().delivered == 1


def test_a_deleted_watched_actor_is_reported_not_fatal(
    world: tuple[Runtime, TestClient, Alerts, Clock],
) -> None:
    runtime, client, alerts, _ = world
    created = subscribe(client, "http://127.0.0.1:9/hook")
    runtime.delete_actor("w0")
    runtime.reindexer.run()
    assert alerts.tick().checked == 1
    found = client.get(f"/v1/subscriptions/{created['id']}").json()
    assert "does not exist" in found["last_error"]


def test_subscriptions_belong_to_their_tenant(tmp_path: Path) -> None:
    keys = KeyFile(tmp_path / "keys.json")
    a = {"Authorization": f"Bearer {keys.create(('read', 'write'), 'agency-a')}"}
    b = {"Authorization": f"Bearer {keys.create(('read', 'write'), 'agency-b')}"}
    reader = {"Authorization": f"Bearer {keys.create(('read',), 'agency-a')}"}
    admin = {"Authorization": f"Bearer {keys.create(('admin',), 'ops')}"}
    settings = Settings(data_dir=tmp_path / "data", keys_file=tmp_path / "keys.json")
    runtime = Runtime(settings, embedder=FakeEmbedder())
    runtime.ingestor.upsert([make_actor("w0", [WIND]), make_actor("w1", [WIND + " too"])])
    client = TestClient(create_app(runtime))
    body = {"actor_id": "w0", "url": "https://crm.example/hook", "secret": SECRET}

    assert client.post("/v1/subscriptions", json=body, headers=reader).status_code == 403
    created = client.post("/v1/subscriptions", json=body, headers=a)
    assert created.status_code == 201 and "secret" not in created.json()
    sid = created.json()["id"]
    assert client.get(f"/v1/subscriptions/{sid}", headers=b).status_code == 404
    assert client.get(f"/v1/subscriptions/{sid}/deliveries", headers=b).status_code == 404
    assert client.delete(f"/v1/subscriptions/{sid}", headers=b).status_code == 404
    assert client.get("/v1/subscriptions", headers=b).json() == {"subscriptions": []}
    assert [
        s["id"] for s in client.get("/v1/subscriptions", headers=admin).json()["subscriptions"]
    ] == [sid]

    unknown = client.post("/v1/subscriptions", json=body | {"actor_id": "nobody"}, headers=a)
    assert unknown.status_code == 404
    both = body | {"query": {"q": "wind"}}
    assert client.post("/v1/subscriptions", json=both, headers=a).status_code == 422
    ftp = body | {"url": "ftp://crm.example/hook"}
    assert client.post("/v1/subscriptions", json=ftp, headers=a).status_code == 422
    short = body | {"secret": "short"}
    assert client.post("/v1/subscriptions", json=short, headers=a).status_code == 422

    assert client.delete(f"/v1/subscriptions/{sid}", headers=a).status_code == 204
    assert client.get(f"/v1/subscriptions/{sid}", headers=a).status_code == 404
    runtime.close()
