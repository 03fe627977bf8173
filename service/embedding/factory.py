"""Choosing the embedding backend from configuration (`CLUSTERMATCH_BACKEND`).

- `torch`: sentence-transformers on torch; the reference.
- `onnx-fp32`: ONNX Runtime, identical vectors to torch (shares its model id and caches), faster.
- `onnx-int8`: ONNX Runtime with int8 per-channel weights; fastest. Accepted only if it passes the
  parity check against fp32 ONNX on demo texts (every cosine >= 0.98, top-10 neighbour overlap
  >= 0.90); the verdict is cached beside the exported model. If it fails, the service falls back
  to `onnx-fp32` and says so in its log.

`query_backend="onnx-int8"` keeps the passages on `backend` and embeds only queries with int8
weights (service.embedding.queries), parity-gated on retrieval the same way.
"""

from __future__ import annotations

import gzip
import json
import logging
import random
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from service.config import CHECKOUT_DIR, ModelProfile
from service.embedding.base import Embedder

if TYPE_CHECKING:
    from service.embedding.onnx import OnnxEmbedder

log = logging.getLogger("clustermatch.embedding")

Backend = Literal["torch", "onnx-fp32", "onnx-int8"]
QueryBackend = Literal["same", "onnx-int8"]
PARITY_FILE = "int8-parity.json"
DEMO_FILE = CHECKOUT_DIR / "data" / "demo" / "actors.jsonl.gz"


def load_embedder(
    profile: ModelProfile,
    threads: int = 2,
    batch_size: int = 32,
    backend: Backend = "torch",
    cache_dir: Path | None = None,
    query_backend: QueryBackend = "same",
    query_threads: int | None = None,
    passage_sessions: int = 0,
) -> Embedder:
    """`query_threads` (default: `threads`): what an ONNX query encoder runs on.
    `passage_sessions`: see `Settings.passage_sessions` (0: one per usable core, at most
    `threads`). Torch ignores both."""
    passages = _load(
        profile, threads, batch_size, backend, cache_dir, query_threads, passage_sessions
    )
    if query_backend == "same" or backend == "onnx-int8":
        return passages
    from service.embedding.queries import Int8QueryEmbedder

    return Int8QueryEmbedder(
        passages,
        partial(_int8_queries, profile, query_threads or threads, batch_size, cache_dir, passages),
    )


def _int8_queries(
    profile: ModelProfile,
    threads: int,
    batch_size: int,
    cache_dir: Path | None,
    passages: Embedder,
) -> Embedder | None:
    """The int8 query encoder for `passages`, if it passes the retrieval parity gate."""
    from service.embedding.onnx import DEFAULT_CACHE_DIR, OnnxEmbedder
    from service.embedding.queries import int8_queries_pass

    int8 = OnnxEmbedder(
        profile, threads, batch_size, quantize=True, cache_dir=cache_dir or DEFAULT_CACHE_DIR
    )
    int8.warm_up()
    assert int8.model_file is not None
    if int8_queries_pass(passages, int8, int8.model_file.parent):
        return int8
    log.warning("int8 queries fail the retrieval parity check for %s: fp32 queries", profile.id)
    return None


def _load(
    profile: ModelProfile,
    threads: int,
    batch_size: int,
    backend: Backend,
    cache_dir: Path | None,
    query_threads: int | None = None,
    passage_sessions: int = 1,
) -> Embedder:
    from service.embedding.sentence_transformers import SentenceTransformerEmbedder

    if backend == "torch":
        return SentenceTransformerEmbedder(profile, threads=threads, batch_size=batch_size)
    from service.embedding.onnx import DEFAULT_CACHE_DIR, OnnxEmbedder, passage_sessions_for

    onnx = partial(
        OnnxEmbedder,
        profile,
        threads,
        batch_size,
        cache_dir=cache_dir or DEFAULT_CACHE_DIR,
        query_threads=query_threads,
        passage_sessions=passage_sessions_for(passage_sessions, threads),
    )
    fp32 = onnx(quantize=False)
    if backend == "onnx-fp32":
        return fp32
    int8 = onnx(quantize=True)
    if int8_passes(int8, fp32):
        return int8
    log.warning("int8 ONNX fails the parity check for %s: serving fp32 ONNX instead", profile.id)
    return fp32


def int8_passes(int8: OnnxEmbedder, fp32: OnnxEmbedder) -> bool:
    """Parity of int8 against fp32 on 200 demo passages and 50 queries, cached per export."""
    from service.embedding.parity import check_parity

    int8.warm_up()
    assert int8.model_file is not None
    verdict_file = int8.model_file.parent / PARITY_FILE
    if verdict_file.is_file():
        return bool(json.loads(verdict_file.read_text())["passes"])
    texts, queries = parity_texts()
    report = check_parity(fp32, int8, texts, queries)
    verdict = {
        "passes": report.passes,
        "min_cosine": report.min_cosine,
        "mean_overlap": float(report.overlaps.mean()),
        "texts": len(texts),
        "queries": len(queries),
    }
    verdict_file.write_text(json.dumps(verdict, indent=2))
    log.info("int8 parity against fp32: %s", verdict)
    return report.passes


def parity_texts(n_texts: int = 200, n_queries: int = 50) -> tuple[list[str], list[str]]:
    """Real passages (the bundled demo data), a fixed sample."""
    with gzip.open(DEMO_FILE, "rt", encoding="utf-8") as handle:
        texts = sorted({d["text"] for line in handle for d in json.loads(line)["documents"]})
    rng = random.Random(20_240_611)
    sample = rng.sample(texts, n_texts + n_queries)
    return sample[:n_texts], [t.split(". ")[0] for t in sample[n_texts:]]
