"""Micro-batching: concurrent queries share model calls and each gets its own vector."""

from __future__ import annotations

import threading
import time

import numpy as np

from service.embedding.batching import MicroBatchingEmbedder
from service.embedding.fake import FakeEmbedder


def test_concurrent_queries_are_batched_and_answered_correctly() -> None:
    inner = FakeEmbedder()
    batched = MicroBatchingEmbedder(inner, max_wait=0.05)
    texts = [f"query number {i} about topic {i % 3}" for i in range(16)]
    results: dict[int, np.ndarray] = {}
    start = threading.Barrier(len(texts))

    def ask(i: int) -> None:
        start.wait()
        results[i] = batched.embed([texts[i]], role="query")

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = FakeEmbedder().embed(texts, role="query")
    for i in range(len(texts)):
        assert results[i].shape == (1, inner.dim)
        assert np.allclose(results[i][0], expected[i])
    assert batched.batches < len(texts), "a burst costs fewer model calls than queries"


def test_passages_and_errors_pass_through() -> None:
    inner = FakeEmbedder()
    batched = MicroBatchingEmbedder(inner, max_wait=0.001)
    assert batched.embed(["a", "b"], role="passage").shape == (2, inner.dim)

    class Broken(FakeEmbedder):
        def embed(self, texts, role="passage"):  # type: ignore[no-untyped-def]
            raise RuntimeError("model gone")

    failing = MicroBatchingEmbedder(Broken(), max_wait=0.001)
    try:
        failing.embed(["x"], role="query")
    except RuntimeError as exc:
        assert "model gone" in str(exc)
    else:
        raise AssertionError("the error must reach the caller")
    assert failing._leading is False, "a failed batch hands leadership back"


def test_without_waiting_a_lone_query_goes_at_once_and_a_burst_shares_the_next_call() -> None:
    """`max_wait` 0: the first query is embedded alone and at once; every query that arrives
    while that model call runs shares the next one."""
    entered, release = threading.Event(), threading.Event()

    class Slow(FakeEmbedder):
        def embed(self, texts, role="passage"):  # type: ignore[no-untyped-def]
            if not release.is_set():
                entered.set()
                release.wait()  # the first call holds until the burst has queued up
            return super().embed(texts, role)

    batched = MicroBatchingEmbedder(Slow(), max_wait=0.0)
    texts = [f"query {i}" for i in range(16)]
    results: dict[int, np.ndarray] = {}

    def ask(i: int) -> None:
        results[i] = batched.embed([texts[i]], role="query")

    first = threading.Thread(target=ask, args=(0,))
    first.start()
    assert entered.wait(5), "the first caller leads and is inside the model call"
    rest = [threading.Thread(target=ask, args=(i,)) for i in range(1, 16)]
    for thread in rest:
        thread.start()
    while len(batched._queue) < 15:
        time.sleep(0.001)
    release.set()
    for thread in [first, *rest]:
        thread.join()
    expected = FakeEmbedder().embed(texts, role="query")
    assert all(np.allclose(results[i][0], expected[i]) for i in range(16))
    assert batched.batches == 2, "one call for the lone first query, one for the burst"


def test_a_leader_is_answered_after_its_own_batch_and_hands_the_lead_on() -> None:
    """Under steady load the queue never empties: the caller that led a batch must not go on
    embedding the others' queries before it answers its own request."""
    calls = threading.Semaphore(0)  # one release lets one model call finish
    inside = threading.Semaphore(0)  # released as each model call starts

    class Gated(FakeEmbedder):
        def embed(self, texts, role="passage"):  # type: ignore[no-untyped-def]
            inside.release()
            assert calls.acquire(timeout=10)
            return super().embed(texts, role)

    batched = MicroBatchingEmbedder(Gated(), max_wait=0.0)
    results: dict[int, np.ndarray] = {}

    def ask(i: int) -> None:
        results[i] = batched.embed([f"query {i}"], role="query")

    first = threading.Thread(target=ask, args=(0,))
    first.start()
    assert inside.acquire(timeout=5), "the first caller leads"
    rest = [threading.Thread(target=ask, args=(i,)) for i in range(1, 4)]
    for thread in rest:
        thread.start()
    while len(batched._queue) < 3:
        time.sleep(0.001)
    calls.release()  # the first batch (the leader's query alone) finishes
    first.join(5)
    assert not first.is_alive(), "the leader answered while the next batch is still pending"
    assert inside.acquire(timeout=5), "the oldest waiting query leads the next batch"
    assert 0 in results and batched.batches == 1
    calls.release()
    for thread in rest:
        thread.join(5)
    expected = FakeEmbedder().embed([f"query {i}" for i in range(4)], role="query")
    assert all(np.allclose(results[i][0], expected[i]) for i in range(4))
    assert batched.batches == 2 and batched._leading is False and not batched._queue
