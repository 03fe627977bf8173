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

__all__ = ["keyed"]  # a fixture of test_api, shared here
from tests.test_api import WIND, assert_problem, keyed, profile, rebuild, seed


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
    assert found("uibk")[0] == "uibk", "the id itself comes first"
    assert found("quantum bakery") == []
    page = client.get("/v1/actors", params={"q": "fraunhofer", "limit": 1}).json()
    assert page["total"] == 2 and len(page["actors"]) == 1 and page["next_cursor"] is None
    client.put("/v1/actors/ibk", json=profile(["wind"], name="Renamed Composites"))
    assert found("renamed") == ["ibk"], "a renamed actor is found by its new name at once"
    assert_problem(client.get("/v1/actors", params={"q": ""}), 422, "q")


# --- feedback ------------------------------------------------------------------------------


def ids(response: Any, key: str = "matches") -> list[str]:
    assert response.status_code == 200, response.text
    return [m["actor"]["id"] for m in response.json()[key]]


def test_feedback_dismisses_and_marks_contacts(client: TestClient) -> None:
    seed(client)
    body = profile([f"{WIND} part 0"]) | {"partners": ["wind-1"]}
    client.put("/v1/actors/wind-0", json=body)
    rebuild(client)
    matches = "/v1/actors/wind-0/matches"
    before = ids(client.get(matches, params={"limit": 7}))
    assert "wind-1" in before and "wind-2" in before

    given = client.post(
        "/v1/feedback",
        json={"actor_id": "wind-2", "for_actor": "wind-0", "label": "not_relevant"},
    )
    assert given.status_code == 201, given.text
    assert given.json()["tenant"] == "local" and given.json()["context"] == "actor:wind-0"
    assert given.json()["updated_at"]
    client.post(
        "/v1/feedback",
        json={"actor_id": "wind-3", "for_actor": "wind-0", "label": "met", "note": "fair"},
    )
    after = ids(client.get(matches, params={"limit": 7}))
    assert "wind-2" not in after and len(after) == 7, "dismissed, and the list is still full"
    assert "wind-3" in after
    new_only = ids(client.get(matches, params={"limit": 5, "new_contacts_only": True}))
    assert not {"wind-1", "wind-2", "wind-3"} & set(new_only) and len(new_only) == 5
    posted = client.post(
        "/v1/match", json={"actor_id": "wind-0", "limit": 5, "new_contacts_only": True}
    )
    assert ids(posted) == new_only
    other_actor = ids(client.get("/v1/actors/wind-4/matches", params={"limit": 8}))
    assert "wind-2" in other_actor, "dismissed only in the context it was given in"

    relabelled = {"actor_id": "wind-2", "for_actor": "wind-0", "label": "relevant"}
    assert client.post("/v1/feedback", json=relabelled).status_code == 201
    assert "wind-2" in ids(client.get(matches, params={"limit": 7})), "a new label replaces"

    listed = client.get("/v1/feedback", params={"for_actor": "wind-0"}).json()["feedback"]
    assert {(f["actor_id"], f["label"]) for f in listed} == {
        ("wind-2", "relevant"),
        ("wind-3", "met"),
    }
    summary = client.get("/v1/feedback/summary").json()["tenants"]
    assert summary == [
        {
            "tenant": "local",
            "labels": {"met": 1, "relevant": 1},
            "suggestions": 2,
            "contacts": 1,
            "contact_rate": 0.5,
        }
    ]
    exported = client.get("/v1/feedback", params={"format": "csv"})
    assert exported.headers["content-type"].startswith("text/csv")
    lines = exported.text.splitlines()
    assert lines[0].startswith("tenant,context,actor_id,label") and len(lines) == 3
    assert "wind-3,met,wind-0,,fair" in exported.text


def test_feedback_on_search_results(client: TestClient) -> None:
    seed(client)
    rebuild(client)
    search = {"q": WIND, "limit": 8}
    assert "wind-5" in ids(client.get("/v1/search", params=search), "results")
    query = f"  {WIND.upper()} "
    dismissed = {"actor_id": "wind-5", "query": query, "label": "not_relevant"}
    assert client.post("/v1/feedback", json=dismissed).json()["context"] == f"search:{WIND}"
    assert "wind-5" not in ids(client.get("/v1/search", params=search), "results")
    other = {"q": "composite materials", "limit": 9}
    assert "wind-5" in ids(client.get("/v1/search", params=other), "results")
    client.post("/v1/feedback", json={"actor_id": "wind-6", "query": "x", "label": "contacted"})
    new_only = ids(client.get("/v1/search", params=other | {"new_contacts_only": True}), "results")
    assert "wind-6" not in new_only and "wind-5" in new_only


def test_search_for_an_actor(client: TestClient) -> None:
    seed(client)
    client.put("/v1/actors/wind-0", json=profile([WIND]) | {"partners": ["wind-1"]})
    rebuild(client)
    params: dict[str, Any] = {"q": WIND, "limit": 8, "for_actor": "wind-0"}
    found = ids(client.get("/v1/search", params=params), "results")
    assert "wind-0" not in found and "wind-1" in found
    abroad = client.get("/v1/search", params=params | {"exclude_same": "country"})
    assert {r["actor"]["country"] for r in abroad.json()["results"]} == {"DE", "IT"}
    new_only = ids(client.get("/v1/search", params=params | {"new_contacts_only": True}), "results")
    assert "wind-1" not in new_only
    assert_problem(
        client.get("/v1/search", params={"q": WIND, "exclude_same": "country"}), 422, "exclude_same"
    )
    assert_problem(client.get("/v1/search", params={"q": WIND, "for_actor": "nobody"}), 404)


def test_feedback_errors(client: TestClient) -> None:
    seed(client)
    bad = [
        ({"actor_id": "wind-1", "label": "relevant"}, None),
        ({"actor_id": "wind-1", "for_actor": "wind-0", "label": "great"}, "label"),
        ({"actor_id": "wind-1", "for_actor": "wind-1", "label": "met"}, None),
        ({"actor_id": "wind-1", "query": "x", "label": "met", "extra": 1}, "extra"),
    ]
    for body, field in bad:
        assert_problem(client.post("/v1/feedback", json=body), 422, field)
    unknown = {"actor_id": "nobody", "for_actor": "wind-0", "label": "met"}
    assert_problem(client.post("/v1/feedback", json=unknown), 404)
    assert_problem(client.get("/v1/feedback", params={"label": "great"}), 422, "label[0]")


def test_feedback_belongs_to_the_tenant(
    keyed: tuple[TestClient, dict[str, dict[str, str]]],
) -> None:
    client, h = keyed
    for i in range(4):
        body = profile([f"{WIND} {i}"])
        assert client.put(f"/v1/actors/w{i}", json=body, headers=h["a_writer"]).status_code == 201
    rebuild(client, h["admin"])
    dismiss = {"actor_id": "w1", "for_actor": "w0", "label": "not_relevant"}
    assert client.post("/v1/feedback", json=dismiss, headers=h["b_network"]).status_code == 201
    assert client.post("/v1/feedback", json=dismiss | {"label": "met"}, headers=h["c_outsider"])

    def matched(who: str) -> list[str]:
        return ids(client.get("/v1/actors/w0/matches", headers=h[who]))

    assert "w1" not in matched("b_network")
    assert "w1" in matched("a_writer") and "w1" in matched("c_outsider")
    own = client.get("/v1/feedback", headers=h["b_network"]).json()["feedback"]
    assert [(f["tenant"], f["label"]) for f in own] == [("agency-b", "not_relevant")]
    assert_problem(
        client.get("/v1/feedback", params={"tenant": "agency-c"}, headers=h["b_network"]), 403
    )
    everyone = client.get("/v1/feedback/summary", headers=h["admin"]).json()["tenants"]
    assert [t["tenant"] for t in everyone] == ["agency-b", "agency-c"]
    one = client.get("/v1/feedback/summary", headers=h["c_outsider"]).json()["tenants"]
    assert one[0]["contact_rate"] == 1.0 and len(one) == 1
    assert_problem(client.post("/v1/feedback", json=dismiss), 401)


# --- competence map --------------------------------------------------------------------------


def test_competence_map(client: TestClient, runtime: Runtime) -> None:
    empty = client.get("/v1/map")
    assert empty.status_code == 200 and empty.json()["state"] == "empty"
    seed(client)
    generation = rebuild(client)["generation"]
    first = client.get("/v1/map")
    assert first.status_code in (200, 202), first.text
    if first.status_code == 202:
        assert first.json()["state"] == "computing" and first.headers["retry-after"]
    runtime.maps.wait(generation)
    ready = client.get("/v1/map").json()
    assert ready["state"] == "ready" and ready["generation"] == generation
    assert ready["method"] == "tsne" and ready["model"] == "fake/hashing-bow"
    points = {p["id"]: p for p in ready["points"]}
    assert len(points) == 9 and all(0 <= p["x"] <= 1 and 0 <= p["y"] <= 1 for p in points.values())
    assert points["bakery"]["kind"] == "research" and points["wind-0"]["name"] == "Actor ignored"
    assert list((runtime.settings.resolved_index_dir / "maps").glob(f"{generation}-tsne.json"))
    client.delete("/v1/actors/bakery")
    assert "bakery" not in {p["id"] for p in client.get("/v1/map").json()["points"]}
    spec = client.get("/openapi.json").json()["paths"]
    assert "/v1/map" in spec and "/v1/feedback" in spec and "/v1/feedback/summary" in spec
    assert "202" in spec["/v1/map"]["get"]["responses"]


def test_map_projection_keeps_neighbours_together(runtime: Runtime) -> None:
    from service.cli import main

    texts = ["offshore wind turbine blade", "sourdough bakery bread", "quantum sensing magnet"]
    actors = [
        Actor.parse(actor_data(f"{topic}-{i}", [f"{text} {i}"]))
        for topic, text in zip(("wind", "bread", "quantum"), texts, strict=True)
        for i in range(6)
    ]
    runtime.ingestor.upsert(actors)
    runtime.reindexer.run()
    assert main(["map", "--out", str(runtime.settings.data_dir / "map.png")], runtime) == 0
    manifest = runtime.generations.read_manifest(runtime.generations.current_id() or "")
    projection = runtime.maps.compute(manifest)
    xy = dict(zip(projection.ids, projection.xy, strict=True))

    def spread(topic: str) -> float:
        points = [xy[a] for a in xy if a.startswith(topic)]
        return max(abs(p[0] - q[0]) + abs(p[1] - q[1]) for p in points for q in points)

    centre = {
        t: [sum(c) / 6 for c in zip(*(xy[a] for a in xy if a.startswith(t)), strict=True)]
        for t in ("wind", "bread", "quantum")
    }
    nearest_other = min(
        abs(centre[a][0] - centre[b][0]) + abs(centre[a][1] - centre[b][1])
        for a in centre
        for b in centre
        if a < b
    )
    assert max(spread(t) for t in centre) < nearest_other, "topics form separate groups"


def test_map_command_writes_png_and_svg(
    runtime: Runtime, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from service.cli import main

    assert main(["map", "--out", str(tmp_path / "none.png")], runtime) == 1
    assert "reindex" in capsys.readouterr().err
    runtime.ingestor.upsert(
        [
            Actor.parse(actor_data(f"a{i}", [f"wind blade {i}"], kind=k))
            for i, k in enumerate(["company", "research", "university", "company"])
        ]
    )
    runtime.reindexer.run()
    assert main(["map", "--out", str(tmp_path / "map.png")], runtime) == 0
    assert (tmp_path / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (
        main(
            ["map", "--out", str(tmp_path / "map.svg"), "--colour-by", "country", "--json"], runtime
        )
        == 0
    )
    assert "<svg" in (tmp_path / "map.svg").read_text()
    assert '"actors": 4' in capsys.readouterr().out
    assert main(["map", "--out", str(tmp_path / "map.gif")], runtime) == 2


# --- pages -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "page"),
    [
        ("/", "search"),
        ("/?q=offshore+wind", "search"),
        ("/actors/pic:991776016", "actor"),
        ("/actors/a/b", "actor"),
        ("/shortlist", "shortlist"),
        ("/map", "map"),
    ],
)
def test_pages_are_served_with_their_assets(client: TestClient, path: str, page: str) -> None:
    response = client.get(path)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert f'data-page="{page}"' in response.text
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert "set-cookie" not in response.headers, "no cookie, so nothing for CSRF to ride on"
    for asset in ("/static/app.js", "/static/app.css"):
        assert asset in response.text
        assert client.get(asset).status_code == 200
    assert "http://" not in response.text and "https://" not in response.text, "no CDN"


def test_pages_are_not_in_the_api_description(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if not p.startswith(("/v1/", "/healthz", "/readyz", "/metrics"))]


def test_a_single_valued_query_parameter_given_twice_is_refused(client: TestClient) -> None:
    body = assert_problem(client.get("/v1/feedback/summary?tenant=a&tenant=b"), 422, "tenant")
    assert "given 2 times" in body["detail"]
    assert_problem(client.get("/v1/search?q=wind&q=solar"), 422, "q")
    assert client.get("/v1/actors?country=AT&country=DE").status_code == 200, "lists repeat"
