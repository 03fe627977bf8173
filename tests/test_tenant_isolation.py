"""No response of any endpoint carries text its caller may not see.

For random tenants, networks and visibilities, every passage carries a unique marker word, and
every tenant leaves feedback whose note carries one too. Each tenant then calls every endpoint
that returns data (search with key terms, both kinds of match with explanations, actor pages,
lookup and list, the map, feedback and its summary, the index) and also searches for the
markers it must not see: the JSON it gets must hold none of them. Some actors are in the built
generation, the others only in the live delta.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.api.app import create_app
from service.config import Settings
from service.domain import Owner, Viewer
from service.embedding.fake import FakeEmbedder
from service.keys import KeyFile
from service.runtime import Runtime

TENANTS = ["agency-a", "agency-b", "agency-c"]
NETWORKS = ["alps", "north"]
WORDS = ["laser", "welding", "hydrogen", "composite", "blade", "sensor", "battery", "robot"]


@dataclass(frozen=True)
class Passage:
    visibility: str
    words: tuple[str, ...]


@dataclass(frozen=True)
class World:
    actors: list[tuple[Owner, list[Passage], bool]]
    """Owner, passages, and whether it is written after the build (served from the delta)."""
    viewers: list[Viewer]


owners = st.builds(
    lambda t, n: Owner(t, tuple(n)),
    st.sampled_from(TENANTS),
    st.lists(st.sampled_from(NETWORKS), max_size=2, unique=True),
)
passages = st.builds(
    Passage,
    st.sampled_from(["public", "network", "private"]),
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(tuple),
)
worlds = st.builds(
    World,
    st.lists(
        st.tuples(owners, st.lists(passages, min_size=1, max_size=3), st.booleans()),
        min_size=2,
        max_size=5,
    ),
    st.lists(
        st.builds(
            lambda t, n: Viewer(t, frozenset(n)),
            st.sampled_from(TENANTS),
            st.lists(st.sampled_from(NETWORKS), max_size=2, unique=True),
        ),
        min_size=1,
        max_size=3,
    ),
)


def marker(actor: int, passage: int) -> str:
    return f"mkr{actor}q{passage}z"


def note_marker(tenant: str) -> str:
    return f"notemark{TENANTS.index(tenant)}z"


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
@given(world=worlds)
def test_no_endpoint_shows_a_caller_text_it_may_not_see(world: World) -> None:
    with tempfile.TemporaryDirectory(prefix="cm-tenants-") as root:
        keys = KeyFile(Path(root) / "keys.json")
        settings_ = Settings(
            data_dir=Path(root) / "data",
            keys_file=keys.path,
            map_method="pca",
            rate_limit_per_second=0,
        )
        runtime = Runtime(settings_, embedder=FakeEmbedder())
        try:
            with TestClient(create_app(runtime), raise_server_exceptions=False) as client:
                check(client, runtime, keys, world)
        finally:
            runtime.close()


def check(client: TestClient, runtime: Runtime, keys: KeyFile, world: World) -> None:
    def key(owner: Owner | Viewer, scopes: tuple[str, ...]) -> dict[str, str]:
        networks = tuple(sorted(owner.networks))
        return {"Authorization": f"Bearer {keys.create(scopes, owner.tenant or '', networks)}"}

    admin = key(Owner("ops"), ("admin",))

    def put(i: int) -> None:
        owner, texts, _ = world.actors[i]
        documents = [
            {
                "id": f"d{j}",
                "kind": "description",
                "language": "en",
                "visibility": p.visibility,
                "text": " ".join([*p.words, marker(i, j)]),
            }
            for j, p in enumerate(texts)
        ]
        body = {"name": f"Actor {i}", "kind": "company", "country": "AT", "documents": documents}
        response = client.put(f"/v1/actors/x{i}", json=body, headers=key(owner, ("write",)))
        assert response.status_code == 201, response.text

    later = [i for i, (_, _, delta) in enumerate(world.actors) if delta]
    for i in range(len(world.actors)):
        if i not in later:
            put(i)
    started = client.post("/v1/index/rebuild", headers=admin)
    assert started.status_code == 202, started.text
    job = client.app.state.services.jobs.wait(started.json()["id"])  # type: ignore[attr-defined]
    assert job.state == "succeeded", job.error
    for i in later:
        put(i)
    runtime.maps.compute(runtime.index.get().manifest)
    for tenant in TENANTS:  # every tenant's feedback carries a note only it may read
        given_ = client.post(
            "/v1/feedback",
            json={
                "actor_id": "x0",
                "query": "laser",
                "label": "relevant",
                "note": note_marker(tenant),
            },
            headers=key(Owner(tenant), ("read",)),
        )
        assert given_.status_code == 201, given_.text

    for viewer in world.viewers:
        headers = key(viewer, ("read",))
        hidden = [
            marker(i, j)
            for i, (owner, texts, _) in enumerate(world.actors)
            for j, p in enumerate(texts)
            if not viewer.can_see(p.visibility, owner)
        ] + [note_marker(t) for t in TENANTS if t != viewer.tenant]
        for path, response in responses(client, headers, world, hidden):
            assert response.status_code < 500, (path, response.text)
            leaked = [m for m in hidden if m in response.text]
            assert not leaked, f"{path} shows {leaked} to {viewer}"


def responses(
    client: TestClient, headers: dict[str, str], world: World, hidden: list[str]
) -> list[tuple[str, Any]]:
    probe = " ".join([*WORDS[:3], *hidden])  # asking for the hidden words outright
    calls: list[tuple[str, Any]] = []

    def get(path: str, **params: Any) -> None:
        calls.append((path, client.get(path, params=params, headers=headers)))

    get("/v1/search", q="laser welding hydrogen", explain="true", collapse="false", limit=50)
    # Without `explain`: with it, evidence repeats the caller's own query (its own words).
    get("/v1/search", q=probe, collapse="false", limit=50)
    for i in range(len(world.actors)):
        get(f"/v1/actors/x{i}")
        get(f"/v1/actors/x{i}/matches", explain="true", collapse="false")
        for mode in ("similar",):
            calls.append(
                (
                    "POST /v1/match",
                    client.post(
                        "/v1/match",
                        json={
                            "actor_id": f"x{i}",
                            "explain": True,
                            "mode": mode,
                            "collapse": False,
                        },
                        headers=headers,
                    ),
                )
            )
    profile = {
        "name": "probe",
        "kind": "company",
        "documents": [{"id": "p", "kind": "description", "text": probe, "language": "en"}],
    }
    calls.append(
        (
            "POST /v1/match profile",
            client.post("/v1/match", json={"profile": profile}, headers=headers),
        )
    )
    get("/v1/actors")
    get("/v1/actors", q="Actor")
    get("/v1/map")
    get("/v1/feedback")
    get("/v1/feedback", format="csv")
    get("/v1/feedback/summary")
    get("/v1/index")
    return calls
