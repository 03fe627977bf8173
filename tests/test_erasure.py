"""Erasure: after `DELETE /v1/actors/{id}` and one rebuild, nothing of the actor is left on disk.

The test greps the bytes of every file under the data folder (store, write-ahead log, every kept
generation, maps) for the erased actor's unique sentence, for the exact bytes of its passage
vector and for its id, and first proves that the same grep finds all three before the delete.
The id stays in one place on purpose: the audit log's `actor.delete` event says what was erased
(never a text), so the store file may hold the id, and only in that table.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.config import Settings
from service.embedding.fake import FakeEmbedder
from service.ingest import content_hash
from service.runtime import Runtime
from tests.conftest import unused_port
from tests.factories import make_actor

SECRET = "Our Quasarweld lattice reaches 12 m/min on titanium seams at Werk Zeltweg"
SHARED = "Joint project text on laser welding of aluminium car bodies"
ERASED = "erased-actor-7f3a"


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    settings = Settings(data_dir=tmp_path / "data", port=unused_port(), map_method="pca")
    rt = Runtime(settings, embedder=FakeEmbedder())
    yield rt
    rt.close()


def tables_naming(runtime: Runtime, needle: str) -> set[str]:
    """Every table with a text column holding `needle`."""
    import sqlalchemy as sa

    found = set()
    engine = runtime.sql_store.engine
    metadata = sa.MetaData()
    metadata.reflect(engine)
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for column in table.columns:
                if isinstance(column.type, sa.String | sa.Text):
                    hit = conn.execute(
                        sa.select(sa.func.count()).where(column.contains(needle))
                    ).scalar()
                    if hit:
                        found.add(table.name)
    return found


def files_holding(root: Path, needle: bytes) -> list[str]:
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and needle in p.read_bytes()
    )


def test_a_deleted_actor_leaves_no_byte_on_disk_after_a_rebuild(runtime: Runtime) -> None:
    data = runtime.settings.data_dir
    others = [
        make_actor(f"o{i}", [f"laser welding of steel frames, variant {i}"]) for i in range(6)
    ]
    twin = make_actor("twin", [SHARED])  # shares one passage (and its cached vector) with ERASED
    runtime.ingestor.upsert([*others, twin, make_actor(ERASED, [SECRET, SHARED])])
    model = runtime.embedder.model_id
    secret_vector = runtime.store.cached_vectors([content_hash(SECRET)], model)[
        content_hash(SECRET)
    ]
    needles = {
        "sentence": SECRET.encode(),
        "vector": np.asarray(secret_vector, dtype="<f4").tobytes(),
        "id": ERASED.encode(),
    }
    for _ in range(3):  # three kept generations, all holding the actor: rollback targets
        report = runtime.reindexer.run()
    runtime.maps.compute(runtime.generations.read_manifest(report.generation))
    before = {name: files_holding(data, needle) for name, needle in needles.items()}
    assert all(before.values()), f"the grep must find the actor before the delete: {before}"
    assert any(f.endswith("index.faiss") for f in before["vector"])
    assert any(f.startswith("maps/") for f in before["id"])
    assert len(runtime.generations.list_ids()) == 3

    with TestClient(create_app(runtime)) as http:
        assert http.delete(f"/v1/actors/{ERASED}").status_code == 204
    assert runtime.store.cached_vectors([content_hash(SECRET)], model) == {}, "cache: at once"
    runtime.reindexer.run()

    after = {name: files_holding(data, needle) for name, needle in needles.items()}
    assert after == {"sentence": [], "vector": [], "id": ["store.sqlite3"]}
    assert tables_naming(runtime, ERASED) == {"audit_log"}, "the id only in the audit log"
    assert len(runtime.generations.list_ids()) == 1, "older generations held the vectors"
    # The passage the twin shares is the twin's too: its cached vector and its match stay.
    assert runtime.store.cached_vectors([content_hash(SHARED)], model)
    found = runtime.matcher.search(SHARED, limit=3).matches
    assert found[0].actor.id == "twin"


def test_orphaned_vectors_are_swept_by_the_rebuild(runtime: Runtime) -> None:
    """A vector cached for a text no chunk holds (a write that raced a delete) goes at the
    next rebuild; the vector of a stored text stays."""
    runtime.ingestor.upsert([make_actor("kept", ["stored passage about sensors"])])
    model = runtime.embedder.model_id
    stray = np.ones(runtime.embedder.dim, dtype=np.float32)
    runtime.store.put_vectors(model, {content_hash("raced text"): stray})
    runtime.reindexer.run()
    assert runtime.store.cached_vectors([content_hash("raced text")], model) == {}
    assert runtime.store.cached_vectors([content_hash("stored passage about sensors")], model)


def test_a_rewritten_text_takes_its_vector_along_and_generations_after_stay(
    runtime: Runtime,
) -> None:
    runtime.ingestor.upsert([make_actor("a", ["first wording of the profile"])])
    model = runtime.embedder.model_id
    runtime.ingestor.upsert([make_actor("a", ["second wording of the profile"])])
    assert runtime.store.cached_vectors([content_hash("first wording of the profile")], model) == {}
    runtime.ingestor.upsert([make_actor("b", ["another actor"])])
    runtime.delete_actor("b")
    first = runtime.reindexer.run().generation
    second = runtime.reindexer.run().generation
    # Both were snapshotted after the erasure: they hold nothing erased and stay for rollback.
    assert runtime.generations.list_ids() == [first, second]


def test_a_profile_matched_but_never_stored_leaves_no_vector(runtime: Runtime) -> None:
    runtime.ingestor.upsert([make_actor("a", ["hydrogen electrolyser stacks"])])
    before = runtime.store.cached_vectors([content_hash("hydrogen fuel cell membranes")], "x")
    query = make_actor("visitor", ["hydrogen fuel cell membranes"])
    assert runtime.matcher.match_profile(query, limit=1).matches
    model = runtime.embedder.model_id
    assert before == {}
    assert runtime.store.cached_vectors([content_hash("hydrogen fuel cell membranes")], model) == {}


def test_a_generation_pruned_while_it_loads_gives_way_to_the_newer_one(runtime: Runtime) -> None:
    """A serving process reads CURRENT, and before it has loaded that generation a rebuild in
    another process publishes a newer one and prunes the old (an erasure happened): the server
    loads the newer one instead of failing (at start-up that failure would stop the server)."""
    runtime.ingestor.upsert([make_actor(f"a{i}", [f"sensor fusion {i}"]) for i in range(4)])
    old = runtime.reindexer.run().generation
    other = Runtime(runtime.settings, embedder=FakeEmbedder())  # the other process
    server = Runtime(runtime.settings, embedder=FakeEmbedder())
    real_load = server.generations.load
    calls: list[str | None] = []

    def load_after_a_publish(generation: str | None = None, **kwargs: object) -> object:
        calls.append(generation)
        if len(calls) == 1:
            other.delete_actor("a0")
            other.reindexer.run()
            assert old not in server.generations.list_ids(), "the erasure pruned it"
        return real_load(generation, **kwargs)  # type: ignore[arg-type]

    server.generations.load = load_after_a_publish  # type: ignore[method-assign]
    try:
        served = server.index.get()
        assert calls[0] == old and served.manifest.generation == other.generations.current_id()
        assert [m.actor.id for m in server.matcher.search("sensor fusion", limit=5).matches]
    finally:
        other.close()
        server.close()
