"""The boundary of the profile store: the source of truth every index is derived from."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from service.audit import AuditEvent, AuditQuery, Who
from service.domain import Actor, ActorSummary, Owner
from service.feedback import Feedback, FeedbackCounts
from service.index.base import ChunkSelection

SameAttribute = Literal["sector", "region", "country", "kind", "cluster"]


@dataclass(frozen=True)
class ChunkDraft:
    """A chunk before the store has given it an id."""

    document_id: str
    ordinal: int
    text: str
    content_hash: str
    language: str


@dataclass(frozen=True)
class StoredChunk:
    id: int
    actor_id: str
    document_id: str
    document_kind: str
    visibility: str
    ordinal: int
    text: str
    content_hash: str
    language: str
    intent: str | None = None


@dataclass(frozen=True)
class ActorFilter:
    """Which actors may appear in a result.

    Positive filters (`countries`, ...) keep an actor when it matches any value of every given
    filter; regions match by NUTS prefix (AT3 keeps AT31). `exclude_same` drops actors that share
    the named attribute with `reference` (the query's actor); `exclude_actor_ids` drops actors.
    """

    countries: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    sectors: tuple[str, ...] = ()
    clusters: tuple[str, ...] = ()
    exclude_actor_ids: frozenset[str] = frozenset()
    exclude_same: frozenset[SameAttribute] = frozenset()
    reference: ActorSummary | None = None
    exclude_needs: bool = False
    """Leave out passages of documents marked `intent: need` (complement matching)."""

    def admits(self, actor: ActorSummary) -> bool:
        """This filter on one actor: the Python twin of `select_chunks` and `ReadModel.mask`
        (the live delta is filtered with it)."""
        if actor.id in self.exclude_actor_ids:
            return False
        if self.countries and actor.country not in self.countries:
            return False
        if self.kinds and actor.kind not in self.kinds:
            return False
        if self.regions and not any((actor.region or "").startswith(r) for r in self.regions):
            return False
        if self.sectors and not set(self.sectors) & set(actor.sectors):
            return False
        if self.clusters and not set(self.clusters) & set(actor.clusters):
            return False
        ref = self.reference
        if ref is None or not self.exclude_same:
            return True
        same = "country" in self.exclude_same and ref.country and actor.country == ref.country
        same = same or ("kind" in self.exclude_same and actor.kind == ref.kind)
        if "region" in self.exclude_same and ref.region and actor.region:
            same = (
                same or actor.region.startswith(ref.region) or ref.region.startswith(actor.region)
            )
        if "sector" in self.exclude_same and set(ref.sectors) & set(actor.sectors):
            same = True
        if "cluster" in self.exclude_same and set(ref.clusters) & set(actor.clusters):
            same = True
        return not same

    @property
    def has_positive(self) -> bool:
        return bool(self.countries or self.regions or self.kinds or self.sectors or self.clusters)

    @property
    def is_empty(self) -> bool:
        return not (
            self.has_positive or self.exclude_actor_ids or self.exclude_same or self.exclude_needs
        )


@dataclass(frozen=True)
class StoreCounts:
    actors: int
    documents: int
    chunks: int


@dataclass(frozen=True)
class FreshChunks:
    """What the live delta takes of the chunks above a watermark, read in one snapshot (one
    transaction, not one per kind of row): the chunks, the cached vectors of their texts, and
    their actors' summaries."""

    chunks: list[StoredChunk]
    """Every chunk with an id above the watermark, in id order."""
    vectors: dict[str, npt.NDArray[np.float32]]
    """Cached vectors of their texts for one model, by content hash (misses left out)."""
    summaries: dict[str, ActorSummary]


@dataclass(frozen=True)
class ActorPage:
    actors: list[ActorSummary]
    next_cursor: str | None
    total: int = field(default=0)


class ProfileStore(Protocol):
    def upsert_actors(
        self,
        items: Sequence[tuple[Actor, Sequence[ChunkDraft]]],
        owner: Owner = ...,
        who: Who | None = None,
    ) -> list[bool]:
        """Write each actor (owned by `owner`) with its documents and chunks, in one transaction;
        with `who`, its audit events (`actor.create` / `actor.replace`) in the same one.

        Returns, per actor, True when it was created and False when it replaced a stored one.
        """
        ...

    def delete_actor(self, actor_id: str, who: Who | None = None) -> bool:
        """Erase the actor with its texts and the cached vectors no other chunk shares (with
        `who`, and its `actor.delete` audit event, in one transaction)."""
        ...

    def last_erasure(self) -> int:
        """The change count (`changes`) at the latest actor deletion; 0 if none."""
        ...

    def drop_orphan_vectors(self) -> int:
        """Remove cached vectors whose text no stored chunk holds; returns how many."""
        ...

    def compact(self) -> None:
        """Make the bytes of deleted rows leave the store's files (where the engine keeps
        them, e.g. SQLite's write-ahead log)."""
        ...

    def record_audit(self, events: Sequence[AuditEvent]) -> None:
        """Append events to the audit log (one transaction)."""
        ...

    def audit_events(self, query: AuditQuery) -> list[AuditEvent]: ...

    def prune_audit(self, before: str) -> int:
        """Delete audit events older than `before` (ISO 8601 UTC); returns how many."""
        ...

    def get_owner(self, actor_id: str) -> Owner | None: ...

    def changes(self) -> int:
        """How many actor writes and deletes the store has seen (monotonic)."""
        ...

    def get_actor(self, actor_id: str) -> Actor | None: ...

    def actor_summaries(self, actor_ids: Sequence[str]) -> dict[str, ActorSummary]: ...

    def actor_names(self) -> list[tuple[str, str]]:
        """(id, name) of every actor, for name lookup."""
        ...

    def names_of(self, actor_ids: Sequence[str]) -> dict[str, str]:
        """id -> name of the actors of `actor_ids` that exist (one statement per 900 ids)."""
        ...

    def list_actors(
        self,
        limit: int,
        after: str | None = None,
        countries: Sequence[str] = (),
        kinds: Sequence[str] = (),
        clusters: Sequence[str] = (),
    ) -> ActorPage: ...

    def chunks_by_ids(self, chunk_ids: Sequence[int]) -> dict[int, StoredChunk]: ...

    def page(self, chunk_ids: Sequence[int]) -> tuple[dict[int, StoredChunk], dict[str, str]]:
        """The one read a ranked response makes, one statement: the chunks of `chunk_ids` that
        still exist (the evidence texts) and the names of their actors. A chunk id names one
        version of one actor (no write updates an actor in place: each deletes and inserts, and
        ids are never reused), so a chunk that still exists proves that its actor is still as
        the snapshot that ranked it knows it."""
        ...

    def chunks_of_actors(self, actor_ids: Sequence[str]) -> list[StoredChunk]: ...

    def iter_chunks(
        self, batch_size: int = 2_000, after: int = 0
    ) -> Iterator[list[StoredChunk]]: ...

    def fresh_chunks(self, after: int, model_id: str) -> FreshChunks:
        """The chunks with id > `after`, their cached `model_id` vectors and their actors'
        summaries, in one read (the write path's delta append)."""
        ...

    def select_chunks(self, actor_filter: ActorFilter) -> ChunkSelection: ...

    def cached_vectors(
        self, content_hashes: Sequence[str], model_id: str
    ) -> dict[str, npt.NDArray[np.float32]]: ...

    def put_vectors(
        self, model_id: str, vectors: Mapping[str, npt.NDArray[np.float32]]
    ) -> None: ...

    def counts(self) -> StoreCounts: ...

    def partners_of(self, actor_id: str) -> tuple[str, ...]: ...

    def partners_of_actors(self, actor_ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """Each listed actor's known partners (actors without any are left out)."""
        ...

    def put_feedback(self, item: Feedback) -> Feedback:
        """Make `item` the tenant's current label for that suggestion; returns it time-stamped."""
        ...

    def list_feedback(
        self,
        tenant: str | None = None,
        context: str | None = None,
        labels: Collection[str] = (),
    ) -> list[Feedback]:
        """Current feedback, of one tenant or (None) of all, optionally of one context."""
        ...

    def feedback_actors(
        self, tenant: str | None, context: str | None, labels: Collection[str]
    ) -> set[str]:
        """The actors `list_feedback(tenant, context, labels)` names, as one hot read (every
        search and match asks it for the tenant's dismissals)."""
        ...

    def feedback_counts(self, tenant: str | None = None) -> list[FeedbackCounts]: ...

    def max_chunk_id(self) -> int: ...

    def close(self) -> None: ...
