"""Build a new index generation from the store, embedding only passages not yet in the cache.

Phases, each logged on one line: lock -> snapshot -> read -> embed -> build -> verify -> publish.
`read` takes every chunk up to the watermark and the vectors the cache has; `embed` hands the
rest, each distinct text once, to a `PassageEncoder` (this process's embedder, or a Ray cluster
with `--ray`). Chunk vectors are cached by (content hash, model id) and committed batch by batch
as they arrive, so a killed build loses at most one batch of work, and an unchanged store
rebuilds with zero embeddings. A model change misses the cache entirely and re-embeds everything.
Prune also removes every older generation that still holds an erased actor's vectors, and the
store is compacted (SQLite: the WAL is checkpointed and truncated) so deleted bytes leave disk.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata

import numpy as np

from service.embedding.base import Embedder
from service.embedding.bulk import LocalEncoder, PassageEncoder
from service.errors import CorruptArtifact, ModelUnavailable
from service.failpoints import failpoint
from service.index.base import VectorIndex
from service.index.faiss_index import FaissIndex, HnswParams
from service.index.generations import GenerationStore
from service.index.readmodel import ReadModel
from service.index.recall import MIN_RECALL_AT_10, RecallProbe, ef_ladder
from service.lexical import for_readmodel
from service.locks import FileRebuildLock, RebuildLock
from service.store import ProfileStore, StoredChunk

log = logging.getLogger("clustermatch.reindex")

HNSW_THRESHOLD = 100_000
"""Chunks from which a generation is built as HNSW instead of exact. Exact search costs about
10 ms per 100,000 384-dim vectors on one core (BENCHMARKS.md: `scripts/bench_index.py`), so it
leaves the 10 ms search budget at about 97,000 chunks; HNSW (M=32, efSearch 128) answers in
under 1 ms there with recall@10 1.000 on replicated demo vectors, and builds in about 50 s."""
EMBED_BATCH = 256
"""Chunks read, embedded and cached per step: small enough that a killed build loses little."""


@dataclass(frozen=True)
class ReindexReport:
    generation: str
    model: str
    actors: int
    chunks: int
    embedded: int
    """Chunk vectors computed in this run."""
    reused: int
    """Chunk vectors taken from the embedding cache."""
    seconds: float
    recall_at_10: float
    """Tolerant recall@10 of the published index against exact (service.index.recall)."""


def library_versions() -> dict[str, str]:
    versions = {}
    for name in ("faiss-cpu", "sentence-transformers", "torch", "numpy", "clustermatch"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


class Reindexer:
    def __init__(
        self,
        store: ProfileStore,
        embedder: Embedder,
        generations: GenerationStore,
        hnsw_threshold: int = HNSW_THRESHOLD,
        hnsw: HnswParams | None = None,
        lock: RebuildLock | None = None,
        encoder: PassageEncoder | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.encoder: PassageEncoder = encoder or LocalEncoder(embedder, EMBED_BATCH)
        """Embeds what the cache lacks; `embedder` still names the model and its dimension."""
        self.generations = generations
        self.hnsw_threshold = hnsw_threshold
        self.hnsw = hnsw or HnswParams()
        self.lock: RebuildLock = lock or FileRebuildLock(generations.root / "reindex.lock")

    def run(
        self, full: bool = False, progress: Callable[[int], None] | None = None
    ) -> ReindexReport:
        """Snapshot the store, embed what the cache lacks (everything when `full`), verify and
        publish a new generation. Raises `Conflict` when another rebuild holds the lock.

        `progress` is called with the number of chunks handled in each step.
        """
        with self.lock.hold("an index rebuild"):
            return self._run(full, progress)

    def _run(self, full: bool, progress: Callable[[int], None] | None) -> ReindexReport:
        started = time.perf_counter()
        model_id = self.embedder.model_id
        removed = self.generations.clean_debris()
        log.info("lock: acquired%s", f"; removed debris {removed}" if removed else "")
        # Chunks created after this point belong to the next generation (ids only grow). The change
        # count is read first, so a write racing the snapshot is counted as pending, never lost.
        changes = self.store.changes()
        watermark = self.store.max_chunk_id()
        log.info("snapshot: watermark chunk id %d, %d store changes", watermark, changes)
        ids, vectors, snapshot, embedded, reused = self._vectors(watermark, full, progress)
        actors = {c.actor_id for c in snapshot}
        log.info(
            "embed: %d computed, %d from cache (model %s, %s)",
            embedded,
            reused,
            model_id,
            type(self.encoder).__name__,
        )
        orphans = self.store.drop_orphan_vectors()
        if orphans:
            log.info("embed: dropped %d cached vectors no stored chunk uses", orphans)
        # Actors deleted while the snapshot was read must not enter the new generation (an
        # erased actor's vectors would be published again): keep what still exists now.
        summaries = self.store.actor_summaries(sorted(actors))
        if len(summaries) < len(actors):
            keep = np.array([c.actor_id in summaries for c in snapshot], dtype=np.bool_)
            ids, vectors = ids[keep], vectors[keep]
            snapshot = [c for c, kept in zip(snapshot, keep.tolist(), strict=True) if kept]
            log.info(
                "snapshot: %d actors deleted meanwhile, left out", len(actors) - len(summaries)
            )
            actors = set(summaries)
        approximate = len(ids) >= self.hnsw_threshold
        index = FaissIndex(
            self.embedder.dim, kind="hnsw-sq8" if approximate else "flat", hnsw=self.hnsw
        )
        index.add(ids, vectors)
        log.info(
            "build: %d vectors of dim %d (%s %s)", len(index), index.dim, index.kind, index.params
        )
        probe = RecallProbe(ids, vectors)
        if approximate:
            index = self._tuned(index, probe, ids, vectors)
        recall = self._verify(index, ids, probe)
        log.info("verify: counts and dimension match, recall@10 %.4f against exact", recall)
        partners = self.store.partners_of_actors(sorted(summaries))
        readmodel = ReadModel.build(snapshot, vectors, summaries, self.embedder.dim, partners)
        log.info("read model: %d actors, %d chunks", len(readmodel), len(readmodel.chunk_ids))
        lexical = for_readmodel(readmodel, ids, [c.text for c in snapshot])
        log.info("bm25: %d postings of %d terms", len(lexical.positions), len(lexical.terms))

        manifest = self.generations.publish(
            index,
            readmodel,
            lexical,
            model_id=model_id,
            actors=len(actors),
            watermark=watermark,
            changes=changes,
            built_at=datetime.now(UTC).isoformat(timespec="seconds"),
            build_seconds=round(time.perf_counter() - started, 3),
            libraries=library_versions(),
            recall_at_10=round(recall, 4),
        )
        log.info("publish: CURRENT -> %s", manifest.generation)
        # Erasure: generations snapshotted before the latest delete still hold its vectors.
        pruned = self.generations.prune(erased_at=self.store.last_erasure())
        self.store.compact()
        log.info("prune: %s", f"removed {', '.join(pruned)}" if pruned else "nothing to remove")
        return ReindexReport(
            generation=manifest.generation,
            model=model_id,
            actors=len(actors),
            chunks=len(index),
            embedded=embedded,
            reused=reused,
            seconds=round(time.perf_counter() - started, 3),
            recall_at_10=round(recall, 4),
        )

    def _vectors(
        self, watermark: int, full: bool, progress: Callable[[int], None] | None
    ) -> tuple[np.ndarray, np.ndarray, list[StoredChunk], int, int]:
        """Every chunk up to `watermark` with its vector: from the cache where it has one (all
        misses when `full`), the rest embedded by the encoder, each distinct text once, and
        committed to the cache batch by batch as the encoder hands the vectors back.

        Returns ids, vectors (rows in snapshot order), the snapshot, vectors computed, chunks
        whose vector came from the cache. `progress` counts chunks whose vector is known.
        """
        model_id, dim = self.embedder.model_id, self.embedder.dim
        id_batches: list[np.ndarray] = []
        vector_batches: list[np.ndarray] = []
        snapshot: list[StoredChunk] = []
        missing: dict[str, str] = {}
        """Content hash -> text of the passages the cache lacks, each once."""
        rows_of: dict[str, list[int]] = {}
        """Content hash -> the snapshot rows that wait for its vector."""
        for batch in self.store.iter_chunks(EMBED_BATCH):
            batch = [c for c in batch if c.id <= watermark]
            if not batch:
                break
            cached = (
                {} if full else self.store.cached_vectors([c.content_hash for c in batch], model_id)
            )
            block = np.zeros((len(batch), dim), dtype=np.float32)
            for offset, chunk in enumerate(batch):
                vector = cached.get(chunk.content_hash)
                if vector is None:
                    missing.setdefault(chunk.content_hash, chunk.text)
                    rows_of.setdefault(chunk.content_hash, []).append(len(snapshot) + offset)
                else:
                    block[offset] = vector
            id_batches.append(np.array([c.id for c in batch], dtype=np.int64))
            vector_batches.append(block)
            snapshot.extend(batch)
            if progress is not None:
                progress(len(batch) - sum(1 for c in batch if c.content_hash not in cached))
        reused = len(snapshot) - sum(len(rows) for rows in rows_of.values())
        log.info("read: %d chunks, %d distinct passages to embed", len(snapshot), len(missing))
        ids = np.concatenate(id_batches) if id_batches else np.zeros(0, dtype=np.int64)
        vectors = np.vstack(vector_batches) if vector_batches else np.zeros((0, dim), np.float32)
        del vector_batches
        if missing and self.encoder.model_id != model_id:
            raise ModelUnavailable(
                f"the encoder embeds with {self.encoder.model_id!r}, the rebuild needs {model_id!r}"
            )
        embedded = 0
        for hashes, fresh in self.encoder.encode(list(missing.items())):
            if fresh.shape != (len(hashes), dim):
                raise CorruptArtifact(
                    f"the encoder returned vectors of shape {fresh.shape} for {len(hashes)} "
                    f"passages of dim {dim}"
                )
            self.store.put_vectors(model_id, dict(zip(hashes, fresh, strict=True)))
            done = 0
            for content_hash, vector in zip(hashes, fresh, strict=True):
                rows = rows_of.pop(content_hash, None)
                if rows is None:
                    raise CorruptArtifact("the encoder returned an unasked or repeated passage")
                vectors[rows] = vector
                done += len(rows)
            embedded += len(hashes)
            failpoint("reindex-embedding")
            if progress is not None:
                progress(done)
        if rows_of:
            raise CorruptArtifact(f"the encoder returned no vector for {len(rows_of)} passages")
        return ids, vectors, snapshot, embedded, reused

    def _tuned(
        self, index: FaissIndex, probe: RecallProbe, ids: np.ndarray, vectors: np.ndarray
    ) -> FaissIndex:
        """The graph searched with the smallest efSearch, from the configured one up the ladder,
        at which it reaches the recall gate (published in the manifest's `index_params`, so
        every worker searches with it); the exact index when even the largest misses."""
        for ef_search in ef_ladder(index.hnsw.ef_search):
            candidate = index.with_ef_search(ef_search)
            measured = probe.measure(candidate)
            log.info(
                "build: HNSW recall@10 %.4f (strict %.4f) at efSearch %d",
                measured.tolerant,
                measured.strict,
                ef_search,
            )
            if measured.tolerant >= MIN_RECALL_AT_10:
                return candidate
        log.warning(
            "build: HNSW recall@10 below %.2f up to efSearch %d; falling back to exact",
            MIN_RECALL_AT_10,
            ef_search,
        )
        exact = FaissIndex(self.embedder.dim)
        exact.add(ids, vectors)
        return exact

    def _verify(self, index: VectorIndex, ids: np.ndarray, probe: RecallProbe) -> float:
        """Refuse to publish an index that disagrees with what was read from the store (the
        recall by the same definition and queries as the build's gate)."""
        if index.dim != self.embedder.dim:
            raise CorruptArtifact(f"built dim {index.dim}, model dim {self.embedder.dim}")
        if len(index) != len(ids) or len(np.unique(ids)) != len(ids):
            raise CorruptArtifact(f"index holds {len(index)} vectors for {len(ids)} chunks")
        recall = probe.measure(index).tolerant
        if recall < MIN_RECALL_AT_10:
            raise CorruptArtifact(f"recall@10 {recall:.3f} below {MIN_RECALL_AT_10}")
        return recall
