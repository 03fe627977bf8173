"""The HTTP API with FastAPI's TestClient: every endpoint and every error path.

Runs on the fake embedder; the profiles are texts written by the project for these tests.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.config import Settings
from service.embedding.fake import FakeEmbedder
from service.keys import KeyFile
from service.runtime import Runtime
from tests.factories import actor_data

WIND = "offshore wind turbine blade composite materials"


def profile(texts: list[str], **kwargs: Any) -> dict[str, Any]:
    data = actor_data("ignored", texts, **kwargs)
    del data["id"]
    return data


def seed(client: TestClient, headers: dict[str, str] | None = None) -> None:
    for i in range(8):
        body = profile([f"{WIND} part {i}"], country="AT" if i < 5 else "DE")
        assert client.put(f"/v1/actors/wind-{i}", json=body, headers=headers).status_code == 201
    body = profile(["sourdough bakery"], country="IT", kind="research")
    assert client.put("/v1/actors/bakery", json=body, headers=headers).status_code == 201


def rebuild(client: TestClient, headers: dict[str, str] | None = None) -> dict[str, Any]:
    started = client.post("/v1/index/rebuild", headers=headers)
    assert started.status_code == 202, started.text
    services = client.app.state.services  # type: ignore[attr-defined]
    job = services.jobs.wait(started.json()["id"])
    assert job.state == "succeeded", job.error
    body: dict[str, Any] = client.get("/v1/index", headers=headers).json()
    return body


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime), raise_server_exceptions=False) as test_client:
        yield test_client


def assert_problem(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    assert "Traceback" not in response.text
    if field is not None:
        assert field in [e["field"] for e in body.get("errors", [])], body
    return body


# --- actors ----------------------------------------------------------------------------------


def test_put_get_replace_delete(client: TestClient) -> None:
    created = client.put("/v1/actors/acme", json=profile([WIND], sectors=["C28"]))
    assert created.status_code == 201
    assert created.json()["status"] == "created"
    # No generation was ever built: the live delta serves it at once.
    assert created.json()["matchable"] == {"as_query": True, "as_candidate": True}
    got = client.get("/v1/actors/acme").json()
    assert got["sectors"] == ["C28"] and got["documents"][0]["text"] == WIND
    replaced = client.put("/v1/actors/acme", json=profile(["hydrogen storage"]))
    assert replaced.status_code == 200 and replaced.json()["status"] == "replaced"
    assert client.delete("/v1/actors/acme").status_code == 204
    assert_problem(client.get("/v1/actors/acme"), 404)
    assert_problem(client.delete("/v1/actors/acme"), 404)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kind": "startup"}, "kind"),
        ({"country": "XX"}, "country"),
        ({"documents": []}, "documents"),
        ({"id": "someone-else"}, "id"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_put_invalid_profile_names_the_field(
    client: TestClient, change: dict[str, Any], field: str
) -> None:
    assert_problem(client.put("/v1/actors/acme", json=profile([WIND]) | change), 422, field)
    assert client.get("/v1/actors/acme").status_code == 404, "nothing was written"


def test_put_limits(client: TestClient) -> None:
    long_text = profile(["x" * 100_001])
    assert_problem(client.put("/v1/actors/a", json=long_text), 422, "documents[0].text")
    many = profile(["x"])
    many["documents"] = [{"id": f"d{i}", "kind": "description", "text": "x"} for i in range(1001)]
    assert_problem(client.put("/v1/actors/a", json=many), 422, "documents")
    assert_problem(client.put("/v1/actors/a", content=b"{not json"), 422)


def test_request_body_limit(runtime: Runtime) -> None:
    runtime.settings.max_body_bytes = 2_000
    with TestClient(create_app(runtime)) as small:
        body = assert_problem(small.put("/v1/actors/a", json=profile(["x" * 5_000])), 413)
        assert "2000 bytes" in body["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
            yield b'{"name": "' + b"x" * 3_000
            yield b'"}'

        assert_problem(small.put("/v1/actors/a", content=chunks()), 413)


def test_list_pagination_and_filters(client: TestClient) -> None:
    seed(client)
    first = client.get("/v1/actors", params={"limit": 4}).json()
    assert len(first["actors"]) == 4 and first["total"] == 9 and first["next_cursor"]
    rest = client.get("/v1/actors", params={"limit": 10, "cursor": first["next_cursor"]}).json()
    assert len(rest["actors"]) == 5 and rest["next_cursor"] is None
    assert {a["id"] for a in first["actors"]}.isdisjoint(a["id"] for a in rest["actors"])
    german = client.get("/v1/actors", params={"country": "de"}).json()
    assert german["total"] == 3
    assert client.get("/v1/actors", params={"kind": "research"}).json()["total"] == 1
    assert_problem(client.get("/v1/actors", params={"cursor": "%%%"}), 422, "cursor")
    assert_problem(client.get("/v1/actors", params={"limit": 0}), 422, "limit")


def test_bulk_ndjson_and_array(client: TestClient) -> None:
    lines = [
        json.dumps(profile([WIND]) | {"id": "b1"}),
        "{broken",
        json.dumps(profile([WIND], country="XX") | {"id": "b2"}),
        json.dumps(profile(["solar"]) | {"id": "b3"}),
    ]
    result = client.post("/v1/actors/bulk", content="\n".join(lines)).json()
    assert (result["created"], result["replaced"], result["rejected"]) == (2, 0, 2)
    assert [r["status"] for r in result["results"]] == [
        "created",
        "rejected",
        "rejected",
        "created",
    ]
    assert "country" in result["results"][2]["error"]
    array = [profile(["again"]) | {"id": "b1"}, {"id": "b4"}]
    result = client.post("/v1/actors/bulk", json=array).json()
    assert [r["status"] for r in result["results"]] == ["replaced", "rejected"]
    assert client.get("/v1/actors/b3").status_code == 200


def test_bulk_limits(runtime: Runtime) -> None:
    runtime.settings.max_bulk_lines = 2
    runtime.settings.max_bulk_bytes = 5_000
    with TestClient(create_app(runtime)) as small:
        three = "\n".join(json.dumps(profile(["x"]) | {"id": f"a{i}"}) for i in range(3))
        assert (
            "limit is 2"
            in assert_problem(small.post("/v1/actors/bulk", content=three), 413)["detail"]
        )
        big = json.dumps(profile(["x" * 6_000]) | {"id": "a"})
        assert_problem(small.post("/v1/actors/bulk", content=big), 413)
        assert small.get("/v1/actors").json()["total"] == 0, "a rejected request stores nothing"


# --- matching --------------------------------------------------------------------------------


def test_match_and_search_before_any_rebuild(client: TestClient) -> None:
    """A fresh deployment: the first profiles are matchable without a rebuild by hand."""
    assert client.get("/readyz").json()["status"] == "ready"
    assert client.get("/v1/search", params={"q": "wind"}).json()["results"] == []
    seed(client)
    ready = client.get("/readyz").json()
    assert ready["stale"] is True and ready["generation"] is None and ready["pending_changes"] == 9
    found = client.get("/v1/search", params={"q": WIND, "limit": 3}).json()
    assert next(r["actor"]["id"] for r in found["results"]).startswith("wind-")
    matched = client.post("/v1/match", json={"actor_id": "wind-0", "limit": 3}).json()
    assert len(matched["matches"]) == 3 and "wind-0" not in {
        m["actor"]["id"] for m in matched["matches"]
    }
    assert client.get("/v1/index").json()["state"] == "empty"
    rebuild(client)
    assert client.get("/readyz").json()["stale"] is False


def test_match_by_actor_and_by_profile(client: TestClient) -> None:
    seed(client)
    rebuild(client)
    by_id = client.post("/v1/match", json={"actor_id": "wind-0", "limit": 5}).json()
    ids = [m["actor"]["id"] for m in by_id["matches"]]
    assert len(ids) == 5 and "wind-0" not in ids and "bakery" not in ids
    assert by_id["generation"] and by_id["model"] == "fake/hashing-bow"
    first = by_id["matches"][0]
    assert set(first["actor"]) >= {"id", "name", "kind", "country", "region", "sectors"}
    assert first["evidence"][0]["query_text"] is None, "query passages only with explain"

    body = {"profile": profile([WIND], country="DE"), "exclude_same": ["country"], "explain": True}
    by_profile = client.post("/v1/match", json=body).json()
    assert by_profile["matches"] and all(
        m["actor"]["country"] != "DE" for m in by_profile["matches"]
    )
    assert by_profile["matches"][0]["evidence"][0]["query_text"] == WIND
    assert "offshore wind turbine" in by_profile["matches"][0]["evidence"][0]["key_terms"]
    assert first["evidence"][0]["key_terms"] is None


def test_match_exclude_actors_still_fills_limit(client: TestClient) -> None:
    seed(client)
    rebuild(client)
    known = [f"wind-{i}" for i in range(1, 5)]
    body = {"actor_id": "wind-0", "limit": 4, "exclude_actors": known}
    ids = [m["actor"]["id"] for m in client.post("/v1/match", json=body).json()["matches"]]
    assert len(ids) == 4 and not set(ids) & set(known)
    filtered = {"actor_id": "wind-0", "limit": 3, "filters": {"country": ["de"]}}
    matches = client.post("/v1/match", json=filtered).json()["matches"]
    assert [m["actor"]["country"] for m in matches] == ["DE", "DE", "DE"]


def test_match_errors(client: TestClient) -> None:
    seed(client)
    rebuild(client)
    assert_problem(client.post("/v1/match", json={"limit": 3}), 422)
    both = {"actor_id": "wind-0", "profile": profile([WIND])}
    assert_problem(client.post("/v1/match", json=both), 422)
    assert_problem(
        client.post("/v1/match", json={"actor_id": "wind-0", "limit": 201}), 422, "limit"
    )
    too_many = {"actor_id": "wind-0", "exclude_actors": [f"x{i}" for i in range(5_001)]}
    assert_problem(client.post("/v1/match", json=too_many), 422, "exclude_actors")
    bad_same = {"actor_id": "wind-0", "exclude_same": ["planet"]}
    assert_problem(client.post("/v1/match", json=bad_same), 422)
    assert_problem(client.post("/v1/match", json={"actor_id": "nobody"}), 404)
    assert client.post("/v1/match", json={"actor_id": "wind-0", "limit": 200}).status_code == 200


def test_actor_matches_route(client: TestClient) -> None:
    seed(client)
    rebuild(client)
    response = client.get(
        "/v1/actors/wind-0/matches", params={"limit": 3, "exclude_same": "country"}
    )
    matches = response.json()["matches"]
    assert len(matches) == 3 and all(m["actor"]["country"] == "DE" for m in matches)
    german = client.get("/v1/actors/wind-0/matches", params={"country": "AT", "limit": 2})
    assert [m["actor"]["country"] for m in german.json()["matches"]] == ["AT", "AT"]
    assert_problem(client.get("/v1/actors/nobody/matches"), 404)


def test_search_with_facets_and_filters(client: TestClient) -> None:
    seed(client)
    rebuild(client)
    result = client.get("/v1/search", params={"q": WIND, "limit": 8}).json()
    assert len(result["results"]) == 8
    # Facets count the whole ranked pool (the bakery too, scored but not on this page).
    assert result["facets"]["country"] == {"AT": 5, "DE": 3, "IT": 1}
    assert result["facets"]["kind"] == {"company": 8, "research": 1}
    only_research = client.get("/v1/search", params={"q": WIND, "kind": "research"}).json()
    assert [r["actor"]["id"] for r in only_research["results"]] == ["bakery"]
    assert_problem(client.get("/v1/search"), 422, "q")
    assert_problem(client.get("/v1/search", params={"q": "x", "limit": 500}), 422, "limit")


def test_new_actor_is_a_candidate_at_once_and_a_deleted_one_gone_at_once(
    client: TestClient,
) -> None:
    seed(client)
    rebuild(client)
    query = {"q": f"{WIND} recycling", "limit": 1}
    put = client.put("/v1/actors/newcomer", json=profile([f"{WIND} recycling"], country="RO"))
    assert put.json()["matchable"] == {"as_query": True, "as_candidate": True}
    assert put.json()["pending_changes"] == 1
    assert client.get("/v1/search", params=query).json()["results"][0]["actor"]["id"] == "newcomer"
    as_query = client.post("/v1/match", json={"actor_id": "newcomer", "limit": 3}).json()
    assert len(as_query["matches"]) == 3
    status = rebuild(client)
    assert status["pending_changes"] == 0 and status["actors"] == 10
    assert client.get("/v1/search", params=query).json()["results"][0]["actor"]["id"] == "newcomer"
    assert client.delete("/v1/actors/newcomer").status_code == 204
    after = client.get("/v1/search", params=query | {"limit": 20}).json()
    assert "newcomer" not in [r["actor"]["id"] for r in after["results"]]


def test_replaced_profile_is_searched_by_its_new_text_before_rebuild(client: TestClient) -> None:
    seed(client)
    rebuild(client)
    client.put("/v1/actors/wind-0", json=profile(["quantum sensing cryogenic magnetometers"]))
    top = client.get("/v1/search", params={"q": "cryogenic magnetometers", "limit": 1}).json()
    assert top["results"][0]["actor"]["id"] == "wind-0"
    assert "quantum" in top["results"][0]["evidence"][0]["text"]
    wind = client.get("/v1/search", params={"q": f"{WIND} part 0", "limit": 20}).json()
    old_texts = [e["text"] for r in wind["results"] for e in r["evidence"]]
    assert f"{WIND} part 0" not in old_texts, "the replaced text is gone at once"


# --- index and operations -------------------------------------------------------------------


def test_index_status_and_rebuild_conflict(client: TestClient) -> None:
    empty = client.get("/v1/index").json()
    assert empty["state"] == "empty" and empty["generation"] is None
    seed(client)
    services = client.app.state.services  # type: ignore[attr-defined]
    gate = threading.Event()
    real = services.jobs._rebuild

    def slow() -> Any:
        gate.wait(10)
        return real()

    services.jobs._rebuild = slow
    job = client.post("/v1/index/rebuild").json()
    assert client.get("/v1/index").json()["state"] == "building"
    assert_problem(client.post("/v1/index/rebuild"), 409)
    gate.set()
    assert services.jobs.wait(job["id"]).state == "succeeded"
    status = client.get("/v1/index").json()
    assert status["state"] == "ready" and status["chunks"] == 9 and status["built_at"]
    assert client.get(f"/v1/index/jobs/{job['id']}").json()["generation"] == status["generation"]
    assert_problem(client.get("/v1/index/jobs/nope"), 404)


def test_health_ready_metrics_openapi(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    seed(client)
    rebuild(client)
    assert client.get("/readyz").json()["status"] == "ready"
    client.get("/v1/search", params={"q": "wind"})
    metrics = client.get("/metrics").text
    assert 'route="/v1/search"' in metrics and 'route="/v1/actors/{actor_id}"' in metrics
    assert "clustermatch_index_chunks 9.0" in metrics
    assert "clustermatch_rebuild_duration_seconds_count 1.0" in metrics
    spec = client.get("/openapi.json").json()
    for path in (
        "/v1/actors/{actor_id}",
        "/v1/actors",
        "/v1/actors/bulk",
        "/v1/match",
        "/v1/actors/{actor_id}/matches",
        "/v1/search",
        "/v1/index/rebuild",
        "/v1/index",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in spec["paths"], path
    assert "examples" in json.dumps(spec["paths"]["/v1/match"])
    assert client.get("/docs").status_code == 200
    assert_problem(client.get("/v1/nothing-here"), 404)


def test_unexpected_errors_leak_no_trace(client: TestClient, monkeypatch: Any) -> None:
    seed(client)
    rebuild(client)
    services = client.app.state.services  # type: ignore[attr-defined]

    def boom(*_: Any, **__: Any) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(services.runtime.matcher, "search", boom)
    body = assert_problem(client.get("/v1/search", params={"q": "x"}), 500)
    assert "secret internals" not in json.dumps(body)


# --- keys, scopes, tenants and visibility ----------------------------------------------------


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, dict[str, str]]]]:
    keys_file = tmp_path / "keys.json"
    settings = Settings(data_dir=tmp_path / "data", keys_file=keys_file)
    keys = KeyFile(keys_file)

    def bearer(
        scopes: tuple[str, ...], tenant: str, networks: tuple[str, ...] = ()
    ) -> dict[str, str]:
        return {"Authorization": f"Bearer {keys.create(scopes, tenant, networks)}"}

    headers = {
        "admin": bearer(("admin",), "ops"),
        "a_writer": bearer(("read", "write"), "agency-a", ("alps",)),
        "b_network": bearer(("read",), "agency-b", ("alps",)),
        "c_outsider": bearer(("read", "write"), "agency-c"),
    }
    runtime = Runtime(settings, embedder=FakeEmbedder())
    with TestClient(create_app(runtime), raise_server_exceptions=False) as test_client:
        yield test_client, headers
    runtime.close()


def test_auth_errors(keyed: tuple[TestClient, dict[str, dict[str, str]]]) -> None:
    client, h = keyed
    missing = assert_problem(client.get("/v1/actors"), 401)
    assert "Bearer" in missing["detail"]
    assert client.get("/v1/actors").headers["www-authenticate"] == "Bearer"
    assert_problem(client.get("/v1/actors", headers={"Authorization": "Bearer cm_x_y"}), 401)
    assert_problem(client.get("/v1/actors", headers={"Authorization": "Bearer nonsense"}), 401)
    body = profile([WIND])
    assert_problem(client.put("/v1/actors/a", json=body, headers=h["b_network"]), 403)
    assert_problem(client.post("/v1/index/rebuild", headers=h["a_writer"]), 403)
    assert client.put("/v1/actors/a", json=body, headers=h["a_writer"]).status_code == 201
    assert_problem(client.put("/v1/actors/a", json=body, headers=h["c_outsider"]), 403)
    assert_problem(client.delete("/v1/actors/a", headers=h["c_outsider"]), 403)
    assert client.get("/healthz").status_code == 200, "liveness needs no key"


def test_visibility_of_evidence(keyed: tuple[TestClient, dict[str, dict[str, str]]]) -> None:
    client, h = keyed
    secret = "confidential hydrogen electrolyser membrane roadmap"
    shared = "network hydrogen electrolyser pilot plant"
    body = profile(["public hydrogen electrolyser research"])
    body["documents"] += [
        {"id": "priv", "kind": "self_assessment", "text": secret, "visibility": "private"},
        {"id": "net", "kind": "workshop_note", "text": shared, "visibility": "network"},
    ]
    assert client.put("/v1/actors/h2", json=body, headers=h["a_writer"]).status_code == 201
    other = profile(["bakery"])
    assert client.put("/v1/actors/other", json=other, headers=h["c_outsider"]).status_code == 201
    rebuild(client, h["admin"])

    def evidence_for(who: str, q: str) -> set[str]:
        response = client.get("/v1/search", params={"q": q, "limit": 1}, headers=h[who])
        (result,) = response.json()["results"]
        assert result["actor"]["id"] == "h2", "found by the passages this caller may see"
        return {e["text"] for e in result["evidence"]}

    assert secret in evidence_for("a_writer", secret)
    assert secret not in evidence_for("b_network", secret)
    assert shared in evidence_for("b_network", shared)
    assert secret not in evidence_for("c_outsider", secret)
    assert shared not in evidence_for("c_outsider", shared)

    outsider_view = client.get("/v1/actors/h2", headers=h["c_outsider"]).json()
    assert [d["id"] for d in outsider_view["documents"]] == ["d0"]
    assert outsider_view["hidden_documents"] == 2
    owner_view = client.get("/v1/actors/h2", headers=h["a_writer"]).json()
    assert owner_view["hidden_documents"] == 0

    explained = client.post(
        "/v1/match", json={"actor_id": "h2", "explain": True}, headers=h["c_outsider"]
    ).json()
    passages = json.dumps(explained)
    assert secret not in passages and shared not in passages, "query passages obey it too"


def test_match_modes_and_diversify_over_http(client: TestClient) -> None:
    seed(client)
    body = profile(["need: recycling of composite blades"])
    body["documents"][0]["intent"] = "need"
    assert client.put("/v1/actors/seeker", json=body).status_code == 201
    rebuild(client)
    complement = client.post("/v1/match", json={"actor_id": "seeker", "mode": "complement"})
    assert complement.status_code == 200 and complement.json()["matches"]
    no_needs = client.post("/v1/match", json={"actor_id": "wind-0", "mode": "complement"})
    assert_problem(no_needs, 422, "mode")
    assert_problem(client.post("/v1/match", json={"actor_id": "wind-0", "mode": "other"}), 422)
    varied = client.get("/v1/search", params={"q": WIND, "limit": 4, "diversify": "true"})
    assert len(varied.json()["results"]) == 4
    routed = client.get("/v1/actors/wind-0/matches", params={"diversify": "true", "limit": 3})
    assert len(routed.json()["matches"]) == 3


def test_a_match_shows_the_text_score_and_the_shared_partners(client: TestClient) -> None:
    for actor_id, text, partners in (
        ("query", WIND, ["hub"]),
        ("hub", "sourdough bakery", ["query", "linked"]),
        ("linked", f"{WIND} one", []),
        ("alone", f"{WIND} one", []),
    ):
        body = profile([text], name=f"Name of {actor_id}") | {"partners": partners}
        assert client.put(f"/v1/actors/{actor_id}", json=body).status_code == 201
    rebuild(client)
    plain = client.post("/v1/match", json={"actor_id": "query", "collapse": False}).json()
    assert all(m["similarity"] is None and m["shared_partners"] == [] for m in plain["matches"])
    services = client.app.state.services  # type: ignore[attr-defined]
    services.runtime.matcher.network_weight = 1.0
    body = {"actor_id": "query", "collapse": False}
    matches = {m["actor"]["id"]: m for m in client.post("/v1/match", json=body).json()["matches"]}
    assert matches["linked"]["shared_partners"] == ["hub"]
    assert matches["linked"]["shared_partner_names"] == ["Name of hub"]
    assert matches["linked"]["similarity"] == matches["alone"]["similarity"]
    assert matches["linked"]["score"] > matches["alone"]["score"]
