"""What a query searches: the published generation (with its read model) plus a live delta.

- **Generation.** Loaded from what CURRENT names, warmed beside the one being served, then swapped
  in by one reference assignment: requests that already hold the old snapshot finish on it, none
  is dropped. Every process polls CURRENT, so several workers or replicas sharing one index folder
  all converge on a new generation, whoever published it.
- **Before the first build** an empty stand-in generation (`LoadedGeneration.empty`) is served:
  every chunk is in the delta, so a fresh deployment takes writes and answers matches at once.
- **Delta.** Chunks written after the generation's snapshot have ids above its watermark (ids only
  grow). Their vectors (embedded when written, kept in the store's cache) are appended to a
  `DeltaLog` in amortised O(change): a profile posted at 10:00 is a candidate at 10:00, and the
  2,000th write costs what the 20th did; so does their BM25 (`DeltaLexical`, append-only, see
  service.lexical), which never lags the write. The generation rows of actors written since are
  marked superseded, so only their newest profile counts. A write through this process extends
  the delta before its call returns; what other processes wrote is picked up by a probe (one
  indexed `max(id)`) that a query makes at most every `probe_seconds` (0.25 s by default, so
  under load it is not one more store statement per request), and by the watch loop.
- **Deletes** seen by this process leave the delta and supersede the generation row at once; a
  delete by another process is caught by the one store read each response makes for its final
  page (service.matching), so no deleted actor is ever returned after its DELETE returned.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from service.domain import VISIBILITY_LEVEL, ActorSummary, Owner
from service.embedding.base import Embedder
from service.errors import Conflict, CorruptArtifact, NotFound
from service.index.base import IdArray, Vectors
from service.index.generations import GenerationStore, LoadedGeneration
from service.lexical import DeltaLexical, GenerationLexical, for_readmodel
from service.store import ProfileStore, StoredChunk

log = logging.getLogger("clustermatch.serving")

LOAD_ATTEMPTS = 5
"""Generations tried in a row when each is pruned by a newer publish while it loads."""


class _Grow:
    """An append-only array with amortised O(1) appends; `view(n)` never changes once taken
    (growth copies into a new buffer, appends write past every earlier view's end)."""

    def __init__(self, dtype: type, width: int | None = None) -> None:
        shape = (64,) if width is None else (64, width)
        self._buffer: npt.NDArray[Any] = np.zeros(shape, dtype=dtype)
        self.n = 0

    def extend(self, values: npt.NDArray[Any]) -> None:
        need = self.n + len(values)
        if need > len(self._buffer):
            bigger = np.zeros(
                (max(need, 2 * len(self._buffer)), *self._buffer.shape[1:]),
                dtype=self._buffer.dtype,
            )
            bigger[: self.n] = self._buffer[: self.n]
            self._buffer = bigger
        self._buffer[self.n : need] = values
        self.n = need

    def view(self, n: int) -> npt.NDArray[Any]:
        return self._buffer[:n]

    def live(self) -> npt.NDArray[Any]:
        """The shared buffer itself (for flags that only ever turn on)."""
        return self._buffer


class DeltaLog:
    """Chunks newer than one generation, appended as they are written (one writer at a time,
    under `ServedIndex`'s delta lock). Readers take a `Delta` view of its first `n` chunks."""

    def __init__(
        self,
        dim: int,
        covered: int,
        generation: LoadedGeneration,
        lexical: DeltaLexical | None = None,
    ) -> None:
        self.dim = dim
        self.covered = covered
        """Highest store chunk id this log has looked at."""
        self.ids = _Grow(np.int64)
        self.vectors = _Grow(np.float32, dim)
        self.dead = _Grow(np.bool_)
        self.visibility = _Grow(np.int8)
        """Visibility code of each chunk (`VISIBILITY_LEVEL`)."""
        self.need = _Grow(np.bool_)
        self.actor_code = _Grow(np.int64)
        """Each chunk's actor as an index into `actor_ids`, so masks over the delta are
        gathers, not loops over chunks."""
        self.actor_ids: list[str] = []
        self._code_of: dict[str, int] = {}
        self.chunks: list[StoredChunk] = []
        self.actors: dict[str, ActorSummary] = {}
        self.positions: dict[str, list[int]] = {}
        self._row_of = generation.readmodel.rows
        self.superseded = np.zeros(len(generation.readmodel), dtype=np.bool_)
        """Generation rows whose actor was rewritten or deleted since (only ever set)."""
        self.lexical = lexical
        """BM25 over the chunks (labelled by position), appended to with them (None where
        lexical search is switched off)."""
        self._n = 0
        """Chunks whose every column is written: what a view covers. Set last in `append`,
        because readers take views without the lock: counting `ids` (written first) let a
        search see a chunk whose actor code was not written yet (code 0 of an empty log:
        IndexError, seen under load right after a publish)."""

    def __len__(self) -> int:
        return self._n

    def append(
        self, chunks: list[StoredChunk], vectors: Vectors, summaries: dict[str, ActorSummary]
    ) -> None:
        """Add freshly stored chunks (ids above `covered`, in id order) and their actors."""
        start = len(self)
        for actor_id in dict.fromkeys(c.actor_id for c in chunks):
            self._retire(actor_id)  # a rewrite replaces every earlier passage of the actor
        for offset, chunk in enumerate(chunks):
            self.positions.setdefault(chunk.actor_id, []).append(start + offset)
        self.actors.update(summaries)
        self.chunks.extend(chunks)
        self.ids.extend(np.array([c.id for c in chunks], dtype=np.int64))
        self.vectors.extend(vectors.astype(np.float32))
        self.dead.extend(np.zeros(len(chunks), dtype=np.bool_))
        self.visibility.extend(
            np.array([VISIBILITY_LEVEL.get(c.visibility, 2) for c in chunks], dtype=np.int8)
        )
        self.need.extend(np.array([c.intent == "need" for c in chunks], dtype=np.bool_))
        self.actor_code.extend(np.array([self._code(c.actor_id) for c in chunks], dtype=np.int64))
        if self.lexical is not None:
            for offset, chunk in enumerate(chunks):
                summary = self.actors.get(chunk.actor_id)
                self.lexical.append(
                    start + offset,
                    chunk.text,
                    VISIBILITY_LEVEL.get(chunk.visibility, 2),
                    summary.owner if summary is not None else Owner(),
                )
        self._n = start + len(chunks)  # published: views from now on include these chunks

    def _code(self, actor_id: str) -> int:
        code = self._code_of.get(actor_id)
        if code is None:
            code = self._code_of[actor_id] = len(self.actor_ids)
            self.actor_ids.append(actor_id)
        return code

    def forget(self, actor_id: str) -> None:
        """An actor deleted through this process: gone from the delta and the generation."""
        self._retire(actor_id)
        self.actors.pop(actor_id, None)

    def _retire(self, actor_id: str) -> None:
        dead = self.dead.live()
        for position in self.positions.pop(actor_id, ()):
            dead[position] = True
            if self.lexical is not None:
                self.lexical.remove(position)
        row = self._row_of.get(actor_id)
        if row is not None:
            self.superseded[row] = True

    def view(self) -> Delta:
        n = len(self)
        return Delta(
            n=n,
            ids=self.ids.view(n),
            vectors=self.vectors.view(n),
            visibility=self.visibility.view(n),
            need=self.need.view(n),
            actor_code=self.actor_code.view(n),
            log=self,
        )


@dataclass(frozen=True)
class Delta:
    """The first `n` chunks of a `DeltaLog`: ids and vectors fixed; `dead` and `superseded` are
    read live, because a delete must be honoured even by a request that started before it."""

    n: int
    ids: IdArray
    vectors: Vectors
    visibility: npt.NDArray[np.int8] = field(default_factory=lambda: np.zeros(0, np.int8))
    need: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, np.bool_))
    actor_code: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    log: DeltaLog | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return self.n

    def alive(self) -> npt.NDArray[np.bool_]:
        if self.log is None:
            return np.zeros(0, dtype=np.bool_)
        alive: npt.NDArray[np.bool_] = ~self.log.dead.live()[: self.n]
        return alive

    def chunk(self, position: int) -> StoredChunk:
        assert self.log is not None
        return self.log.chunks[position]

    def actor(self, actor_id: str) -> ActorSummary | None:
        return self.log.actors.get(actor_id) if self.log is not None else None

    def actor_id(self, code: int) -> str:
        assert self.log is not None
        return self.log.actor_ids[code]

    @property
    def actor_count(self) -> int:
        """Actors ever coded in this log (codes are below it)."""
        return len(self.log.actor_ids) if self.log is not None else 0

    @property
    def superseded(self) -> npt.NDArray[np.bool_]:
        assert self.log is not None
        return self.log.superseded

    @property
    def lexical(self) -> DeltaLexical | None:
        """The delta's BM25, read live: it may hold chunks past `n` (a caller drops them)."""
        return self.log.lexical if self.log is not None else None

    def vectors_of(self, ids: IdArray) -> dict[int, npt.NDArray[np.float32]]:
        """The live delta vectors of `ids` (absent ids are left out). The delta's ids ascend
        (chunks are appended in id order), so this is a bisection per id, not a scan of the
        delta: the write path asks it for every PUT."""
        if self.n == 0 or len(ids) == 0:
            return {}
        wanted = np.asarray(ids, dtype=np.int64)
        at = np.clip(np.searchsorted(self.ids, wanted), 0, self.n - 1)
        dead = self.log.dead.live() if self.log is not None else None
        out: dict[int, npt.NDArray[np.float32]] = {}
        for chunk_id, p in zip(wanted.tolist(), at.tolist(), strict=True):
            if self.ids[p] == chunk_id and (dead is None or not dead[p]):
                out[chunk_id] = self.vectors[p]
        return out


@dataclass(frozen=True)
class Snapshot:
    """One consistent view for one request: never mixes two generations."""

    generation: LoadedGeneration
    delta: Delta
    lexical: GenerationLexical | None = None
    """BM25 over the generation's passages, labelled by read-model position (None where lexical
    search is switched off)."""

    def generation_row(self, actor_id: str) -> int | None:
        """The actor's read-model row, unless it is not in the generation or was rewritten or
        deleted since (then the store and the delta hold what is current)."""
        row = self.generation.readmodel.rows.get(actor_id)
        return None if row is None or self.delta.superseded[row] else row


class ServedIndex:
    """Holds the served generation and its delta log; cheap to construct, loads on first use."""

    def __init__(
        self,
        generations: GenerationStore,
        store: ProfileStore,
        embedder: Embedder,
        with_lexical: bool = True,
        probe_seconds: float = 0.0,
    ) -> None:
        self._with_lexical = with_lexical
        self._probe_seconds = probe_seconds
        self._probed_at = -float("inf")
        self._generations = generations
        self._store = store
        self._embedder = embedder
        self._generation: LoadedGeneration | None = None
        self._generation_lexical: GenerationLexical | None = None
        self._log: DeltaLog | None = None
        self._served: tuple[LoadedGeneration, GenerationLexical | None, DeltaLog] | None = None
        """The three above as ONE reference, which is what a snapshot reads: a swap assigns the
        attributes one after the other, and a request between two assignments must not pair
        the new generation with the old delta (their row counts differ)."""
        self._reload_lock = threading.Lock()
        self._delta_lock = threading.Lock()

    # --- reads -----------------------------------------------------------------------------

    def get(self) -> LoadedGeneration:
        """The served generation (the empty stand-in before the first build)."""
        return self.snapshot(refresh=False).generation

    def snapshot(self, refresh: bool = True) -> Snapshot:
        """The current generation and delta; picks up chunks other writers have embedded."""
        if self._generation is None or self._generation.is_empty:
            self.reload()  # while nothing is built, a file read: pick up the first build at once
        if refresh and time.monotonic() - self._probed_at >= self._probe_seconds:
            self.refresh_delta(embed=False)
        served = self._served
        assert served is not None  # reload always leaves it
        generation, lexical, log_ = served
        return Snapshot(generation, log_.view(), lexical)

    def delta_size(self) -> int:
        return len(self._log) if self._log is not None else 0

    # --- changes ---------------------------------------------------------------------------

    def reload(self) -> LoadedGeneration:
        """Load what CURRENT names if it is not what is served, warm it, swap it in. Before the
        first build, serve the empty stand-in generation."""
        with self._reload_lock:
            wanted = self._generations.current_id()
            current = self._generation
            if current and (wanted is None or current.manifest.generation == wanted):
                return current
            if wanted is None:
                loaded = LoadedGeneration.empty(self._embedder.model_id, self._embedder.dim)
            else:
                wanted, loaded = self._load_named(wanted)
                warm(loaded)
            watermark = loaded.manifest.watermark
            lexical = self._lexical(loaded) if self._with_lexical and wanted else None
            with self._delta_lock:
                # The new generation holds everything up to its watermark: the delta restarts
                # there and re-reads what is newer (cached vectors only: cheap).
                delta_lexical = DeltaLexical(lexical) if self._with_lexical else None
                log_ = DeltaLog(self._embedder.dim, watermark, loaded, delta_lexical)
                self._generation, self._generation_lexical, self._log = loaded, lexical, log_
                self._served = (loaded, lexical, log_)
            if wanted is None:
                log.info("no index generation built yet: serving every stored chunk from the delta")
            else:
                log.info("serving generation %s (%d chunks)", wanted, loaded.manifest.chunks)
            self.refresh_delta(embed=False)
            return loaded

    def _load_named(self, wanted: str) -> tuple[str, LoadedGeneration]:
        """Load `wanted`, which CURRENT named a moment ago. A rebuild publishing meanwhile may
        prune it (the keep count, or an erasure: see `GenerationStore.prune`) before or while
        it is read; CURRENT then names the newer generation, which is loaded instead."""
        for _ in range(LOAD_ATTEMPTS):
            try:
                found = self._generations.load(
                    wanted,
                    model_id=self._embedder.model_id,
                    dim=self._embedder.dim,
                    store=self._store,
                )
            except (NotFound, CorruptArtifact, FileNotFoundError):
                newer = self._generations.current_id()
                if newer is None or newer == wanted:
                    raise  # really missing or damaged, not replaced
                log.info("generation %s was pruned while loading; loading %s", wanted, newer)
                wanted = newer
                continue
            assert found is not None
            return wanted, found
        raise Conflict(f"generations were replaced faster than one loads ({LOAD_ATTEMPTS} tries)")

    def _lexical(self, generation: LoadedGeneration) -> GenerationLexical:
        """The generation's BM25 postings: its own files (built at publish), or, for a generation
        published before them, built here from its passages still in the store."""
        if generation.lexical is not None:
            return generation.lexical
        watermark = generation.manifest.watermark
        ids: list[int] = []
        texts: list[str] = []
        for batch in self._store.iter_chunks():
            for chunk in batch:
                if chunk.id > watermark:
                    break
                ids.append(chunk.id)
                texts.append(chunk.text)
        log.info("generation has no BM25 files (published before them): built from the store")
        return for_readmodel(generation.readmodel, np.array(ids, dtype=np.int64), texts)

    def forget(self, actor_id: str) -> None:
        """Drop a deleted actor from what this process serves, at once."""
        if self._log is not None:
            with self._delta_lock:
                self._log.forget(actor_id)

    def refresh_delta(self, embed: bool) -> int:
        """Add chunks newer than the delta to it. With `embed`, vectors missing from the cache
        are computed (the write path); without, only cached ones are taken (the query path, so a
        query never pays for someone else's import). Returns how many chunks were added."""
        if self._log is None:
            self.reload()
        log_ = self._log
        self._probed_at = time.monotonic()
        # A query first asks whether anything is new (one indexed max()); the write path knows.
        if log_ is None or (not embed and self._store.max_chunk_id() <= log_.covered):
            return 0
        with self._delta_lock:
            log_ = self._log
            assert log_ is not None
            model_id = self._embedder.model_id
            # The chunks, their cached vectors and their actors in one read, not three.
            found = self._store.fresh_chunks(log_.covered, model_id)
            fresh = found.chunks
            if not fresh:
                return 0
            cached = dict(found.vectors)
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
                ready = [c for c in ready if c.actor_id in found.summaries]  # deleted meanwhile
                summaries = {c.actor_id: found.summaries[c.actor_id] for c in ready}
                stacked = np.stack([cached[c.content_hash] for c in ready]).astype(np.float32)
                log_.append(ready, stacked.reshape(-1, log_.dim), summaries)
            log_.covered = max(log_.covered, covered)
            return len(ready)


def warm(generation: LoadedGeneration) -> None:
    """Touch the index once so the first real query does not pay for page faults."""
    if len(generation.index):
        probe = np.zeros((1, generation.index.dim), np.float32)
        probe[0, 0] = 1.0
        generation.index.search(probe, 1)


class Watcher:
    """A background thread that keeps a serving process current: it swaps in generations that
    another process published, embeds chunks that another process wrote, and asks for a rebuild
    once the delta outgrows `rebuild_at` chunks (the delta is searched exactly, so it must stay
    small)."""

    def __init__(
        self,
        runtime: _HasIndex,
        seconds: float,
        rebuild_at: int | None = None,
        start_rebuild: object = None,
    ) -> None:
        self._runtime = runtime
        self._seconds = seconds
        self._rebuild_at = rebuild_at
        self._start_rebuild = start_rebuild
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
                large = self._rebuild_at is not None and (
                    self._runtime.index.delta_size() >= self._rebuild_at
                )
                if large and callable(self._start_rebuild):
                    self._start_rebuild()
            except Exception:  # keep serving the old generation; say why in the log
                log.exception("index watcher: could not refresh; still serving the old snapshot")


class _HasIndex(Protocol):
    @property
    def index(self) -> ServedIndex: ...
