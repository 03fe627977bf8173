"""A real server killed between "computed" and "delivered": after a restart the event that was
written to the outbox is delivered, once, with the id it was written with."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from service.config import CHECKOUT_DIR, Settings
from service.embedding.fake import FakeEmbedder
from service.runtime import Runtime
from tests.alert_receiver import Receiver, receiving
from tests.conftest import unused_port
from tests.factories import actor_data, make_actor
from tests.servers import ServerProcess, start

pytestmark = pytest.mark.slow
WIND = "offshore wind turbine blades made of glass fibre composites"


def start_server(data_dir: Path, port: int, failpoint: str | None) -> ServerProcess:
    env = os.environ | {
        "CLUSTERMATCH_DATA_DIR": str(data_dir),
        "CLUSTERMATCH_WATCH_SECONDS": "0.2",
        "CLUSTERMATCH_ALERT_CHECK_SECONDS": "0.2",
    }
    env.pop("CLUSTERMATCH_FAILPOINT", None)
    if failpoint:
        env["CLUSTERMATCH_FAILPOINT"] = failpoint
    server = start(
        env,
        "--workers",
        "1",
        module="tests.fake_cli",
        port=port,
        cwd=CHECKOUT_DIR,
        capture_stderr=True,
    )
    try:
        server.wait_ready(60)
    except BaseException:
        server.stop()
        raise
    return server


def test_an_event_computed_before_a_crash_is_delivered_after_the_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    setup = Runtime(Settings(data_dir=data_dir), embedder=FakeEmbedder())
    setup.ingestor.upsert([make_actor(f"w{i}", [f"{WIND}, variant {i}"]) for i in range(3)])
    setup.reindexer.run()
    setup.close()
    port = unused_port()
    url = f"http://127.0.0.1:{port}"

    with receiving(Receiver(unused_port())) as receiver:
        first = start_server(data_dir, port, failpoint="alerts-computed")
        try:
            created = httpx.post(
                f"{url}/v1/subscriptions",
                json={"actor_id": "w0", "min_score": 0.3, "url": receiver.url, "secret": "s" * 20},
                timeout=30,
            )
            assert created.status_code == 201, created.text
            subscription = created.json()["id"]
            data = actor_data("w9", [f"{WIND}, recycled at end of life"])
            assert httpx.put(f"{url}/v1/actors/w9", json=data, timeout=30).status_code == 201
            assert httpx.post(f"{url}/v1/index/rebuild", timeout=30).status_code == 202
            assert first.process.stderr is not None
            deadline = time.monotonic() + 60
            for line in first.process.stderr:  # the rebuild is published, the event computed...
                if "FAILPOINT alerts-computed" in line:
                    break
                assert time.monotonic() < deadline
            else:
                pytest.fail("the server ended before computing the event")
        finally:
            first.process.send_signal(signal.SIGKILL)  # ...and it dies before delivering it
            first.process.wait(10)
        assert receiver.received == []

        second = start_server(data_dir, port, failpoint=None)
        try:
            deadline = time.monotonic() + 30
            while not receiver.accepted:
                assert time.monotonic() < deadline, "the pending event was not delivered"
                time.sleep(0.1)
            log = httpx.get(f"{url}/v1/subscriptions/{subscription}/deliveries", timeout=10)
            (delivery,) = log.json()["deliveries"]
        finally:
            second.stop()

    (got,) = receiver.received
    assert got.json["event_id"] == delivery["event_id"] == receiver.accepted[0]
    assert [m["actor"]["id"] for m in got.json["matches"]] == ["w9"]
    assert delivery["state"] == "delivered" and len(delivery["attempts"]) == 1
