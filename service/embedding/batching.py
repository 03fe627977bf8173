"""Micro-batching of concurrent one-text query embeddings.

On two cores, sixteen requests that each embed one query fight over the CPU and each pays the
per-call overhead. Here one caller at a time leads: it embeds every query queued so far (its own
first) in one batch, hands each caller its row, and passes the lead to the oldest query still
queued, which embeds what arrived during that model call, and so on until the queue is empty.
Batches form by themselves under load, and a lone query pays nothing extra: it does not wait
for company (`max_wait` 0, the default; a positive `max_wait` makes the first leader linger that
long, which a lone query pays in full). Passages (bulk work, already batched) and multi-text
calls go straight through.

The lead passes on after one batch because a leader that kept embedding until the queue ran
dry would answer its own request only then: under steady load the queue never empties, and one
request in a worker waited for batch after batch of the others' (the slowest searches of a
16-client load).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from service.embedding.base import Embedder, Role, Vectors, warm_up


@dataclass
class _Pending:
    text: str
    done: threading.Event = field(default_factory=threading.Event)
    vector: Vectors | None = None
    error: BaseException | None = None
    leads: bool = False
    """Woken to lead the next batch rather than with its answer."""


class MicroBatchingEmbedder:
    def __init__(self, inner: Embedder, max_wait: float = 0.0, max_batch: int = 64) -> None:
        self.inner = inner
        self.max_wait = max_wait
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Pending] = []
        self._leading = False
        self.batches = 0
        """Model calls made for queries (for tests and metrics)."""

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def dim(self) -> int:
        return self.inner.dim

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def warm_up(self) -> None:
        warm_up(self.inner)

    def embed(self, texts: Sequence[str], role: Role = "passage") -> Vectors:
        if role != "query" or len(texts) != 1:
            return self.inner.embed(texts, role)
        pending = _Pending(texts[0])
        with self._lock:
            self._queue.append(pending)
            first = not self._leading
            self._leading = True
        if not first:
            pending.done.wait()  # answered, or handed the lead
        if first or pending.leads:
            self._lead(linger=first)
        if pending.error is not None:
            raise pending.error
        assert pending.vector is not None
        return pending.vector[None, :]

    def _lead(self, linger: bool) -> None:
        """Embed what has queued up (the leader's own query heads the queue) in one batch,
        answer it, then hand the lead to the oldest query left, or give it up if none is."""
        if linger and self.max_wait > 0:
            time.sleep(self.max_wait)
        with self._lock:
            batch = self._queue[: self.max_batch]
            del self._queue[: self.max_batch]
        try:
            vectors = self.inner.embed([p.text for p in batch], role="query")
            self.batches += 1
            for row, item in enumerate(batch):
                item.vector = np.asarray(vectors[row], dtype=np.float32)
        except BaseException as exc:  # every waiter must wake, and learn why
            for item in batch:
                item.error = exc
        for item in batch[1:]:
            item.done.set()
        with self._lock:
            if self._queue:
                self._queue[0].leads = True
                self._queue[0].done.set()
            else:
                self._leading = False  # under the lock: a newcomer will lead
