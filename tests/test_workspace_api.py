"""The API parts the workspace needs: known partners, name lookup, feedback, the competence map.

Runs on the fake embedder; the profiles are texts written by the project for these tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.domain import Actor
from service.errors import InvalidInput
from service.runtime import Runtime
from tests.factories import actor_data
from tests.test_api import assert_problem, profile, rebuild, seed


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime), raise_server_exceptions=False) as test_client:
        yield test_client


# --- partners --------------------------------------------------------------------------------


def test_partners_are_validated_deduplicated_and_stored(client: TestClient) -> None:
    body = profile(["wind"]) | {"partners": ["pic:1", "pic:2", "pic:1"]}
    assert client.put("/v1/actors/acme", json=body).status_code == 201
    assert client.get("/v1/actors/acme").json()["partners"] == ["pic:1", "pic:2"]
    replaced = profile(["wind"]) | {"partners": ["pic:3"]}
    client.put("/v1/actors/acme", json=replaced)
    assert client.get("/v1/actors/acme").json()["partners"] == ["pic:3"]
    assert_problem(
        client.put("/v1/actors/acme", json=profile(["x"]) | {"partners": ["bad id!"]}),
        422,
        "partners[0]",
    )
    assert client.put("/v1/actors/b", json=profile(["x"])).json()["status"] == "created"
    assert client.get("/v1/actors/b").json()["partners"] == []


def test_an_actor_is_not_its_own_partner() -> None:
    with pytest.raises(InvalidInput, match="own partner"):
        Actor.parse(actor_data("a", ["x"]) | {"partners": ["a"]})
