"""The API contract for real-world input: optional fields, validated filters, unknown parameters,
facets over the ranked pool, offline docs. Fake embedder; texts written for these tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.runtime import Runtime
from tests.test_api import WIND, assert_problem, profile


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime), raise_server_exceptions=False) as test_client:
        yield test_client


def seed(client: TestClient) -> None:
    rows = [("at", "AT", "company"), ("gb", "GB", "company"), ("gr", "GR", "research")]
    rows += [("de", "DE", "company"), ("de2", "DE", "research"), ("nowhere", None, "company")]
    for actor_id, country, kind in rows:
        body = profile([f"{WIND} {actor_id}"], kind=kind) | {"country": country}
        if country is None:
            del body["country"]
        assert client.put(f"/v1/actors/{actor_id}", json=body).status_code == 201, actor_id


def ids(response: object) -> set[str]:
    body = response.json()  # type: ignore[attr-defined]
    return {m["actor"]["id"] for m in body.get("results", body.get("matches", []))}


def test_country_is_optional_and_unknown_is_never_the_same(client: TestClient) -> None:
    seed(client)
    got = client.get("/v1/actors/nowhere").json()
    assert got["country"] is None
    # exclude_same country from an actor of unknown country excludes nobody for it...
    body = {"actor_id": "nowhere", "exclude_same": ["country"], "limit": 10}
    assert ids(client.post("/v1/match", json=body)) == {"at", "gb", "gr", "de", "de2"}
    # ...and from a known country never drops the unknown one.
    body = {"actor_id": "de", "exclude_same": ["country"], "limit": 10}
    assert ids(client.post("/v1/match", json=body)) == {"at", "gb", "gr", "nowhere"}
    assert ids(client.get("/v1/search", params={"q": WIND, "country": "DE"})) == {"de", "de2"}


def test_filter_values_are_normalised(client: TestClient) -> None:
    seed(client)
    eu_spelling = client.get("/v1/search", params=[("q", WIND), ("country", "uk,EL")])
    assert ids(eu_spelling) == {"gb", "gr"}
    body = {"actor_id": "at", "filters": {"country": ["uk"], "kind": ["Company"]}}
    assert ids(client.post("/v1/match", json=body)) == {"gb"}
    old_spelling = {"actor_id": "at", "filters": {"countries": ["DE"], "kinds": ["research"]}}
    assert ids(client.post("/v1/match", json=old_spelling)) == {"de2"}, "plural still read"


@pytest.mark.parametrize(
    ("params", "field", "hint"),
    [
        ({"country": "Germany"}, "country[0]", "ISO 3166"),
        ({"country": "ZZ"}, "country[0]", "ISO 3166"),
        ({"kind": "startup"}, "kind[0]", "company"),
        ({"region": "Upper Austria"}, "region[0]", "NUTS"),
        ({"sector": "cars"}, "sector[0]", "NACE"),
        ({"contry": "DE"}, "contry", "did you mean 'country'"),
    ],
)
def test_bad_filter_values_and_unknown_parameters_are_422(
    client: TestClient, params: dict[str, str], field: str, hint: str
) -> None:
    seed(client)
    problem = assert_problem(client.get("/v1/search", params={"q": WIND} | params), 422, field)
    assert hint in problem["detail"], problem


def test_bad_filters_in_post_and_actor_routes(client: TestClient) -> None:
    seed(client)
    body = {"actor_id": "at", "filters": {"country": ["Germany"]}}
    assert_problem(client.post("/v1/match", json=body), 422, "filters.country[0]")
    body = {"actor_id": "at", "filters": {"nation": ["DE"]}}
    assert_problem(client.post("/v1/match", json=body), 422, "filters.nation")
    assert_problem(client.get("/v1/actors", params={"kind": "startup"}), 422, "kind[0]")
    assert_problem(client.get("/v1/actors", params={"sort": "name"}), 422, "sort")
    assert_problem(
        client.get("/v1/actors/at/matches", params={"exclude_same": "colour"}),
        422,
        "exclude_same[0]",
    )


def test_facets_describe_the_ranked_pool_not_the_page(client: TestClient) -> None:
    seed(client)
    body = client.get("/v1/search", params={"q": WIND, "limit": 1}).json()
    assert len(body["results"]) == 1
    assert body["facets_over"] == 6
    assert body["facets"]["country"] == {"DE": 2, "AT": 1, "GB": 1, "GR": 1}
    assert body["facets"]["kind"] == {"company": 4, "research": 2}
    only_de = client.get("/v1/search", params={"q": WIND, "country": "DE", "limit": 1}).json()
    assert only_de["facets"]["kind"] == {"company": 1, "research": 1}


def test_docs_are_served_without_a_cdn(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        assert "cdn." not in html and "unpkg" not in html, page
        for src in [s.split('"')[1] for s in html.split("src=")[1:]]:
            assert src.startswith("/"), src
            assert client.get(src).status_code == 200, src
    swagger = client.get("/docs").text
    css = swagger.split('href="')[1].split('"')[0]
    assert client.get(css).status_code == 200


def test_open_mode_declares_no_security_scheme(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "securitySchemes" not in spec.get("components", {})
    assert all("security" not in op for path in spec["paths"].values() for op in path.values())


def test_openapi_documents_problem_json_and_enums(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    search = spec["paths"]["/v1/search"]["get"]
    kind = next(p for p in search["parameters"] if p["name"] == "kind")
    assert "startup" not in str(kind) and "company" in str(kind)
    assert "application/problem+json" in search["responses"]["422"]["content"]
    assert "application/json" not in search["responses"]["422"]["content"]
