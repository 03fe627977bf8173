"""Queries through int8 weights, passages through the model's own: a cheaper query encoder.

A free-text search embeds its query on the request path: one short text, 5-7 ms of CPU with
fp32 ONNX MiniLM, about half of a search's CPU at 100,000 chunks (BENCHMARKS.md). Passages are
embedded once, off the request path, and stay fp32 (the index, the vector cache and actor
matching, which uses the stored vectors as its queries, do not change at all). Only the query
goes through the int8-quantised copy of the same weights (`OnnxEmbedder(quantize=True)`, about
2x cheaper), which is why the served model id stays the passage model's.

Accepted only if it reproduces the passage model's *retrieval*: on real demo texts, each int8
query vector is compared with the fp32 one of the same query (cosine), and the fp32 passages
each finds in its top 10 with both (`parity.compare_vectors` with one set of passages on both
sides). The verdict is cached beside the int8 model file; a failure logs and keeps fp32 queries.
The query encoder is made on the first query (or `warm_up`), so processes that only embed
passages (a reindex, a bulk import) never load it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from service.embedding.base import Embedder, Role, Vectors, warm_up

log = logging.getLogger("clustermatch.embedding")

QUERY_PARITY_FILE = "int8-query-parity.json"


class Int8QueryEmbedder:
    """The `Embedder` protocol: role "query" goes to the query encoder, everything else to
    `passages`. `make_queries` builds the query encoder, or returns None when it is refused (the
    passages' embedder then embeds queries too)."""

    def __init__(self, passages: Embedder, make_queries: Callable[[], Embedder | None]) -> None:
        self.passages = passages
        self._make_queries = make_queries
        self._queries: Embedder | None = None
        self._lock = threading.Lock()

    @property
    def queries(self) -> Embedder:
        """The embedder that embeds queries (made on first use)."""
        if self._queries is None:
            with self._lock:
                if self._queries is None:
                    made = self._make_queries()
                    if made is not None and made.dim != self.passages.dim:
                        raise ValueError(f"dimensions differ: {self.passages.dim} vs {made.dim}")
                    self._queries = made or self.passages
        return self._queries

    @property
    def model_id(self) -> str:
        return self.passages.model_id  # the index holds the passages' vectors

    @property
    def dim(self) -> int:
        return self.passages.dim

    def count_tokens(self, text: str) -> int:
        return self.passages.count_tokens(text)

    def warm_up(self) -> None:
        warm_up(self.passages)
        warm_up(self.queries)

    def embed(self, texts: Sequence[str], role: Role = "passage") -> Vectors:
        inner = self.queries if role == "query" else self.passages
        return inner.embed(texts, role)


def int8_queries_pass(passages: Embedder, int8: Embedder, verdict_dir: Path) -> bool:
    """The query parity of `int8` against `passages` on demo texts, cached in `verdict_dir`."""
    from service.embedding.factory import parity_texts
    from service.embedding.parity import compare_vectors

    verdict_file = verdict_dir / QUERY_PARITY_FILE
    if verdict_file.is_file():
        return bool(json.loads(verdict_file.read_text())["passes"])
    texts, queries = parity_texts()
    stored = passages.embed(texts)
    report = compare_vectors(
        stored, stored, passages.embed(queries, role="query"), int8.embed(queries, role="query")
    )
    passes = float(report.query_cosines.min()) >= report.min_cosine_required and (
        report.mean_overlap >= report.min_overlap_required
    )
    verdict = {
        "passes": passes,
        "reference": passages.model_id,
        "min_query_cosine": float(report.query_cosines.min()),
        "mean_overlap": report.mean_overlap,
        "min_overlap": float(report.overlaps.min()),
        "texts": len(texts),
        "queries": len(queries),
    }
    verdict_file.write_text(json.dumps(verdict, indent=2))
    log.info("int8 queries against %s passages: %s", passages.model_id, verdict)
    return passes
