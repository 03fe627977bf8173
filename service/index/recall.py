"""How closely an approximate index agrees with exact search: the gate before a generation is
published, and the efSearch it is served with.

Recall@10 here is tolerant: a returned chunk counts when its exact similarity to the query reaches
the exact 10th best minus `TOLERANCE`. Strict id agreement punishes an index for swapping
near-ties it cannot tell apart and nobody could: duplicate passages (one project text shared by
its partners) score alike, and on dense data the 10th and 11th best often differ by less than
1e-3 (the synthetic 1M data: ~300 noisy copies per passage). 0.01 of cosine is half what the
project already accepts between two backends of one model (the int8 parity gate: every cosine
>= 0.98 of fp32's, service.embedding.factory), so a neighbour within it is as good an answer.
The strict figure is measured too and logged beside it.

The probe queries are stored vectors turned away from themselves, at cosine `QUERY_COSINE` to the
vector each came from, in a random direction. A stored vector as its own query (what the gate
used before) is unlike a real query in two ways: it finds itself at 1.0, a free hit, and it sits
exactly on top of its own near-duplicates. A real query is text not in the corpus; its best
passage is close but not identical (demo project titles against the demo passages: best cosine
median 0.905, 10th percentile 0.76; `scripts/bench_index.py` vectors). The turned query keeps the
neighbourhood of a real passage (the corpus's own topics, in the corpus's proportions), which a
held-out set would need a second graph to give.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from service.index.base import VectorIndex

log = logging.getLogger("clustermatch.reindex")

RECALL_SAMPLE = 200
MIN_RECALL_AT_10 = 0.95
TOLERANCE = 0.01
"""Cosine below the exact 10th best that a returned neighbour may fall and still count."""
STRICT = 1e-5
"""The tolerance of the strict figure (float rounding only)."""
QUERY_COSINE = 0.85
"""Cosine between a probe query and the stored vector it was turned from."""
EF_LADDER = (64, 128, 256, 512)
"""efSearch values tried, from the configured one upward, until the recall holds."""

Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Recall:
    tolerant: float
    """The gate's figure (within `TOLERANCE` of the exact 10th best)."""
    strict: float
    """Ids agreeing with exact search, ties at float precision only."""


def probe_queries(vectors: Floats, rows: Ints, seed: int = 0) -> Floats:
    """Unit queries at cosine `QUERY_COSINE` to `vectors[rows]`, each in a random direction
    orthogonal to its stored vector (so the cosine is exact, whatever the dimension)."""
    rng = np.random.default_rng(seed)
    base = np.asarray(vectors[rows], dtype=np.float32)
    base = base / np.maximum(np.linalg.norm(base, axis=1, keepdims=True), 1e-12)
    noise = rng.standard_normal(base.shape).astype(np.float32)
    noise -= (noise * base).sum(axis=1, keepdims=True) * base
    noise /= np.maximum(np.linalg.norm(noise, axis=1, keepdims=True), 1e-12)
    turned = QUERY_COSINE * base + np.sqrt(1.0 - QUERY_COSINE**2) * noise
    return np.asarray(turned, dtype=np.float32)


class RecallProbe:
    """Probe queries and their exact answers over `ids`/`vectors`, computed once, to measure any
    index over the same vectors (each efSearch tried, then the index that is published)."""

    def __init__(self, ids: Ints, vectors: Floats, seed: int = 0, k: int = 10) -> None:
        self.ids = np.asarray(ids, dtype=np.int64)
        self.vectors = vectors
        self.k = min(k, len(ids))
        rng = np.random.default_rng(seed)
        rows = rng.choice(len(ids), size=min(RECALL_SAMPLE, len(ids)), replace=False)
        self.queries = probe_queries(vectors, rows.astype(np.int64), seed)
        self.order = np.argsort(self.ids, kind="stable")
        self.kth_best = self._exact_kth()

    def _exact_kth(self, block: int = 16) -> Floats:
        """Per query the exact k-th best similarity, a block of queries at a time (200 x 1M
        similarities at once would be 800 MB)."""
        out = np.full(len(self.queries), np.inf, dtype=np.float32)
        if self.k == 0:
            return out
        for start in range(0, len(self.queries), block):
            sims = self.queries[start : start + block] @ self.vectors.T
            out[start : start + block] = np.partition(sims, -self.k, axis=1)[:, -self.k]
        return out

    def measure(self, index: VectorIndex) -> Recall:
        if self.k == 0:
            return Recall(1.0, 1.0)
        _, got = index.search(self.queries, self.k)
        where = np.searchsorted(self.ids[self.order], got).clip(0, len(self.ids) - 1)
        rows = self.order[where]
        known = (got >= 0) & (self.ids[rows] == got)
        scores = np.einsum("qkd,qd->qk", self.vectors[rows], self.queries)
        scores = np.where(known, scores, -np.inf)
        total = got.shape[0] * self.k
        tolerant = float((scores >= self.kth_best[:, None] - TOLERANCE).sum()) / total
        strict = float((scores >= self.kth_best[:, None] - STRICT).sum()) / total
        return Recall(tolerant, strict)


def ef_ladder(configured: int) -> list[int]:
    """The configured efSearch, then the larger rungs of `EF_LADDER`."""
    return [configured] + [ef for ef in EF_LADDER if ef > configured]
