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
from typing import Literal, TypeVar

import numpy as np
import numpy.typing as npt

from service.config import Aggregate
from service.domain import OPERATOR, Actor, ActorSummary, Evidence, Match, Viewer
from service.embedding.base import Embedder
from service.errors import FieldProblem, InvalidInput, NotFound
from service.index.base import ChunkSelection
from service.serving import Snapshot
from service.store import ActorFilter, ChunkDraft, ProfileStore, StoredChunk
from service.text import detect_language
from service.text.keyterms import KeyTerms

EVIDENCE_PER_MATCH = 3
MIN_CANDIDATE_ACTORS = 50


@dataclass(frozen=True)
class MatchResult:
    matches: list[Match]
    generation: str
    model: str
    pool: tuple[ActorSummary, ...] = ()
    """Every eligible actor the ranking scored, best first (the page is its head): what facet
    counts describe."""


@dataclass(frozen=True)
class QueryChunk:
    text: str
    language: str = "en"
    visible: bool = True
    """Whether the viewer may see this query passage (another tenant's private text is hidden)."""


Prepare = Callable[[Actor], list[ChunkDraft]]
Mode = Literal["similar", "complement"]
Fusion = Literal["vector", "rrf", "weighted"]
RRF_K = 60
"""The usual reciprocal-rank-fusion constant: damps the weight of the very first ranks."""
DIVERSITY_WEIGHT = 0.3
"""How much maximal marginal relevance trades score for variety (0: plain ranking)."""
T = TypeVar("T", StoredChunk, ChunkDraft)


class Matcher:
    """Answers free-text searches and actor-to-actor matches against the current generation."""

    def __init__(
        self,
        store: ProfileStore,
        embedder: Embedder,
        snapshot: Callable[[], Snapshot],
        prepare: Prepare,
        aggregate: Aggregate = "coverage",
        max_query_chunks: int = 48,
        key_terms: KeyTerms | None = None,
        fusion: Fusion = "weighted",
        fusion_weight: float = 0.7,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self._snapshot = snapshot
        self._prepare = prepare
        self.aggregate = aggregate
        self.max_query_chunks = max_query_chunks
        self.key_terms = key_terms
        self.fusion = fusion
        self.fusion_weight = fusion_weight

    # --- entry points ----------------------------------------------------------------------

    def search(
        self,
        text: str,
        limit: int = 10,
        filters: ActorFilter | None = None,
        viewer: Viewer = OPERATOR,
        diversify: bool = False,
    ) -> MatchResult:
        """Actors whose passages are closest to a free-text query."""
        query = text.strip()
        if not query:
            raise InvalidInput([FieldProblem("q", "must not be empty")])
        vectors = self.embedder.embed([query], role="query")
        queries = [QueryChunk(query, detect_language(query))]
        return self._rank(
            vectors, queries, limit, filters or ActorFilter(), viewer, diversify, lexical=query
        )

    def match_actor(
        self,
        actor_id: str,
        limit: int = 10,
        filters: ActorFilter | None = None,
        viewer: Viewer = OPERATOR,
        mode: Mode = "similar",
        diversify: bool = False,
    ) -> MatchResult:
        """Actors similar to a stored actor (or, in `complement` mode, actors whose offers and
        competences answer its needs); never the actor itself."""
        summary = self.store.actor_summaries([actor_id]).get(actor_id)
        if summary is None:
            raise NotFound(f"actor {actor_id!r} does not exist")
        chunks = self.store.chunks_of_actors([actor_id])
        chunks = _for_mode(chunks, [c.intent for c in chunks], mode)
        picked = pick_query_chunks(chunks, self.max_query_chunks)
        queries = [
            QueryChunk(c.text, c.language, viewer.can_see(c.visibility, summary.owner))
            for c in picked
        ]
        vectors = self._passage_vectors([(c.text, c.content_hash) for c in picked])
        actor_filter = _about(summary, filters, mode)
        return self._rank(vectors, queries, limit, actor_filter, viewer, diversify)

    def match_profile(
        self,
        actor: Actor,
        limit: int = 10,
        filters: ActorFilter | None = None,
        viewer: Viewer = OPERATOR,
        mode: Mode = "similar",
        diversify: bool = False,
    ) -> MatchResult:
        """Actors similar to a profile that need not be stored (e.g. POSTed by another system)."""
        intents = {d.id: (d.intent.value if d.intent else None) for d in actor.documents}
        drafts = self._prepare(actor)
        drafts = _for_mode(drafts, [intents[d.document_id] for d in drafts], mode)
        picked = pick_query_chunks(drafts, self.max_query_chunks)
        queries = [QueryChunk(d.text, d.language) for d in picked]  # the caller's own text
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
        actor_filter = _about(summary, filters, mode)
        return self._rank(vectors, queries, limit, actor_filter, viewer, diversify)

    def explain(self, result: MatchResult) -> MatchResult:
        """Add shared key terms to every evidence whose query passage the viewer may see."""
        if self.key_terms is None:
            return result
        terms = self.key_terms

        def explained(e: Evidence) -> Evidence:
            if e.query_text is None:
                return e
            shared = terms.shared(e.query_text, e.query_language, e.text, e.language)
            return replace(e, key_terms=tuple(shared))

        matches = [
            replace(m, evidence=tuple(explained(e) for e in m.evidence)) for m in result.matches
        ]
        return replace(result, matches=matches)

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

    def _rank(
        self,
        query_vectors: npt.NDArray[np.float32],
        queries: Sequence[QueryChunk],
        limit: int,
        actor_filter: ActorFilter,
        viewer: Viewer,
        diversify: bool = False,
        lexical: str | None = None,
    ) -> MatchResult:
        snapshot = self._snapshot()
        manifest = snapshot.generation.manifest
        if len(queries) == 0:
            return MatchResult([], manifest.generation, manifest.model_id)
        selection = self.store.select_chunks(actor_filter)
        candidates = self._candidates(snapshot, query_vectors, limit, actor_filter, selection)
        lexical_best: dict[str, float] = {}
        if lexical is not None and self.fusion != "vector" and snapshot.lexical is not None:
            lexical_best = self._lexical_candidates(snapshot, lexical, limit, selection)
            candidates = list(dict.fromkeys([*candidates, *lexical_best]))
        scored = self._score(
            snapshot, query_vectors, queries, candidates, viewer, actor_filter.exclude_needs
        )
        if lexical_best:
            scored = fuse(scored, lexical_best, self.fusion, self.fusion_weight)
        scored.sort(key=lambda m: (-m.score, m.actor.id))
        ranked = maximal_marginal_relevance(scored, limit) if diversify else scored[:limit]
        pool = tuple(m.actor for m in scored)
        return MatchResult(ranked, manifest.generation, manifest.model_id, pool)

    def _candidates(
        self,
        snapshot: Snapshot,
        query_vectors: npt.NDArray[np.float32],
        limit: int,
        actor_filter: ActorFilter,
        selection: ChunkSelection,
    ) -> list[str]:
        """Distinct eligible actors near the query, best first, enough to fill `limit`."""
        index, delta = snapshot.generation.index, snapshot.delta
        total = len(index) + len(delta)
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

    def _lexical_candidates(
        self, snapshot: Snapshot, query: str, limit: int, selection: ChunkSelection
    ) -> dict[str, float]:
        """Actors by their best BM25 passage (only passages still in the store), best first."""
        assert snapshot.lexical is not None
        wanted = max(limit * 2, MIN_CANDIDATE_ACTORS)
        scores, ids = snapshot.lexical.search(query, wanted * 4, selection)
        if snapshot.delta.lexical is not None:  # passages written since the generation
            more_scores, more_ids = snapshot.delta.lexical.search(query, wanted * 4, selection)
            scores = np.concatenate([scores, more_scores])
            ids = np.concatenate([ids, more_ids])
        alive = self.store.chunks_by_ids(ids.tolist())
        best: dict[str, float] = {}
        for score, chunk_id in zip(scores.tolist(), ids.tolist(), strict=True):
            chunk = alive.get(chunk_id)
            if chunk is not None and score > best.get(chunk.actor_id, 0.0):
                best[chunk.actor_id] = score
        ranked = sorted(best, key=lambda a: (-best[a], a))[:wanted]
        return {a: best[a] for a in ranked}

    def _score(
        self,
        snapshot: Snapshot,
        query_vectors: npt.NDArray[np.float32],
        queries: Sequence[QueryChunk],
        candidates: Sequence[str],
        viewer: Viewer,
        exclude_needs: bool = False,
    ) -> list[Match]:
        if not candidates:
            return []
        chunks = self.store.chunks_of_actors(candidates)
        if exclude_needs:  # complement mode: needs answer needs of nobody
            chunks = [c for c in chunks if c.intent != "need"]
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


TOP_K_PAIRS = 3


def aggregate_score(block: npt.NDArray[np.float32], aggregate: Aggregate) -> float:
    """One actor's score from its (query chunks x actor chunks) similarity block: the best pair
    (`max`), the mean of the best `TOP_K_PAIRS` pairs (`topk`), or the mean over query chunks of
    each one's best pair (`coverage`)."""
    if aggregate == "max":
        return float(block.max())
    if aggregate == "topk":
        flat = np.sort(block, axis=None)[::-1]
        return float(flat[:TOP_K_PAIRS].mean())
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


def _about(summary: ActorSummary, filters: ActorFilter | None, mode: Mode) -> ActorFilter:
    """The filters of a match whose query is `summary`: never itself, `exclude_same` relative to
    it, and in complement mode no passages that state needs."""
    base = filters or ActorFilter()
    return replace(
        base,
        reference=summary,
        exclude_actor_ids=base.exclude_actor_ids | {summary.id},
        exclude_needs=mode == "complement",
    )


def _for_mode(chunks: Sequence[T], intents: Sequence[str | None], mode: Mode) -> list[T]:
    """Similar: all passages. Complement: only the passages that state a need."""
    if mode == "similar":
        return list(chunks)
    needs = [c for c, intent in zip(chunks, intents, strict=True) if intent == "need"]
    if not needs:
        raise InvalidInput(
            [FieldProblem("mode", "complement needs documents with `intent: need` in the query")]
        )
    return needs


def actor_likeness(a: Match, b: Match) -> float:
    """How much two suggestions are "more of the same", in [0, 1]: half for sharing the best
    passage (the partners of one project share its text), half for alike attributes (kind,
    country, region, sectors)."""
    same_country = a.actor.country is not None and a.actor.country == b.actor.country
    parts = [float(a.actor.kind == b.actor.kind), float(same_country)]
    if a.actor.region and b.actor.region:
        parts.append(
            float(
                a.actor.region.startswith(b.actor.region)
                or b.actor.region.startswith(a.actor.region)
            )
        )
    if a.actor.sectors and b.actor.sectors:
        shared = set(a.actor.sectors) & set(b.actor.sectors)
        parts.append(len(shared) / len(set(a.actor.sectors) | set(b.actor.sectors)))
    same_passage = bool(a.evidence and b.evidence and a.evidence[0].text == b.evidence[0].text)
    return 0.5 * float(same_passage) + 0.5 * sum(parts) / len(parts)


def maximal_marginal_relevance(
    ranked: Sequence[Match], limit: int, weight: float = DIVERSITY_WEIGHT
) -> list[Match]:
    """Pick `limit` of `ranked` greedily by (1 - weight) x score - weight x the likeness to the
    most alike suggestion already picked, with scores taken relative to the best one so that both
    terms lie in [0, 1]; a full near-copy costs `weight`, a shared kind alone about `weight / 3`."""
    pool = list(ranked)
    # Relative to the best score, so the trade-off is the same for cosines and fused scores.
    top = max((m.score for m in pool), default=1.0) or 1.0
    picked: list[Match] = []
    while pool and len(picked) < limit:

        def value(m: Match) -> float:
            likeness = max((actor_likeness(m, p) for p in picked), default=0.0)
            return (1 - weight) * m.score / top - weight * likeness

        best = max(pool, key=value)
        picked.append(best)
        pool.remove(best)
    return picked


def fuse(
    scored: Sequence[Match], lexical: dict[str, float], fusion: Fusion, weight: float
) -> list[Match]:
    """Combine vector scores (exact, per actor) with BM25 scores (best passage per actor).

    - `rrf`: reciprocal rank fusion, 1/(60 + vector rank) + 1/(60 + lexical rank); robust to the
      two scores' different scales. An actor missing from one list gets nothing from it.
    - `weighted`: `weight` x cosine + (1 - weight) x BM25 / best BM25 of this query.
    The fused value replaces `score` (comparable within one response only).
    """
    if fusion == "weighted":
        top = max(lexical.values(), default=1.0) or 1.0
        return [
            replace(
                m,
                score=round(weight * m.score + (1 - weight) * lexical.get(m.actor.id, 0) / top, 6),
            )
            for m in scored
        ]
    by_vector = sorted(scored, key=lambda m: (-m.score, m.actor.id))
    vector_rank = {m.actor.id: rank for rank, m in enumerate(by_vector, start=1)}
    lexical_rank = {a: rank for rank, a in enumerate(lexical, start=1)}
    fused = []
    for m in scored:
        value = 1 / (RRF_K + vector_rank[m.actor.id])
        if m.actor.id in lexical_rank:
            value += 1 / (RRF_K + lexical_rank[m.actor.id])
        fused.append(replace(m, score=round(value, 6)))
    return fused
