"""Build a new index generation from the store, embedding only passages not yet in the cache."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata

import numpy as np

from service.embedding.base import Embedder
from service.index.faiss_index import FaissIndex
from service.index.generations import GenerationStore
from service.store import ProfileStore

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
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.generations = generations

    def run(
        self, full: bool = False, progress: Callable[[int], None] | None = None
    ) -> ReindexReport:
        """Snapshot the store, embed what the cache lacks (everything when `full`), publish.

        `progress` is called with the number of chunks handled in each step.
        """
        started = time.perf_counter()
        model_id = self.embedder.model_id
        # Chunks created after this point belong to the next generation (ids only grow). The change
        # count is read first, so a write racing the snapshot is counted as pending, never lost.
        changes = self.store.changes()
        watermark = self.store.max_chunk_id()
        ids: list[np.ndarray] = []
        vectors: list[np.ndarray] = []
        actors: set[str] = set()
        embedded = reused = 0
        for batch in self.store.iter_chunks(EMBED_BATCH):
            batch = [c for c in batch if c.id <= watermark]
            if not batch:
                break
            hashes = [c.content_hash for c in batch]
            cached = {} if full else self.store.cached_vectors(hashes, model_id)
            missing = {c.content_hash: c.text for c in batch if c.content_hash not in cached}
            if missing:
                fresh = self.embedder.embed(list(missing.values()), role="passage")
                new = dict(zip(missing, fresh, strict=True))
                self.store.put_vectors(model_id, new)
                cached.update(new)
                embedded += len(missing)
            reused += sum(1 for c in batch if c.content_hash not in missing)
            ids.append(np.array([c.id for c in batch], dtype=np.int64))
            vectors.append(np.stack([cached[h] for h in hashes]).astype(np.float32))
            actors.update(c.actor_id for c in batch)
            if progress is not None:
                progress(len(batch))
        index = FaissIndex(self.embedder.dim)
        if ids:
            index.add(np.concatenate(ids), np.vstack(vectors))
        seconds = time.perf_counter() - started
        manifest = self.generations.publish(
            index,
            model_id=model_id,
            actors=len(actors),
            watermark=watermark,
            changes=changes,
            built_at=datetime.now(UTC).isoformat(timespec="seconds"),
            build_seconds=round(seconds, 3),
            libraries=library_versions(),
        )
        return ReindexReport(
            generation=manifest.generation,
            model=model_id,
            actors=len(actors),
            chunks=len(index),
            embedded=embedded,
            reused=reused,
            seconds=round(time.perf_counter() - started, 3),
        )
