"""What a query searches: the published generation plus a live delta of newer chunks.

- **Generation.** Loaded from what CURRENT names, warmed beside the one being served, then swapped
  in by one reference assignment: requests that already hold the old snapshot finish on it, none
  is dropped. Every process polls CURRENT, so several workers or replicas sharing one index folder
  all converge on a new generation, whoever published it.
- **Delta.** Chunks written after the generation's snapshot have ids above its watermark (ids only
  grow). Their vectors (embedded when written, kept in the store's cache) are searched exactly
  beside the generation, so a profile posted at 10:00 is a candidate at 10:00.
- **Before the first build** an empty stand-in generation (`LoadedGeneration.empty`) is served:
  every chunk is in the delta, so a fresh deployment takes writes and answers matches at once.
- **Deletes** need no tombstone list of their own: every hit is resolved against the store, and a
  chunk that is no longer there (deleted or replaced actor) is dropped from every result at once.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import numpy.typing as npt

from service.embedding.base import Embedder
from service.index.base import ChunkSelection, IdArray, Scores, Vectors
from service.index.generations import GenerationStore, LoadedGeneration
from service.lexical import LexicalIndex
from service.store import ProfileStore

log = logging.getLogger("clustermatch.serving")


@dataclass(frozen=True)
class Delta:
    """Vectors of chunks newer than a generation; immutable, replaced whole on refresh."""

    ids: IdArray
    vectors: Vectors
    covered: int
    """Highest store chunk id this delta has looked at."""
    texts: tuple[str, ...] = ()
    lexical: LexicalIndex | None = None
    """BM25 over the delta's own passages, so new profiles are found by exact terms too."""

    @classmethod
    def empty(cls, dim: int, covered: int) -> Delta:
        return cls(np.zeros(0, np.int64), np.zeros((0, dim), np.float32), covered)

    def with_lexical(self) -> Delta:
        return replace(self, lexical=LexicalIndex.build(self.ids, self.texts))

    def __len__(self) -> int:
        return len(self.ids)

    def search(
        self, queries: Vectors, k: int, selection: ChunkSelection | None
    ) -> tuple[Scores, IdArray]:
        n = len(queries)
        if len(self.ids) == 0:
            return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
        scores = queries @ self.vectors.T
        if selection is not None and selection.allow is not None:
            scores[:, ~np.isin(self.ids, selection.allow)] = -np.inf
        if selection is not None and selection.deny is not None:
            scores[:, np.isin(self.ids, selection.deny)] = -np.inf
        k = min(k, len(self.ids))
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        top_scores = np.take_along_axis(scores, top, axis=1).astype(np.float32)
        top_ids = np.where(np.isfinite(top_scores), self.ids[top], -1)
        return top_scores, top_ids

    def vectors_of(self, ids: IdArray) -> dict[int, npt.NDArray[np.float32]]:
        position = {int(i): n for n, i in enumerate(self.ids)}
        return {int(i): self.vectors[position[int(i)]] for i in ids if int(i) in position}

    def without(self, up_to: int) -> Delta:
        keep = self.ids > up_to
        texts = tuple(t for t, k in zip(self.texts, keep.tolist(), strict=True) if k)
        return Delta(self.ids[keep], self.vectors[keep], max(self.covered, up_to), texts)


@dataclass(frozen=True)
class Snapshot:
    """One consistent view for one request: never mixes two generations."""

    generation: LoadedGeneration
    delta: Delta
    lexical: LexicalIndex | None = None
    """BM25 over the generation's passages (None where lexical search is switched off)."""


class ServedIndex:
    """Holds the served snapshot; cheap to construct, loads on first use."""

    def __init__(
        self,
        generations: GenerationStore,
        store: ProfileStore,
        embedder: Embedder,
        with_lexical: bool = True,
    ) -> None:
        self._with_lexical = with_lexical
        self._generations = generations
        self._store = store
        self._embedder = embedder
        self._snapshot: Snapshot | None = None
        self._reload_lock = threading.Lock()
        self._delta_lock = threading.Lock()

    # --- reads -----------------------------------------------------------------------------

    def get(self) -> LoadedGeneration:
        """The served generation (the empty stand-in before the first build)."""
        return self.snapshot().generation

    def snapshot(self, refresh: bool = True) -> Snapshot:
        """The current generation and delta; picks up chunks other writers have embedded."""
        if self._snapshot is None or self._snapshot.generation.is_empty:
            self.reload()  # while nothing is built, a file read: pick up the first build at once
        if refresh:
            self.refresh_delta(embed=False)
        assert self._snapshot is not None  # reload always leaves a snapshot
        return self._snapshot

    # --- changes ---------------------------------------------------------------------------

    def reload(self) -> LoadedGeneration:
        """Load what CURRENT names if it is not what is served, warm it, swap it in. Before the
        first build, serve the empty stand-in generation."""
        with self._reload_lock:
            wanted = self._generations.current_id()
            current = self._snapshot
            if current and (wanted is None or current.generation.manifest.generation == wanted):
                return current.generation
            if wanted is None:
                loaded = LoadedGeneration.empty(self._embedder.model_id, self._embedder.dim)
            else:
                found = self._generations.load(
                    wanted, model_id=self._embedder.model_id, dim=self._embedder.dim
                )
                assert found is not None
                loaded = found
                warm(loaded)
            lexical = self._lexical(loaded.manifest.watermark) if self._with_lexical else None
            watermark = loaded.manifest.watermark
            delta = (
                current.delta.without(watermark)
                if current
                else Delta.empty(self._embedder.dim, watermark)
            )
            if self._with_lexical:
                delta = delta.with_lexical()
            self._snapshot = Snapshot(loaded, delta, lexical)
            if wanted is None:
                log.info("no index generation built yet: serving every stored chunk from the delta")
            else:
                log.info("serving generation %s (%d chunks)", wanted, loaded.manifest.chunks)
            if current is None:
                self.refresh_delta(embed=False)
            return loaded

    def _lexical(self, watermark: int) -> LexicalIndex:
        """BM25 over the passages the generation holds that are still in the store."""
        ids: list[int] = []
        texts: list[str] = []
        for batch in self._store.iter_chunks():
            for chunk in batch:
                if chunk.id > watermark:
                    break
                ids.append(chunk.id)
                texts.append(chunk.text)
        return LexicalIndex.build(np.array(ids, dtype=np.int64), texts)

    def refresh_delta(self, embed: bool) -> int:
        """Add chunks newer than the delta to it. With `embed`, vectors missing from the cache
        are computed (the write path); without, only cached ones are taken (the query path, so a
        query never pays for someone else's import). Returns how many chunks were added."""
        if self._snapshot is None:
            self.reload()
        current = self._snapshot
        if current is None or self._store.max_chunk_id() <= current.delta.covered:
            return 0
        with self._delta_lock:
            current = self._snapshot
            assert current is not None
            delta = current.delta
            fresh = [c for b in self._store.iter_chunks(after=delta.covered) for c in b]
            if not fresh:
                return 0
            model_id = self._embedder.model_id
            cached = self._store.cached_vectors([c.content_hash for c in fresh], model_id)
            missing = {c.content_hash: c.text for c in fresh if c.content_hash not in cached}
            if missing and embed:
                vectors = self._embedder.embed(list(missing.values()), role="passage")
                new = dict(zip(missing, vectors, strict=True))
                self._store.put_vectors(model_id, new)
                cached.update(new)
            ready = [c for c in fresh if c.content_hash in cached]
            # Without embedding, stop before the first chunk lacking a vector, so it is looked at
            # again on the next refresh instead of being skipped for good.
            if not embed and len(ready) < len(fresh):
                first_missing = next(c.id for c in fresh if c.content_hash not in cached)
                ready = [c for c in ready if c.id < first_missing]
                covered = first_missing - 1
            else:
                covered = fresh[-1].id
            if ready:
                ids = np.concatenate([delta.ids, np.array([c.id for c in ready], np.int64)])
                stacked = np.stack([cached[c.content_hash] for c in ready]).astype(np.float32)
                vectors_all = np.vstack([delta.vectors, stacked])
            else:
                ids, vectors_all = delta.ids, delta.vectors
            texts = delta.texts + tuple(c.text for c in ready)
            grown = Delta(ids, vectors_all, covered, texts)
            if self._with_lexical and ready:
                grown = grown.with_lexical()
            else:
                grown = replace(grown, lexical=delta.lexical)
            self._snapshot = replace(current, delta=grown)
            return len(ready)


def warm(generation: LoadedGeneration) -> None:
    """Touch the index once so the first real query does not pay for page faults."""
    if len(generation.index):
        probe = np.zeros((1, generation.index.dim), np.float32)
        probe[0, 0] = 1.0
        generation.index.search(probe, 1)


class Watcher:
    """A background thread that keeps a serving process current: it swaps in generations that
    another process published and embeds chunks that another process wrote."""

    def __init__(self, runtime: _HasIndex, seconds: float) -> None:
        self._runtime = runtime
        self._seconds = seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="index-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self._seconds):
            try:
                self._runtime.index.reload()
                self._runtime.index.refresh_delta(embed=True)
            except Exception:  # keep serving the old generation; say why in the log
                log.exception("index watcher: could not refresh; still serving the old snapshot")


class _HasIndex(Protocol):
    @property
    def index(self) -> ServedIndex: ...
