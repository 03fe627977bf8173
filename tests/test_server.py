"""The real server: uvicorn on a free loopback port, driven over HTTP; and the open-mode guard."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from service.api.app import create_app
from service.cli import is_loopback, main
from service.runtime import Runtime
from tests.conftest import unused_port
from tests.factories import actor_data

pytestmark = pytest.mark.slow


@pytest.fixture
def server(runtime: Runtime) -> Iterator[str]:
    port = unused_port()
    config = uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port, log_level="warning")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not instance.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(10)


def test_over_http(server: str) -> None:
    with httpx.Client(base_url=server, timeout=30) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        for i, country in enumerate(["AT", "DE", "IT"]):
            data = actor_data(f"a{i}", [f"wind turbine blades {i}"], country=country)
            del data["id"]
            assert http.put(f"/v1/actors/a{i}", json=data).status_code == 201
        job = http.post("/v1/index/rebuild").json()
        deadline = time.monotonic() + 30
        while http.get("/v1/index").json()["state"] != "ready":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert http.get("/readyz").status_code == 200
        result = http.get("/v1/search", params={"q": "wind turbine blades", "limit": 3}).json()
        assert len(result["results"]) == 3 and result["facets"]["country"]
        matches = http.post("/v1/match", json={"actor_id": "a0", "limit": 2}).json()["matches"]
        assert {m["actor"]["id"] for m in matches} == {"a1", "a2"}
        assert http.get(f"/v1/index/jobs/{job['id']}").json()["state"] == "succeeded"
        problem = http.get("/v1/actors/unknown")
        assert problem.status_code == 404
        assert problem.headers["content-type"] == "application/problem+json"


def test_open_mode_refuses_non_loopback(
    runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--host", "0.0.0.0"], runtime) == 1
    assert "without API keys" in capsys.readouterr().err
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("10.0.0.5") and not is_loopback("example.org")


def test_requests_are_served_during_a_bulk_import(server: str) -> None:
    import json

    lines = []
    for i in range(3_000):
        data = actor_data(f"bulk-{i}", [f"competence {i} in sensor systems. " * 20])
        lines.append(json.dumps(data))
    finished: dict[str, float] = {}

    def import_all() -> None:
        with httpx.Client(base_url=server, timeout=300) as http:
            response = http.post("/v1/actors/bulk", content="\n".join(lines))
            assert response.json()["created"] == 3_000
        finished["bulk"] = time.monotonic()

    worker = threading.Thread(target=import_all)
    worker.start()
    answered = []
    with httpx.Client(base_url=server, timeout=30) as http:
        time.sleep(0.3)  # the import is under way
        for _ in range(5):
            assert http.get("/healthz").status_code == 200
            assert http.get("/v1/actors", params={"limit": 1}).status_code == 200
            answered.append(time.monotonic())
    worker.join(300)
    assert "bulk" in finished
    assert answered[-1] < finished["bulk"], "other requests were answered while the import ran"


def test_the_cli_asks_a_running_server(
    server: str, runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    with httpx.Client(base_url=server, timeout=30) as http:
        for i in range(3):
            data = actor_data(f"c{i}", [f"hydrogen electrolyser stacks {i}"])
            del data["id"]
            assert http.put(f"/v1/actors/c{i}", json=data).status_code == 201
        remote = http.get("/v1/search", params={"q": "hydrogen electrolyser", "limit": 2}).json()
    assert (
        main(
            ["search", "hydrogen electrolyser", "--limit", "2", "--json", "--server", server],
            runtime,
        )
        == 0
    )
    answered = json.loads(capsys.readouterr().out)
    assert answered == remote, "the CLI prints what the server answered, under the same names"
    assert main(["match", "c0", "--server", server], runtime) == 0
    assert "c1" in capsys.readouterr().out
    assert main(["search", "x", "--country", "Germany", "--server", server], runtime) == 2
