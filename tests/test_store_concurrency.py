"""Writes stay all-or-nothing under real concurrency, on SQLite and PostgreSQL: several threads,
each with its own connection from the pool, race on one store."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from service.domain import Actor
from service.runtime import Runtime
from service.store import SqlProfileStore
from tests.factories import make_actor
from tests.test_store import drafts, put


@pytest.fixture
def store(store_url: str) -> Iterator[SqlProfileStore]:
    store = SqlProfileStore(store_url)
    store.counts()  # create the schema before the threads start
    yield store
    store.close()


def run_together(*loops: Callable[[], None]) -> list[BaseException]:
    """Start every loop at once; return what they raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(loops))

    def run(loop: Callable[[], None]) -> None:
        start.wait()
        try:
            loop()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(loop,)) for loop in loops]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return errors


def whole(store: SqlProfileStore, actor_id: str, versions: dict[int, Actor]) -> None:
    """What a reader sees of `actor_id` is nothing or exactly one complete version."""
    found = store.get_actor(actor_id)
    if found is None:
        return
    assert found in versions.values(), found
    chunks = store.chunks_of_actors([actor_id])
    # Read in another transaction: a later write may have replaced it meanwhile, but never half.
    assert len(chunks) in {len(v.documents) for v in versions.values()} | {0}


def test_two_writers_upserting_one_actor(store: SqlProfileStore) -> None:
    versions = {n: make_actor("x", [f"version {n} part {i}" for i in range(n)]) for n in (2, 5)}

    def writer(n: int) -> Callable[[], None]:
        def loop() -> None:
            for _ in range(25):
                put(store, versions[n])

        return loop

    def reader() -> None:
        for _ in range(40):
            whole(store, "x", versions)

    assert run_together(writer(2), writer(5), reader) == []
    final = store.get_actor("x")
    assert final in versions.values()
    assert final is not None and store.counts().chunks == len(final.documents)
    assert store.counts().documents == len(final.documents) and store.counts().actors == 1


def test_a_delete_racing_an_upsert(store: SqlProfileStore) -> None:
    versions = {3: make_actor("x", ["one", "two", "three"])}

    def upserts() -> None:
        for _ in range(30):
            put(store, versions[3])

    def deletes() -> None:
        for _ in range(30):
            store.delete_actor("x")

    def reader() -> None:
        for _ in range(40):
            whole(store, "x", versions)

    assert run_together(upserts, deletes, reader) == []
    counts = store.counts()
    assert (counts.actors, counts.documents, counts.chunks) in {(0, 0, 0), (1, 3, 3)}


def test_chunk_ids_become_visible_in_id_order(store: SqlProfileStore) -> None:
    """A reader that follows new chunks by `id > last seen` (the live delta does) never misses
    one: ids commit in the order they are allocated (on PostgreSQL thanks to the write lock)."""
    done = threading.Event()
    followed: set[int] = set()

    def writer(prefix: str) -> Callable[[], None]:
        def loop() -> None:
            for i in range(40):
                actor = make_actor(f"{prefix}{i}", [f"text {prefix} {i} {j}" for j in range(3)])
                store.upsert_actors([(actor, drafts(actor))])

        return loop

    def follower() -> None:
        last = 0
        while not done.is_set():
            for batch in store.iter_chunks(after=last):
                followed.update(c.id for c in batch)
                last = max(last, batch[-1].id)

    writers = [writer(p) for p in "abc"]
    thread = threading.Thread(target=follower)
    thread.start()
    try:
        assert run_together(*writers) == []
    finally:
        done.set()
        thread.join(60)
    stored = {c.id for batch in store.iter_chunks() for c in batch}
    late = {c.id for batch in store.iter_chunks(after=max(followed, default=0)) for c in batch}
    assert stored - followed - late == set(), "a chunk committed below an id already seen"


def test_a_bulk_import_racing_a_rebuild_loses_nothing(backend_runtime: Runtime) -> None:
    runtime = backend_runtime
    runtime.ingestor.upsert([make_actor("seed", ["offshore wind blades"])])
    batches = [
        [make_actor(f"b{b}-{i}", [f"wind turbine text {b} {i}"]) for i in range(20)]
        for b in range(8)
    ]

    def imports() -> None:
        for batch in batches:
            runtime.ingestor.upsert(batch)

    def rebuilds() -> None:
        for _ in range(2):
            runtime.reindexer.run()

    assert run_together(imports, rebuilds) == []
    runtime.index.reload()
    runtime.index.refresh_delta(embed=True)
    every = ["seed"] + [a.id for batch in batches for a in batch]
    assert [a for a in every if not runtime.is_candidate(a)] == []
