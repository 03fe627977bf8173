"""Micro-batching of concurrent one-text query embeddings.

On two cores, sixteen requests that each embed one query fight over the CPU and each pays the
per-call overhead. Here one caller at a time leads: it embeds every query queued so far in one
batch and hands each caller its row, then the queries that arrived during that model call, and
so on until the queue is empty. Batches form by themselves under load, and a lone query pays
nothing extra: it does not wait for company (`max_wait` 0, the default; a positive `max_wait`
makes the leader linger that long first, which a lone query pays in full). Passages (bulk work,
already batched) and multi-text calls go straight through.
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
            lead = not self._leading
            self._leading = True
        if lead:
            self._lead()
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        assert pending.vector is not None
        return pending.vector[None, :]

    def _lead(self) -> None:
        """Embed what has queued up, batch after batch, until the queue is empty."""
        if self.max_wait > 0:
            time.sleep(self.max_wait)
        while True:
            with self._lock:
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
                if not batch:
                    self._leading = False  # under the lock: a newcomer will lead
                    return
            try:
                vectors = self.inner.embed([p.text for p in batch], role="query")
                self.batches += 1
                for row, item in enumerate(batch):
                    item.vector = np.asarray(vectors[row], dtype=np.float32)
            except BaseException as exc:  # every waiter must wake, and learn why
                for item in batch:
                    item.error = exc
            for item in batch:
                item.done.set()
