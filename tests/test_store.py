"""The SQL store: all-or-nothing writes, replace semantics, filters, the embedding cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.domain import Actor
from service.store import ActorFilter, ChunkDraft, SqlProfileStore
from tests.factories import make_actor


def drafts(actor: Actor) -> list[ChunkDraft]:
    return [ChunkDraft(d.id, 0, d.text, f"h-{actor.id}-{d.id}", "en") for d in actor.documents]


@pytest.fixture
def store(tmp_path: Path) -> SqlProfileStore:
    return SqlProfileStore(f"sqlite:///{tmp_path / 'store.sqlite3'}")


def put(store: SqlProfileStore, actor: Actor) -> bool:
    return store.upsert_actors([(actor, drafts(actor))])[0]


def test_round_trip_and_replace(store: SqlProfileStore) -> None:
    first = make_actor("a1", ["wind", "solar"], sectors=["C28"], clusters=["wind-cluster"])
    assert put(store, first) is True
    assert store.get_actor("a1") == first
    second = make_actor("a1", ["hydrogen"])
    assert put(store, second) is False, "an existing id is replaced, not duplicated"
    assert store.get_actor("a1") == second
    assert store.counts().documents == 1 and store.counts().chunks == 1


def test_chunk_ids_are_never_reused(store: SqlProfileStore) -> None:
    put(store, make_actor("a1", ["one", "two"]))
    before = store.max_chunk_id()
    store.delete_actor("a1")
    put(store, make_actor("a1", ["one"]))
    (chunk,) = store.chunks_of_actors(["a1"])
    assert chunk.id > before


def test_failed_write_leaves_nothing_half_written(store: SqlProfileStore) -> None:
    good = make_actor("good", ["kept"])
    put(store, good)
    bad = make_actor("bad", ["text"])
    # A chunk that names a document twice at the same ordinal is fine for SQL, but a chunk row
    # with a NULL text violates NOT NULL: the database refuses the batch mid-way.
    broken = [ChunkDraft("d0", 0, None, "h", "en")]  # type: ignore[arg-type]
    replacement = make_actor("good", ["would replace"])
    with pytest.raises(Exception, match="NOT NULL"):
        store.upsert_actors([(replacement, drafts(replacement)), (bad, broken)])
    assert store.get_actor("bad") is None
    assert store.get_actor("good") == good, "the earlier actor in the batch was rolled back too"
    assert store.counts().actors == 1 and store.counts().chunks == 1


def test_select_chunks_allow_and_deny(store: SqlProfileStore) -> None:
    put(store, make_actor("at", ["x"], country="AT", region="AT31", kind="company"))
    put(store, make_actor("de", ["x"], country="DE", region="DE21", kind="research"))
    put(store, make_actor("at2", ["x"], country="AT", region="AT3", kind="university"))
    ids = {c.id: c.actor_id for c in store.chunks_of_actors(["at", "de", "at2"])}

    def owners(selection_ids: np.ndarray | None) -> set[str]:
        assert selection_ids is not None
        return {ids[int(i)] for i in selection_ids}

    assert owners(store.select_chunks(ActorFilter(countries=("AT",))).allow) == {"at", "at2"}
    assert owners(store.select_chunks(ActorFilter(regions=("AT3",))).allow) == {"at", "at2"}
    assert owners(store.select_chunks(ActorFilter(kinds=("research",))).allow) == {"de"}
    reference = store.actor_summaries(["at"])["at"]
    same_region = ActorFilter(exclude_same=frozenset({"region"}), reference=reference)
    assert owners(store.select_chunks(same_region).deny) == {"at", "at2"}
    combined = ActorFilter(
        countries=("AT", "DE"), exclude_same=frozenset({"kind"}), reference=reference
    )
    assert owners(store.select_chunks(combined).allow) == {"de", "at2"}
    assert store.select_chunks(ActorFilter()).allow is None


def test_embedding_cache(store: SqlProfileStore) -> None:
    vector = np.arange(4, dtype=np.float32)
    store.put_vectors("m", {"h1": vector})
    store.put_vectors("m", {"h1": vector})  # idempotent
    assert np.array_equal(store.cached_vectors(["h1", "h2"], "m")["h1"], vector)
    assert store.cached_vectors(["h1"], "other-model") == {}


def test_list_actors_pages(store: SqlProfileStore) -> None:
    for i in range(5):
        put(store, make_actor(f"a{i}", ["x"], country="AT" if i % 2 else "DE"))
    page = store.list_actors(limit=2)
    assert [a.id for a in page.actors] == ["a0", "a1"] and page.total == 5
    rest = store.list_actors(limit=10, after=page.next_cursor)
    assert [a.id for a in rest.actors] == ["a2", "a3", "a4"] and rest.next_cursor is None
    assert [a.id for a in store.list_actors(limit=10, countries=["AT"]).actors] == ["a1", "a3"]


def test_two_processes_caching_the_same_vector_at_once_both_succeed(tmp_path: Path) -> None:
    """A rebuild and a server's watcher embed the same passage; the second one's look-up ran
    before the first one's insert committed (simulated: its look-up finds nothing)."""
    url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    first, second = SqlProfileStore(url), SqlProfileStore(url)
    vector = np.arange(4, dtype=np.float32)
    first.put_vectors("m", {"h1": vector})
    second._cached_hashes = lambda *_: set()  # type: ignore[method-assign]
    second.put_vectors("m", {"h1": vector + 1, "h2": vector})
    stored = first.cached_vectors(["h1", "h2"], "m")
    assert np.array_equal(stored["h1"], vector), "the vector cached first stays"
    assert np.array_equal(stored["h2"], vector)
    first.close()
    second.close()
