"""Chunk hits -> actor scores -> filters -> evidence.

Ranking runs in two stages:

1. **Candidates.** Every query chunk searches the index for its nearest chunks, restricted by the
   filters inside the search (a FAISS `IDSelector`), and the hits are grouped by actor. Hits whose
   chunk is no longer in the store (a deleted or replaced actor) are dropped. If fewer than enough
   distinct actors come back, the search is repeated with a larger k, so filters and deletions never
   silently shorten the list while eligible actors exist.
2. **Exact scoring.** For each candidate actor, all its chunk vectors are compared with all query
   vectors, and the similarity matrix is reduced to one score by the configured aggregate:
   - `max`: the single best chunk pair; rewards one strong overlap.
   - `coverage`: for each query chunk its best similarity to the actor, averaged over the query
     chunks; rewards actors who answer to *many* parts of the query's profile. For a one-chunk query
     both are the same.

Scores are cosine similarities (or their mean) of L2-normalised vectors: comparable within one
response and one model, not calibrated probabilities.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from service.config import Aggregate
from service.domain import OPERATOR, Actor, ActorSummary, Evidence, Match, Viewer
from service.embedding.base import Embedder
from service.errors import FieldProblem, IndexUnavailable, InvalidInput, NotFound
from service.serving import Snapshot
from service.store import ActorFilter, ChunkDraft, ProfileStore, StoredChunk

EVIDENCE_PER_MATCH = 3
MIN_CANDIDATE_ACTORS = 50


@dataclass(frozen=True)
class MatchResult:
    matches: list[Match]
    generation: str
    model: str


@dataclass(frozen=True)
class QueryChunk:
    text: str
    visible: bool = True
    """Whether the viewer may see this query passage (another tenant's private text is hidden)."""


Prepare = Callable[[Actor], list[ChunkDraft]]
T = TypeVar("T", StoredChunk, ChunkDraft)


class Matcher:
    """Answers free-text searches and actor-to-actor matches against the current generation."""

    def __init__(
        self,
        store: ProfileStore,
        embedder: Embedder,
        snapshot: Callable[[], Snapshot | None],
        prepare: Prepare,
        aggregate: Aggregate = "coverage",
        max_query_chunks: int = 48,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self._snapshot = snapshot
        self._prepare = prepare
        self.aggregate = aggregate
        self.max_query_chunks = max_query_chunks

    # --- entry points ----------------------------------------------------------------------

    def search(
        self,
        text: str,
        limit: int = 10,
        filters: ActorFilter | None = None,
        viewer: Viewer = OPERATOR,
    ) -> MatchResult:
        """Actors whose passages are closest to a free-text query."""
        query = text.strip()
        if not query:
            raise InvalidInput([FieldProblem("q", "must not be empty")])
        vectors = self.embedder.embed([query], role="query")
        return self._rank(vectors, [QueryChunk(query)], limit, filters or ActorFilter(), viewer)

    def match_actor(
        self,
        actor_id: str,
        limit: int = 10,
        filters: ActorFilter | None = None,
        viewer: Viewer = OPERATOR,
    ) -> MatchResult:
        """Actors similar to a stored actor; never the actor itself."""
        chunks = self.store.chunks_of_actors([actor_id])
        summary = self.store.actor_summaries([actor_id]).get(actor_id)
        if summary is None:
            raise NotFound(f"actor {actor_id!r} does not exist")
        picked = pick_query_chunks(chunks, self.max_query_chunks)
        vectors = self._passage_vectors([(c.text, c.content_hash) for c in picked])
        base = filters or ActorFilter()
        actor_filter = replace(
            base, reference=summary, exclude_actor_ids=base.exclude_actor_ids | {actor_id}
        )
        queries = [QueryChunk(c.text, viewer.can_see(c.visibility, summary.owner)) for c in picked]
        return self._rank(vectors, queries, limit, actor_filter, viewer)

    def match_profile(
        self,
        actor: Actor,
        limit: int = 10,
        filters: ActorFilter | None = None,
        viewer: Viewer = OPERATOR,
    ) -> MatchResult:
        """Actors similar to a profile that need not be stored (e.g. POSTed by another system)."""
        drafts = self._prepare(actor)
        picked = pick_query_chunks(drafts, self.max_query_chunks)
        vectors = self._passage_vectors([(d.text, d.content_hash) for d in picked])
        summary = ActorSummary(
            id=actor.id,
            name=actor.name,
            kind=actor.kind.value,
            country=actor.country,
            region=actor.region,
            sectors=actor.sectors,
            clusters=actor.clusters,
        )
        base = filters or ActorFilter()
        actor_filter = replace(
            base, reference=summary, exclude_actor_ids=base.exclude_actor_ids | {actor.id}
        )
        queries = [QueryChunk(d.text) for d in picked]  # the caller's own text
        return self._rank(vectors, queries, limit, actor_filter, viewer)

    # --- internals -------------------------------------------------------------------------

    def _passage_vectors(self, items: Sequence[tuple[str, str]]) -> npt.NDArray[np.float32]:
        """Vectors of stored passages: from the embedding cache where present, else embedded."""
        cached = self.store.cached_vectors([h for _, h in items], self.embedder.model_id)
        missing = [(t, h) for t, h in items if h not in cached]
        if missing:
            fresh = self.embedder.embed([t for t, _ in missing], role="passage")
            new = {h: fresh[i] for i, (_, h) in enumerate(missing)}
            self.store.put_vectors(self.embedder.model_id, new)
            cached.update(new)
        if not items:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        return np.stack([cached[h] for _, h in items]).astype(np.float32)

    def _current(self) -> Snapshot:
        snapshot = self._snapshot()
        if snapshot is None:
            raise IndexUnavailable(
                "no index has been built yet; run `clustermatch reindex` (or `clustermatch demo`)"
            )
        return snapshot

    def _rank(
        self,
        query_vectors: npt.NDArray[np.float32],
        queries: Sequence[QueryChunk],
        limit: int,
        actor_filter: ActorFilter,
        viewer: Viewer,
    ) -> MatchResult:
        snapshot = self._current()
        manifest = snapshot.generation.manifest
        if len(queries) == 0:
            return MatchResult([], manifest.generation, manifest.model_id)
        candidates = self._candidates(snapshot, query_vectors, limit, actor_filter)
        scored = self._score(snapshot, query_vectors, queries, candidates, viewer)
        scored.sort(key=lambda m: (-m.score, m.actor.id))
        return MatchResult(scored[:limit], manifest.generation, manifest.model_id)

    def _candidates(
        self,
        snapshot: Snapshot,
        query_vectors: npt.NDArray[np.float32],
        limit: int,
        actor_filter: ActorFilter,
    ) -> list[str]:
        """Distinct eligible actors near the query, best first, enough to fill `limit`."""
        index, delta = snapshot.generation.index, snapshot.delta
        total = len(index) + len(delta)
        selection = self.store.select_chunks(actor_filter)
        wanted = max(limit * 2, MIN_CANDIDATE_ACTORS)
        k = min(total, max(64, wanted * 2))
        while True:
            scores, ids = index.search(query_vectors, k, selection)
            delta_scores, delta_ids = delta.search(query_vectors, k, selection)
            scores = np.hstack([scores, delta_scores])
            ids = np.hstack([ids, delta_ids])
            best: dict[int, float] = {}
            for score, hit in zip(scores.ravel().tolist(), ids.ravel().tolist(), strict=True):
                if hit >= 0 and score > best.get(hit, -np.inf):
                    best[hit] = score
            alive = self.store.chunks_by_ids(list(best))
            actor_best: dict[str, float] = {}
            for chunk_id, chunk in alive.items():
                if chunk.actor_id in actor_filter.exclude_actor_ids:
                    continue  # selection already excludes them; this guards stale deny-lists
                actor_best[chunk.actor_id] = max(
                    actor_best.get(chunk.actor_id, -np.inf), best[chunk_id]
                )
            if len(actor_best) >= wanted or k >= total:
                break
            k = min(total, k * 4)
        ranked = sorted(actor_best, key=lambda a: (-actor_best[a], a))
        return ranked[:wanted]

    def _score(
        self,
        snapshot: Snapshot,
        query_vectors: npt.NDArray[np.float32],
        queries: Sequence[QueryChunk],
        candidates: Sequence[str],
        viewer: Viewer,
    ) -> list[Match]:
        if not candidates:
            return []
        chunks = self.store.chunks_of_actors(candidates)
        watermark = snapshot.generation.manifest.watermark
        older = [c for c in chunks if c.id <= watermark]
        delta_vectors = snapshot.delta.vectors_of(
            np.array([c.id for c in chunks if c.id > watermark], np.int64)
        )
        newer = [c for c in chunks if c.id in delta_vectors]  # written since, and embedded
        in_index = older + newer
        vectors = np.vstack(
            [
                snapshot.generation.index.reconstruct(np.array([c.id for c in older], np.int64)),
                np.zeros((0, query_vectors.shape[1]), np.float32),
                *(delta_vectors[c.id][None, :] for c in newer),
            ]
        )
        sims = query_vectors @ vectors.T  # (queries, candidate chunks)
        columns: dict[str, list[int]] = defaultdict(list)
        for column, chunk in enumerate(in_index):
            columns[chunk.actor_id].append(column)
        summaries = self.store.actor_summaries(list(columns))
        matches = []
        for actor_id, cols in columns.items():
            if actor_id not in summaries:
                continue  # deleted between the two stages
            block = sims[:, cols]
            summary = summaries[actor_id]
            shown = [in_index[c] for c in cols]
            visible = [viewer.can_see(c.visibility, summary.owner) for c in shown]
            matches.append(
                Match(
                    actor=summary,
                    score=round(aggregate_score(block, self.aggregate), 6),
                    evidence=tuple(evidence(block, shown, visible, queries)),
                )
            )
        return matches


def aggregate_score(block: npt.NDArray[np.float32], aggregate: Aggregate) -> float:
    """One actor's score from its (query chunks x actor chunks) similarity block."""
    if aggregate == "max":
        return float(block.max())
    return float(block.max(axis=1).mean())


def evidence(
    block: npt.NDArray[np.float32],
    chunks: Sequence[StoredChunk],
    visible: Sequence[bool],
    queries: Sequence[QueryChunk],
    per_match: int = EVIDENCE_PER_MATCH,
) -> list[Evidence]:
    """The actor's best passages the viewer may see, at most one per document, each with the
    query passage it meets (None where that passage is hidden from the viewer)."""
    best_query = block.argmax(axis=0)
    best_score = block.max(axis=0)
    out: list[Evidence] = []
    seen_documents: set[str] = set()
    for column in np.argsort(-best_score, kind="stable"):
        chunk = chunks[int(column)]
        if not visible[int(column)] or chunk.document_id in seen_documents:
            continue
        seen_documents.add(chunk.document_id)
        out.append(
            Evidence(
                document_id=chunk.document_id,
                document_kind=chunk.document_kind,
                text=chunk.text,
                score=round(float(best_score[column]), 6),
                query_text=query.text
                if (query := queries[int(best_query[column])]).visible
                else None,
            )
        )
        if len(out) == per_match:
            break
    return out


def pick_query_chunks(chunks: Sequence[T], limit: int) -> list[T]:
    """At most `limit` chunks, spread over documents: every document's first chunk comes first."""
    by_document: dict[str, list[T]] = defaultdict(list)
    for chunk in chunks:
        by_document[chunk.document_id].append(chunk)
    picked: list[T] = []
    depth = 0
    while len(picked) < min(limit, len(chunks)):
        for group in by_document.values():
            if depth < len(group) and len(picked) < limit:
                picked.append(group[depth])
        depth += 1
    return picked
