"""The reindex's recall gate (service.index.recall): tolerant of near-ties, raises efSearch until
the graph reaches the recall, falls back to exact when no efSearch does, and every loaded
generation searches with the efSearch its build chose."""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest

from service.config import Settings
from service.embedding.fake import FakeEmbedder
from service.index import recall
from service.index.base import ChunkSelection
from service.index.faiss_index import FaissIndex, HnswParams
from service.index.generations import Manifest
from service.index.recall import RecallProbe, probe_queries
from service.reindex import Reindexer, ReindexReport
from service.runtime import Runtime
from tests.factories import make_actor


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


class Swapped:
    """Exact search, except that the 10th answer is replaced by the stored vector ranked
    `replacement` (1-based) for the query: a stand-in for a graph that misses one neighbour."""

    def __init__(self, vectors: np.ndarray, replacement: int) -> None:
        self.vectors, self.replacement = vectors, replacement

    def search(
        self, queries: np.ndarray, k: int, selection: ChunkSelection | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(-(queries @ self.vectors.T), axis=1)
        got = order[:, :k].copy()
        got[:, k - 1] = order[:, self.replacement - 1]
        return np.zeros(got.shape, dtype=np.float32), got.astype(np.int64)


def near_ties(seed: int = 1) -> np.ndarray:
    """20 passages, 30 copies of each within ~1e-4 of cosine of one another."""
    rng = np.random.default_rng(seed)
    base = unit(rng.standard_normal((20, 32)))
    return unit(np.repeat(base, 30, axis=0) + 0.0005 * rng.standard_normal((600, 32)))


def test_probe_queries_are_turned_from_their_vectors_by_the_set_cosine() -> None:
    vectors = near_ties()
    rows = np.arange(0, 600, 7, dtype=np.int64)
    queries = probe_queries(vectors, rows)
    assert np.allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-5)
    assert np.allclose((queries * vectors[rows]).sum(axis=1), recall.QUERY_COSINE, atol=1e-5)


def test_a_near_tie_in_the_tenth_place_counts_a_distant_vector_does_not() -> None:
    vectors = near_ties()
    ids = np.arange(len(vectors), dtype=np.int64)
    probe = RecallProbe(ids, vectors)
    exact = probe.measure(Swapped(vectors, replacement=10))  # type: ignore[arg-type]
    assert exact.tolerant == exact.strict == 1.0
    tie = probe.measure(Swapped(vectors, replacement=11))  # type: ignore[arg-type]
    assert tie.tolerant == 1.0, "the 11th is within the tolerance of the 10th"
    assert tie.strict < 0.95, "strictly, every query lost its 10th neighbour"
    far = probe.measure(Swapped(vectors, replacement=600))  # type: ignore[arg-type]
    assert far.tolerant == pytest.approx(0.9), "the farthest vector is a miss"


def test_a_graph_over_duplicated_vectors_passes_the_tolerant_gate() -> None:
    """Every passage stored 30 times nearly alike, as when a project text is shared by its
    partners: the graph returns copies of the nearest passage, not always the exact ids."""
    vectors = near_ties()
    ids = np.arange(1000, 1000 + len(vectors), dtype=np.int64)
    index = FaissIndex(32, kind="hnsw", hnsw=HnswParams(16, 80, 32))
    index.add(ids, vectors)
    measured = RecallProbe(ids, vectors).measure(index)
    assert measured.tolerant >= recall.MIN_RECALL_AT_10


def test_the_ladder_starts_at_the_configured_ef_search() -> None:
    assert recall.ef_ladder(128) == [128, 256, 512]
    assert recall.ef_ladder(8) == [8, 64, 128, 256, 512]
    assert recall.ef_ladder(1000) == [1000]


WORDS = [f"w{i}" for i in range(400)]


def seeded(settings: Settings, n: int = 600) -> Runtime:
    """`n` actors of two random bags of words each: FakeEmbedder's sparse hashing vectors, on
    which a sparse graph (small M) finds neighbours badly."""
    rng = random.Random(3)
    runtime = Runtime(settings, embedder=FakeEmbedder())
    texts = [" ".join(rng.choice(WORDS) for _ in range(8)) for _ in range(2 * n)]
    runtime.ingestor.upsert(
        [make_actor(f"a{i}", [texts[2 * i], texts[2 * i + 1]]) for i in range(n)]
    )
    return runtime


def rebuilt(
    settings: Settings, caplog: pytest.LogCaptureFixture, hnsw: HnswParams
) -> tuple[Runtime, ReindexReport, Manifest, list[str]]:
    """A rebuild with these HNSW parameters: the runtime, the report, the manifest and the
    gate's log lines."""
    runtime = seeded(settings)
    caplog.set_level(logging.INFO, logger="clustermatch.reindex")
    made = runtime.reindexer
    report = Reindexer(
        made.store, made.embedder, made.generations, hnsw_threshold=10, hnsw=hnsw, lock=made.lock
    ).run()
    manifest = runtime.generations.read_manifest(report.generation)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("build: HNSW")]
    return runtime, report, manifest, lines


def test_a_bad_graph_falls_back_to_exact(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    runtime, report, manifest, lines = rebuilt(settings, caplog, HnswParams(2, 4, 8))
    assert manifest.index_kind == "faiss-idmap2-flat-ip" and manifest.index_params == {}
    assert report.recall_at_10 == 1.0
    assert [line.rsplit(" ", 1)[1] for line in lines[:-1]] == ["8", "64", "128", "256", "512"]
    assert "falling back to exact" in lines[-1]
    runtime.close()


def test_the_chosen_ef_search_is_published_and_every_load_uses_it(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    runtime, report, manifest, lines = rebuilt(settings, caplog, HnswParams(4, 10, 8))
    chosen = manifest.index_params["efSearch"]
    assert manifest.index_kind == "faiss-idmap-hnsw-sq8-ip" and chosen in (64, 128, 256, 512)
    assert manifest.recall_at_10 == report.recall_at_10 >= recall.MIN_RECALL_AT_10
    tried = {int(line.rsplit(" ", 1)[1]): float(line.split()[3]) for line in lines}
    assert max(tried) == chosen and tried[chosen] >= recall.MIN_RECALL_AT_10
    assert all(value < recall.MIN_RECALL_AT_10 for ef, value in tried.items() if ef < chosen)
    loaded = runtime.index.reload()
    assert isinstance(loaded.index, FaissIndex) and loaded.index.hnsw.ef_search == chosen
    runtime.close()
