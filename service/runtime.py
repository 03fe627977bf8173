"""Wiring: one object that builds the service's parts from `Settings`, each on first use.

The CLI and the HTTP app both start from a `Runtime`; tests build one with a fake embedder and a
temporary data directory. Constructing it is free: nothing loads until a property is read.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from functools import cached_property, partial
from typing import TYPE_CHECKING

import numpy as np

from service.audit import Who
from service.config import ModelProfile, Settings
from service.domain import Actor
from service.embedding.base import Embedder
from service.embedding.bulk import PassageEncoder
from service.index.faiss_index import HnswParams
from service.index.generations import MAPS_FOLDER, GenerationStore
from service.ingest import Ingestor
from service.locks import FileRebuildLock, RebuildLock
from service.matching import Matcher
from service.names import NameIndex
from service.projection import MapCache
from service.reindex import Reindexer
from service.serving import ServedIndex
from service.store import ChunkDraft, ProfileStore, SqlProfileStore
from service.store.pg import AdvisoryRebuildLock
from service.store.sql import StorePointer
from service.subscriptions import SubscriptionStore
from service.text import Chunker
from service.text.keyterms import KeyTerms

if TYPE_CHECKING:
    from service.bridges import Bridges
    from service.needs import Coverage, NeedMatcher


UNCALIBRATED_COVER_ABOVE = 0.3
"""The coverage threshold of needs for an embedder without a calibrated model profile."""


class Runtime:
    def __init__(self, settings: Settings, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self._embedder = embedder

    @cached_property
    def profile(self) -> ModelProfile:
        return self.settings.model_profile()

    @cached_property
    def embedder(self) -> Embedder:
        if self._embedder is not None:
            return self._embedder
        from service.embedding.batching import MicroBatchingEmbedder
        from service.embedding.factory import load_embedder

        embedder = load_embedder(
            self.profile,
            threads=self.settings.threads,
            batch_size=self.settings.batch_size,
            backend=self.settings.backend,
            query_backend=self.settings.query_backend,
            query_threads=self.settings.query_threads,
            passage_sessions=self.settings.passage_sessions,
        )
        # Always wrapped: with `micro_batch_ms` 0 nothing waits, and queries that arrive while
        # a model call runs share the next one (the setting's documented behaviour).
        return MicroBatchingEmbedder(embedder, max_wait=self.settings.micro_batch_ms / 1000)

    @cached_property
    def sql_store(self) -> SqlProfileStore:
        return SqlProfileStore(self.settings.resolved_database_url)

    @property
    def store(self) -> ProfileStore:
        return self.sql_store

    @cached_property
    def rebuild_lock(self) -> RebuildLock:
        """One rebuild at a time: across hosts (PostgreSQL advisory lock) when the store is
        shared, else a lock file beside the generations."""
        if self.sql_store.is_postgresql:
            return AdvisoryRebuildLock(self.sql_store)
        return FileRebuildLock(self.settings.resolved_index_dir / "reindex.lock")

    @cached_property
    def subscriptions(self) -> SubscriptionStore:
        from service.store.subscriptions import SqlSubscriptionStore

        sql = self.sql_store
        return SqlSubscriptionStore(lambda: sql.engine)

    @cached_property
    def chunker(self) -> Chunker:
        return Chunker(self.embedder.count_tokens, max_tokens=self.profile.chunk_tokens)

    @cached_property
    def generations(self) -> GenerationStore:
        # With PostgreSQL, replicas on several hosts share the generations folder, and the
        # pointer to the served one is a row every replica reads; with SQLite, a CURRENT file.
        pointer = StorePointer(self.sql_store) if self.sql_store.is_postgresql else None
        return GenerationStore(
            self.settings.resolved_index_dir, keep=self.settings.keep_generations, pointer=pointer
        )

    @cached_property
    def index(self) -> ServedIndex:
        return ServedIndex(
            self.generations,
            self.store,
            self.embedder,
            with_lexical=self.settings.fusion != "vector",
            probe_seconds=self.settings.delta_probe_seconds,
        )

    @cached_property
    def ingestor(self) -> Ingestor:
        ingestor = Ingestor(self.store, self.chunker)
        # Embed what was just written into the live delta, so it is a candidate at once.
        ingestor.written.append(lambda _: self.index.refresh_delta(embed=True))
        return ingestor

    @cached_property
    def reindexer(self) -> Reindexer:
        return self._reindexer()

    def _reindexer(self, encoder: PassageEncoder | None = None) -> Reindexer:
        return Reindexer(
            self.store,
            self.embedder,
            self.generations,
            hnsw_threshold=self.settings.hnsw_threshold,
            hnsw=HnswParams(ef_search=self.settings.hnsw_ef_search),
            lock=self.rebuild_lock,
            encoder=encoder,
        )

    def ray_reindexer(self, address: str, workers: int | None = None) -> Reindexer:
        """The reindexer with its embedding sent to a Ray cluster (`--ray`); imports Ray."""
        from service.embedding.ray_batch import RayEncoder
        from service.reindex import EMBED_BATCH

        encoder = RayEncoder(
            address,
            self.embedder_factory(),
            self.embedder.model_id,
            workers=workers,
            threads=self.settings.threads,
            batch_size=EMBED_BATCH,
        )
        return self._reindexer(encoder)

    def embedder_factory(self) -> Callable[[], Embedder]:
        """How another process (a Ray worker) builds this runtime's embedder: the same factory
        and settings as `embedder`, or a copy of the embedder a test handed in."""
        if self._embedder is not None:
            return partial(copy.deepcopy, self._embedder)
        from service.embedding.factory import load_embedder

        return partial(
            load_embedder,
            self.profile,
            threads=self.settings.threads,
            batch_size=self.settings.batch_size,
            backend=self.settings.backend,
            passage_sessions=self.settings.passage_sessions,
        )

    def prepare(self, actor: Actor) -> list[ChunkDraft]:
        return self.ingestor.prepare([actor])[0][1]

    @cached_property
    def matcher(self) -> Matcher:
        return Matcher(
            self.store,
            self.embedder,
            self.index.snapshot,
            self.prepare,
            aggregate=self.settings.aggregate,
            max_query_chunks=self.settings.max_query_chunks,
            key_terms=KeyTerms(self._passages),
            fusion=self.settings.fusion,
            fusion_weight=self.settings.fusion_weight,
            profile_weight=self._profile_weight(),
            weak_below=self.profile.weak_below if self._own_model() else None,
            activity_prior=self.settings.activity_prior,
            network_weight=self._network_weight(),
        )

    @cached_property
    def needs(self) -> NeedMatcher:
        from service.needs import NeedMatcher

        return NeedMatcher(self.matcher, self.store, self._coverage())

    def _coverage(self) -> Coverage:
        from service.needs import Coverage

        calibrated = self.profile.cover_above if self._own_model() else None
        # Neither configured nor calibrated (a test's fake embedder): a middling cosine.
        above = self.settings.need_cover_above or calibrated or UNCALIBRATED_COVER_ABOVE
        return Coverage(above, self.profile.cover_margin if calibrated is not None else None)

    @cached_property
    def bridges(self) -> Bridges:
        from service.bridges import Bridges

        assert self.matcher.key_terms is not None
        return Bridges(self.matcher, self.store, self.matcher.key_terms)

    @cached_property
    def maps(self) -> MapCache:
        return MapCache(
            self.store,
            self.settings.resolved_index_dir / MAPS_FOLDER,
            self.generations,
            method=self.settings.map_method,
        )

    @cached_property
    def names(self) -> NameIndex:
        return NameIndex(self.store)

    def _profile_weight(self) -> float:
        if self.settings.profile_weight is not None:
            return self.settings.profile_weight
        # The profile's weight was chosen for its model; a test's fake embedder gets none.
        return self.profile.profile_weight if self._own_model() else 0.0

    def _network_weight(self) -> float:
        if self.settings.network_weight is not None:
            return self.settings.network_weight
        # Chosen for this model's text scores; a test's fake embedder gets none.
        return self.profile.network_weight if self._own_model() else 0.0

    def _own_model(self) -> bool:
        """The profile's calibrations hold for its own model only (not for a test's fake), in
        any of its backends: the int8 copy's id carries a suffix, and without this check's
        `base_model_id` the int8 backend silently served without the partner network, the
        profile weight and the weak-result floor (temporal nDCG@10 0.058 against 0.138)."""
        from service.embedding.base import base_model_id

        return base_model_id(self.embedder.model_id) == self.profile.id

    def _passages(self) -> Iterator[tuple[str, str]]:
        """The corpus key terms are weighted by: public passages only, so which shared terms an
        evidence shows (the top few by IDF) says nothing about hidden texts."""
        for batch in self.store.iter_chunks():
            yield from ((c.text, c.language) for c in batch if c.visibility == "public")

    def warm_up(self) -> None:
        """Load what the first search would otherwise wait for (model, index), and start loading
        the language detector (needed by writes only) in the background, so start-up is not
        held up by it."""
        import threading

        from service.text import load_language_detector

        self._warming = threading.Thread(
            target=load_language_detector, name="warm-lingua", daemon=True
        )
        self._warming.start()
        from service.embedding.base import warm_up

        warm_up(self.embedder)
        self.index.get()

    @property
    def warming(self) -> bool:
        """True while the background warm-up still loads (and takes CPU from requests)."""
        thread = getattr(self, "_warming", None)
        return thread is not None and thread.is_alive()

    def delete_actor(self, actor_id: str, who: Who | None = None) -> bool:
        """Erase an actor (audited as `who`'s delete, when given); from the moment this returns
        it is in no result (hits on its old chunks no longer resolve in the store)."""
        deleted = self.store.delete_actor(actor_id, who)
        self.index.forget(actor_id)
        return deleted

    def pending_changes(self) -> int:
        """Actor writes and deletes the served generation has not seen."""
        return self.store.changes() - self.index.get().manifest.changes

    def is_candidate(self, actor_id: str) -> bool:
        """Whether `actor_id` can be returned as a match now (its chunks are searchable)."""
        snapshot = self.index.snapshot()
        chunks = self.store.chunks_of_actors([actor_id])
        watermark = snapshot.generation.manifest.watermark
        in_delta = set(snapshot.delta.vectors_of(np.array([c.id for c in chunks], np.int64)))
        return bool(chunks) and all(
            c.id in in_delta if c.id > watermark else snapshot.generation_row(actor_id) is not None
            for c in chunks
        )

    def close(self) -> None:
        if "sql_store" in self.__dict__:
            self.sql_store.close()
