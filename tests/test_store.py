"""The store contract, on SQLite and on PostgreSQL: all-or-nothing writes, replace semantics,
filters, paging, feedback, the embedding cache."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from service.domain import Actor
from service.store import ActorFilter, ChunkDraft, SqlProfileStore
from tests.factories import make_actor


def drafts(actor: Actor) -> list[ChunkDraft]:
    return [ChunkDraft(d.id, 0, d.text, f"h-{actor.id}-{d.id}", "en") for d in actor.documents]


@pytest.fixture
def store(store_url: str) -> Iterator[SqlProfileStore]:
    store = SqlProfileStore(store_url)
    yield store
    store.close()


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
    with pytest.raises(Exception, match=r"(?i)not.null"):
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


def test_changes_count_every_write_and_delete(store: SqlProfileStore) -> None:
    assert store.changes() == 0
    put(store, make_actor("a", ["x"]))
    store.upsert_actors([(make_actor(i, ["y"]), drafts(make_actor(i, ["y"]))) for i in "bc"])
    assert store.delete_actor("a") is True
    assert store.delete_actor("a") is False, "deleting nothing is no change"
    assert store.changes() == 4


def test_page_reads_only_what_still_exists(store: SqlProfileStore) -> None:
    put(store, make_actor("kept", ["one", "two"], clusters=["wind"]))
    put(store, make_actor("gone", ["three"]))
    chunk_ids = [c.id for c in store.chunks_of_actors(["kept", "gone"])]
    store.delete_actor("gone")
    chunks, names = store.page([*chunk_ids, 10**9])
    assert sorted(c.actor_id for c in chunks.values()) == ["kept", "kept"]
    assert names == {"kept": "Actor kept"}
    assert [c.text for c in store.chunks_by_ids(chunk_ids).values()] == ["one", "two"]


def test_the_hot_reads_answer_like_the_plain_ones_at_every_list_length(
    store: SqlProfileStore,
) -> None:
    """`page` and `names_of` run compiled SQL on the DB-API connection, with their id list
    padded to a few lengths: every length, repeats and unknown ids answer as a plain read."""
    store.upsert_actors(
        [
            (make_actor(f"a{i}", ["x", "y"]), drafts(make_actor(f"a{i}", ["x", "y"])))
            for i in range(500)
        ]
    )
    ids = [c.id for c in store.chunks_of_actors([f"a{i}" for i in range(500)])]
    for n in (1, 2, 3, 17, 64, 65, 900, 901, 1000):
        wanted = [*ids[:n], ids[0], 10**9]  # a repeat and an unknown id
        chunks, names = store.page(wanted)
        assert chunks == store.chunks_by_ids(wanted)
        assert names == {c.actor_id: f"Actor {c.actor_id}" for c in chunks.values()}
        assert store.names_of([c.actor_id for c in chunks.values()]) == names
    assert store.page([]) == ({}, {}) and store.names_of(["nobody"]) == {}


def test_iter_chunks_in_id_order_after_a_watermark(store: SqlProfileStore) -> None:
    for i in range(7):
        put(store, make_actor(f"a{i}", [f"text {i}", f"more {i}"]))
    ids = [c.id for batch in store.iter_chunks(batch_size=3) for c in batch]
    assert ids == sorted(ids) and len(ids) == 14
    assert [c.id for b in store.iter_chunks(batch_size=4, after=ids[9]) for c in b] == ids[10:]
    assert store.max_chunk_id() == ids[-1]
    exact = [c.id for b in store.iter_chunks(batch_size=7, after=ids[6]) for c in b]
    assert exact == ids[7:], "a full last batch, then the closing read finds nothing"


def test_fresh_chunks_bring_their_cached_vectors_and_actors(store: SqlProfileStore) -> None:
    put(store, make_actor("old", ["before"]))
    watermark = store.max_chunk_id()
    put(store, make_actor("b", ["one", "two"], clusters=["wind"]))
    put(store, make_actor("c", ["three"]))
    store.put_vectors("m", {"h-b-d1": np.ones(4, np.float32)})
    store.put_vectors("other-model", {"h-c-d0": np.ones(4, np.float32)})
    found = store.fresh_chunks(watermark, "m")
    assert [c.text for c in found.chunks] == ["one", "two", "three"]
    assert [c.id for c in found.chunks] == sorted(c.id for c in found.chunks)
    assert set(found.vectors) == {"h-b-d1"}, "misses and other models' vectors left out"
    assert set(found.summaries) == {"b", "c"} and found.summaries["b"].clusters == ("wind",)
    assert store.fresh_chunks(store.max_chunk_id(), "m").chunks == []


def test_actor_ids_page_in_byte_order(store: SqlProfileStore) -> None:
    # PostgreSQL's default collation would put "a-b" after "aB" and mix cases; cursors must page
    # identically on every backend, so ids compare byte-wise.
    names = ["b", "B", "a-b", "aB", "a_b", "A"]
    for name in names:
        put(store, make_actor(name, ["x"]))
    first = store.list_actors(limit=3)
    rest = store.list_actors(limit=10, after=first.next_cursor)
    assert [a.id for a in first.actors + rest.actors] == sorted(names)


def test_feedback_and_partners(store: SqlProfileStore) -> None:
    from service.feedback import Feedback, Label, context_of

    put(store, make_actor("a", ["x"]))
    item = Feedback(tenant="t1", actor_id="b", label=Label("contacted"), for_actor="a")
    stored = store.put_feedback(item)
    assert stored.updated_at
    store.put_feedback(Feedback(tenant="t1", actor_id="b", label=Label("met"), for_actor="a"))
    store.put_feedback(Feedback(tenant="t2", actor_id="c", label=Label("met"), query="wind"))
    assert [(f.tenant, f.label.value) for f in store.list_feedback("t1")] == [("t1", "met")]
    assert len(store.list_feedback()) == 2
    assert {c.tenant: c.labels for c in store.feedback_counts()} == {
        "t1": {"met": 1},
        "t2": {"met": 1},
    }
    for tenant in ("t1", "t2", "t3", None):
        for context in (context_of("a", None), context_of(None, "wind"), "other", None):
            for labels in ({"met"}, {"met", "contacted"}, {"not_relevant"}):
                want = {f.actor_id for f in store.list_feedback(tenant, context, labels)}
                assert store.feedback_actors(tenant, context, labels) == want
    assert store.feedback_actors("t1", None, {"met"}) == {"b"}
    assert store.feedback_actors("t1", None, ()) == set()
    partnered = Actor.parse(make_actor("p", ["y"]).model_dump() | {"partners": ["a", "z"]})
    put(store, partnered)
    assert store.partners_of("p") == ("a", "z")
    # in bulk, for the read model's partner graph: actors without partners are left out
    assert store.partners_of_actors(["p", "b", "nobody"]) == {"p": ("a", "z")}


def test_embedding_cache_tolerates_concurrent_writers(store: SqlProfileStore) -> None:
    import threading

    vectors = {f"h{i}": np.full(4, i, dtype=np.float32) for i in range(300)}
    errors: list[BaseException] = []

    def write() -> None:
        try:
            store.put_vectors("m", vectors)
        except BaseException as exc:  # pragma: no cover - the failure this test looks for
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    cached = store.cached_vectors(list(vectors), "m")
    assert len(cached) == 300 and np.array_equal(cached["h7"], vectors["h7"])


def test_a_batch_writes_each_actor_whole_and_the_last_version_of_a_repeated_id(
    store: SqlProfileStore,
) -> None:
    put(store, make_actor("old", ["kept", "also kept"], sectors=["C28"], clusters=["wind"]))
    batch = [
        make_actor("new", ["first"]),
        make_actor("old", ["replaced"]),
        make_actor("new", ["x", "y"]),
    ]
    assert store.upsert_actors([(a, drafts(a)) for a in batch]) == [True, False, False]
    assert store.get_actor("new") == batch[2] and store.get_actor("old") == batch[1]
    counts = store.counts()
    assert (counts.actors, counts.documents, counts.chunks) == (2, 3, 3)
    assert store.delete_actor("old") is True
    assert store.counts().chunks == 2 and store.actor_summaries(["old"]) == {}


def test_erasure_drops_the_vectors_no_other_chunk_uses(store: SqlProfileStore) -> None:
    """The vector cache is shared by content hash across actors and models: deleting an actor
    drops the vectors of its passages that nobody else holds, for every model, and no other."""
    vector = np.ones(4, dtype=np.float32)
    shared = ChunkDraft("d0", 0, "shared text", "h-shared", "en")
    own = ChunkDraft("d1", 0, "own text", "h-own", "en")
    gone = make_actor("gone", ["shared text", "own text"])
    twin = make_actor("twin", ["shared text"])
    store.upsert_actors([(gone, [shared, own]), (twin, [shared])])
    for model in ("m1", "m2"):
        store.put_vectors(model, {"h-shared": vector, "h-own": vector, "h-stray": vector})
    assert store.last_erasure() == 0
    assert store.delete_actor("gone")
    assert store.last_erasure() == store.changes()
    for model in ("m1", "m2"):
        assert set(store.cached_vectors(["h-shared", "h-own", "h-stray"], model)) == {
            "h-shared",
            "h-stray",
        }
    assert store.drop_orphan_vectors() == 2, "the stray vector of both models"
    assert set(store.cached_vectors(["h-shared", "h-stray"], "m1")) == {"h-shared"}
    store.compact()  # a no-op on PostgreSQL, a WAL checkpoint on SQLite


def test_a_rewrite_drops_the_vector_of_the_text_it_replaced(store: SqlProfileStore) -> None:
    vector = np.ones(4, dtype=np.float32)
    store.upsert_actors([(make_actor("a", ["old"]), [ChunkDraft("d0", 0, "old", "h-old", "en")])])
    store.put_vectors("m", {"h-old": vector})
    store.upsert_actors([(make_actor("a", ["new"]), [ChunkDraft("d0", 0, "new", "h-new", "en")])])
    assert store.cached_vectors(["h-old"], "m") == {}
    assert store.last_erasure() == 0, "a rewrite is no erasure: older generations stay"
