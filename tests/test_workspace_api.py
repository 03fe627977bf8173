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
from tests.test_api import assert_problem, profile


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


# --- name lookup -----------------------------------------------------------------------------


def test_actors_by_name(client: TestClient) -> None:
    names = {
        "ibk": ("IBK-INNOVATION GMBH & CO. KG", "DE"),
        "uibk": ("UNIVERSITAET INNSBRUCK", "AT"),
        "fhg": ("FRAUNHOFER GESELLSCHAFT ZUR FOERDERUNG DER ANGEWANDTEN FORSCHUNG E.V.", "DE"),
        "fhg-at": ("Fraunhofer Austria Research GmbH", "AT"),
    }
    for actor_id, (name, country) in names.items():
        body = profile(["wind"], country=country, name=name)
        assert client.put(f"/v1/actors/{actor_id}", json=body).status_code == 201

    def found(q: str, **params: Any) -> list[str]:
        response = client.get("/v1/actors", params={"q": q, **params})
        assert response.status_code == 200, response.text
        return [a["id"] for a in response.json()["actors"]]

    assert found("IBK-INNOVATION") == ["ibk"]
    assert found("ibk innovation gmbh")[0] == "ibk"
    assert found("innsbruck") == ["uibk"], "a word of the name"
    assert found("fraunhoffer")[:2] == ["fhg-at", "fhg"], "typos forgiven, shorter name first"
    assert found("fraunhofer", country="AT") == ["fhg-at"]
    assert found("uibk") == ["uibk"], "the id itself"
    assert found("quantum bakery") == []
    page = client.get("/v1/actors", params={"q": "fraunhofer", "limit": 1}).json()
    assert page["total"] == 2 and len(page["actors"]) == 1 and page["next_cursor"] is None
    client.put("/v1/actors/ibk", json=profile(["wind"], name="Renamed Composites"))
    assert found("renamed") == ["ibk"], "a renamed actor is found by its new name at once"
    assert_problem(client.get("/v1/actors", params={"q": ""}), 422, "q")
