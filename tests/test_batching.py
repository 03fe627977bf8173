"""Micro-batching: concurrent queries share model calls and each gets its own vector."""

from __future__ import annotations

import threading

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
