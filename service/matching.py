"""Free-text search and actor-to-actor matching: candidates -> exact scores -> one page.

1. **Candidates and scores** come from the snapshot's arrays (service.ranking): nearest chunks of
   every query chunk (filters inside FAISS), for actor matching also the nearest profile vectors
   over every eligible actor, for search also BM25; then every query chunk is compared with every
   chunk of each candidate, reduced to one score by the configured aggregate:
   - `max`: the single best chunk pair; rewards one strong overlap.
   - `coverage`: for each query chunk its best similarity to the actor, averaged over the query
     chunks; rewards actors who answer to *many* parts of the query's profile.
   - `topk`: the mean of the best three pairs.
2. **One page, one store read.** The best candidates are resolved in one batched read: actors
   deleted or rewritten since the snapshot drop out and the page is refilled from the ranked
   list; the evidence texts come with the same read.

Scores are cosine similarities (or their mean) of L2-normalised vectors: comparable within one
response and one model, not calibrated probabilities.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from service.config import Aggregate
from service.deadline import Deadline
from service.deadline import check as checkpoint
from service.domain import OPERATOR, Actor, ActorSummary, Evidence, Match, Viewer
from service.embedding.base import Embedder
from service.errors import FieldProblem, InvalidInput, NotFound
from service.ranking import TOP_K_PAIRS, Candidate, Ranked, Ranker, Request
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
    facets: dict[str, dict[str, int]] = field(default_factory=dict)
    """Counts per country, kind and sector over every candidate the ranking scored."""
    facets_over: int = 0
    weak: bool = False
    """True when nothing fits the query (then `matches` is empty and `reason` says why)."""
    reason: str | None = None


@dataclass(frozen=True)
class SearchQuery:
    """A free-text query, stripped and embedded (Matcher.embed_query)."""

    text: str
    vectors: npt.NDArray[np.float32]
    """One row: the query's vector."""


@dataclass(frozen=True)
class QueryChunk:
    text: str
    language: str | None = "en"
    """None: not detected yet (a free-text query; only `explain` needs it, and detection costs
    about as much as the rest of the ranking's Python, BENCHMARKS.md)."""
    visible: bool = True
    """Whether the viewer may see this query passage (another tenant's private text is hidden)."""
    chunk_id: int | None = None
    """A stored passage whose text is read with the result page (then `text` is "")."""


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
        profile_weight: float = 0.0,
        weak_below: float | None = None,
        activity_prior: float = 0.0,
        network_weight: float = 0.0,
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
        self.profile_weight = profile_weight
        self.weak_below = weak_below
        self.activity_prior = activity_prior
        self.network_weight = network_weight

    # --- entry points ----------------------------------------------------------------------

    def embed_query(self, text: str, deadline: Deadline | None = None) -> SearchQuery:
        """A free-text query, checked and embedded: the first step of `search`.

        The API takes it before a ranking turn (service.api.slots) and the rest inside one, so
        the queries of searches waiting for a turn share one model call
        (service.embedding.batching) instead of queueing one by one behind the turns.
        """
        query = text.strip()
        if not query:
            raise InvalidInput([FieldProblem("q", "must not be empty")])
        vectors = self.embedder.embed([query], role="query")
        checkpoint(deadline, "embedding the query")
        return SearchQuery(query, vectors)

    def search(
        self,
        query: str | SearchQuery,
        limit: int = 10,
        filters: ActorFilter | None = None,
        viewer: Viewer = OPERATOR,
        diversify: bool = False,
        collapse: bool = True,
        deadline: Deadline | None = None,
    ) -> MatchResult:
        """Actors whose passages are closest to a free-text query (its text, or the text
        embedded already by `embed_query`)."""
        if isinstance(query, str):
            query = self.embed_query(query, deadline)
        return self._rank(
            query.vectors,
            [QueryChunk(query.text, language=None)],
            limit,
            filters or ActorFilter(),
            viewer,
            diversify,
            lexical=query.text,
            collapse=collapse,
            deadline=deadline,
        )

    def match_actor(
        self,
        actor_id: str,
        limit: int = 10,
        filters: ActorFilter | None = None,
        viewer: Viewer = OPERATOR,
        mode: Mode = "similar",
        diversify: bool = False,
        collapse: bool = True,
        deadline: Deadline | None = None,
    ) -> MatchResult:
        """Actors similar to a stored actor (or, in `complement` mode, actors whose offers and
        competences answer its needs); never the actor itself."""
        snapshot = self._snapshot()
        served = _query_from_generation(snapshot, actor_id, mode, self.max_query_chunks, viewer)
        if served is not None:  # its vectors and attributes are in the read model: no store read
            reference, served_queries, served_vectors = served
            return self._rank(
                served_vectors,
                served_queries,
                limit,
                _about(reference, filters, mode),
                viewer,
                diversify,
                snapshot=snapshot,
                query_actor=actor_id,
                collapse=collapse,
                deadline=deadline,
            )
        summary = self.store.actor_summaries([actor_id]).get(actor_id)
        if summary is None:
            raise NotFound(f"actor {actor_id!r} does not exist")
        chunks = [
            c
            for c in self.store.chunks_of_actors([actor_id])
            if viewer.counts_in_matching(c.visibility, summary.owner)
        ]
        chunks = _for_mode(chunks, [c.intent for c in chunks], mode)
        picked = pick_query_chunks(chunks, self.max_query_chunks)
        queries = [
            QueryChunk(c.text, c.language, viewer.can_see(c.visibility, summary.owner))
            for c in picked
        ]
        vectors = self.passage_vectors([(c.text, c.content_hash) for c in picked])
        checkpoint(deadline, "embedding the query passages")
        actor_filter = _about(summary, filters, mode)
        return self._rank(
            vectors,
            queries,
            limit,
            actor_filter,
            viewer,
            diversify,
            collapse=collapse,
            deadline=deadline,
        )

    def match_profile(
        self,
        actor: Actor,
        limit: int = 10,
        filters: ActorFilter | None = None,
        viewer: Viewer = OPERATOR,
        mode: Mode = "similar",
        diversify: bool = False,
        collapse: bool = True,
        deadline: Deadline | None = None,
    ) -> MatchResult:
        """Actors similar to a profile that need not be stored (e.g. POSTed by another system)."""
        intents = {d.id: (d.intent.value if d.intent else None) for d in actor.documents}
        drafts = self._prepare(actor)
        checkpoint(deadline, "chunking the profile")
        drafts = _for_mode(drafts, [intents[d.document_id] for d in drafts], mode)
        picked = pick_query_chunks(drafts, self.max_query_chunks)
        queries = [QueryChunk(d.text, d.language) for d in picked]  # the caller's own text
        # Not cached: a profile that is only matched, never stored, leaves nothing behind.
        vectors = self.passage_vectors([(d.text, d.content_hash) for d in picked], cache=False)
        checkpoint(deadline, "embedding the query passages")
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
        return self._rank(
            vectors,
            queries,
            limit,
            actor_filter,
            viewer,
            diversify,
            collapse=collapse,
            deadline=deadline,
        )

    def explain(self, result: MatchResult) -> MatchResult:
        """Add shared key terms to every evidence whose query passage the viewer may see."""
        if self.key_terms is None:
            return result
        terms = self.key_terms

        languages: dict[str, str] = {}

        def explained(e: Evidence) -> Evidence:
            if e.query_text is None:
                return e
            language = e.query_language
            if language is None:
                if e.query_text not in languages:
                    languages[e.query_text] = detect_language(e.query_text)
                language = languages[e.query_text]
            shared = terms.shared(e.query_text, language, e.text, e.language)
            return replace(e, key_terms=tuple(shared))

        matches = [
            replace(m, evidence=tuple(explained(e) for e in m.evidence)) for m in result.matches
        ]
        return replace(result, matches=matches)

    # --- internals -------------------------------------------------------------------------

    def passage_vectors(
        self, items: Sequence[tuple[str, str]], cache: bool = True
    ) -> npt.NDArray[np.float32]:
        """Vectors of passages: from the embedding cache where present, else embedded (and
        cached with `cache`)."""
        cached = self.store.cached_vectors([h for _, h in items], self.embedder.model_id)
        missing = [(t, h) for t, h in items if h not in cached]
        if missing:
            fresh = self.embedder.embed([t for t, _ in missing], role="passage")
            new = {h: fresh[i] for i, (_, h) in enumerate(missing)}
            if cache:
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
        snapshot: Snapshot | None = None,
        query_actor: str | None = None,
        collapse: bool = True,
        deadline: Deadline | None = None,
    ) -> MatchResult:
        snapshot = snapshot or self._snapshot()
        manifest = snapshot.generation.manifest
        if len(queries) == 0:
            return MatchResult([], manifest.generation, manifest.model_id)
        wanted = max(limit * 2, MIN_CANDIDATE_ACTORS)
        ranker = Ranker(
            snapshot,
            Request(
                queries=query_vectors,
                actor_filter=actor_filter,
                viewer=viewer,
                wanted=wanted,
                aggregate=self.aggregate,
                profile_candidates=lexical is None,
                profile_weight=self.profile_weight if lexical is None else 0.0,
                activity_prior=self.activity_prior if lexical is None else 0.0,
                free_text=lexical is not None,
                **_network_request(snapshot, query_actor, self.network_weight),
            ),
        )
        rows, delta_actors = ranker.chunk_hits(k=max(64, wanted * 2))
        if lexical is None:  # actor matching: every eligible actor competes by its profile
            rows = np.concatenate([rows, ranker.profile_hits(), ranker.network_hits()])
        lexical_best: dict[str, float] = {}
        if lexical is not None and self.fusion != "vector":
            hits = ranker.lexical_hits(lexical, wanted * 4)
            rows = np.concatenate([rows, np.array([r for r, _ in hits if r >= 0], np.int64)])
            delta_actors += [a for r, a in hits if r < 0]
            names = ranker.rm.actor_ids
            lexical_best = {(names[r] if r >= 0 else a): v for (r, a), v in hits.items()}
            lexical_best = dict(list(lexical_best.items())[:wanted])
        checkpoint(deadline, "finding candidates")
        scored = ranker.score(rows, delta_actors)
        checkpoint(deadline, "scoring candidates")
        weak, reason = False, None
        if lexical is not None and self.weak_below is not None and len(scored):
            # Nothing fits: no passage close enough by meaning, and no exact term in common.
            best = scored.best_chunk()
            lexical_hit = np.array([a in lexical_best for a in scored.actor_ids], dtype=np.bool_)
            fits = np.flatnonzero(lexical_hit | (best >= self.weak_below))
            if not len(fits):
                weak, reason = (
                    True,
                    (
                        f"no passage is close to the query: the best similarity, "
                        f"{float(best.max()):.2f}, is below {self.weak_below:.2f}, where this "
                        "model's matches start"
                    ),
                )
            scored = scored.subset(fits)
        if lexical_best:
            fused = fused_scores(
                list(zip(scored.actor_ids, scored.score.tolist(), strict=True)),
                lexical_best,
                self.fusion,
                self.fusion_weight,
            )
            scored = replace(scored, score=np.array(fused, dtype=np.float64))
        candidates = Ranked(scored)
        matches = self._page(
            ranker,
            candidates,
            queries,
            limit * 3 if diversify else limit,
            query_actor,
            collapse,
            deadline,
        )
        ranked = maximal_marginal_relevance(matches, limit) if diversify else matches[:limit]
        return MatchResult(
            ranked,
            manifest.generation,
            manifest.model_id,
            facets=ranker.facets(scored),
            facets_over=len(scored),
            weak=weak,
            reason=reason,
        )

    def _page(
        self,
        ranker: Ranker,
        candidates: Ranked,
        queries: Sequence[QueryChunk],
        size: int,
        query_actor: str | None = None,
        collapse: bool = True,
        deadline: Deadline | None = None,
    ) -> list[Match]:
        """The best `size` candidates that still exist, with their evidence texts: one store
        statement per page. Each candidate is proved by its evidence chunks (or, without visible
        evidence, by one of its chunks): a chunk id names one version of one actor, so a chunk
        gone means the actor was deleted or rewritten since the snapshot, and the candidate is
        dropped and the page refilled from further down the ranked list. Attributes come from the
        snapshot (they belong to that version), names with the statement. A stored query actor
        is proved by its query passages in the same statement (their texts come with it). With
        `collapse`, an actor whose best evidence is the same passage as a better-ranked one's
        joins that suggestion (`also`) instead of taking a slot."""
        by_passage: dict[int, int] = {}
        out: list[Match] = []
        at = 0
        pending = [q.chunk_id for q in queries if q.chunk_id is not None]
        reads = 0
        while (len(out) < size and at < len(candidates)) or pending:
            checkpoint(deadline, "reading the result page")
            # Which candidates will share a suggestion is known from the passage keys before
            # any text is read, so one read takes enough of them to fill the page however
            # many collapse; a refill only follows deletions or rewrites since the snapshot,
            # and each takes twice as many.
            slots = (size - len(out)) * (2**reads) + PAGE_MARGIN
            batch, picks = _walk(candidates, at, slots, set(by_passage) if collapse else None)
            at += len(batch)
            reads += 1
            proofs = [_proof(c, cols) for c, cols in zip(batch, picks, strict=True)]
            chunks, names = self.store.page([i for ids in proofs for i in ids] + pending)
            if pending:  # the query's own passages, read with the first page
                if query_actor and not any(i in chunks for i in pending):
                    self._check_query_actor(query_actor)
                queries = [_with_text(q, chunks) for q in queries]
                pending = []
            for candidate, columns, proof in zip(batch, picks, proofs, strict=True):
                if not proof or any(i not in chunks for i in proof):
                    continue  # deleted, or replaced by a write this snapshot has not seen
                summary = _summary(ranker.snapshot, candidate, names.get(candidate.actor_id, ""))
                if summary is None:
                    continue
                ids = proof[: len(columns)]
                passage = _passage(candidate, columns)
                if collapse and passage is not None and passage in by_passage:
                    first = by_passage[passage]
                    out[first] = replace(out[first], also=(*out[first].also, summary))
                    continue
                if len(out) == size:
                    continue  # the page is full; later ones may still join a suggestion
                if passage is not None:
                    by_passage.setdefault(passage, len(out))
                out.append(
                    Match(
                        actor=summary,
                        score=round(candidate.score, 6),
                        similarity=None
                        if candidate.similarity is None
                        else round(candidate.similarity, 6),
                        shared_partners=ranker.shared_partners(candidate.row),
                        evidence=tuple(
                            _evidence(candidate, i, chunks[cid], queries)
                            for i, cid in zip(columns, ids, strict=True)
                        ),
                    )
                )
        return self._with_partner_names(out)

    def _with_partner_names(self, matches: list[Match]) -> list[Match]:
        """Names of the shared partners (the network's evidence), one read for the page, made
        only when a match has any."""
        wanted = [p for m in matches for p in m.shared_partners]
        if not wanted:
            return matches
        names = self.store.names_of(wanted)
        return [
            replace(m, shared_partner_names=tuple(names.get(p, p) for p in m.shared_partners))
            if m.shared_partners
            else m
            for m in matches
        ]

    def _check_query_actor(self, actor_id: str) -> None:
        """The query actor's passages are gone: deleted (404), or rewritten since the snapshot
        (then it is matched as the snapshot knew it)."""
        if actor_id not in self.store.actor_summaries([actor_id]):
            raise NotFound(f"actor {actor_id!r} does not exist")


def _walk(
    candidates: Ranked, at: int, slots: int, seen: set[int] | None
) -> tuple[list[Candidate], list[list[int]]]:
    """Candidates from `at` on, with their evidence columns, until `slots` suggestions are
    taken: with `seen` (collapsing), one that shares its best passage with an earlier one
    (`seen`, or this walk) takes none, so it comes with the same read."""
    batch: list[Candidate] = []
    picks: list[list[int]] = []
    taken = 0
    for i in range(at, len(candidates)):
        if taken == slots:
            break
        candidate = candidates[i]
        columns = evidence_columns(candidate)
        batch.append(candidate)
        picks.append(columns)
        passage = _passage(candidate, columns)
        if seen is None or passage is None:
            taken += 1
        elif passage not in seen:
            seen.add(passage)
            taken += 1
    return batch, picks


def _passage(candidate: Candidate, columns: Sequence[int]) -> int | None:
    """The key of the candidate's best evidence passage (None without visible evidence)."""
    return int(candidate.passage[columns[0]]) if columns else None


def _proof(candidate: Candidate, columns: Sequence[int]) -> list[int]:
    """The chunk ids whose existence proves the candidate current: its evidence, or its first
    chunk when the viewer may see none of them (existence only: no text of it is shown)."""
    if columns:
        return [int(candidate.chunk_ids[i]) for i in columns]
    return [int(candidate.chunk_ids[0])] if len(candidate.chunk_ids) else []


def _summary(snapshot: Snapshot, candidate: Candidate, name: str) -> ActorSummary | None:
    """The candidate's attributes as the snapshot holds them (the version its chunks name)."""
    if candidate.row >= 0:
        return snapshot.generation.readmodel.summary(candidate.row, name)
    summary = snapshot.delta.actor(candidate.actor_id)
    return None if summary is None else replace(summary, name=name or summary.name)


def _network_request(snapshot: Snapshot, query_actor: str | None, weight: float) -> dict[str, Any]:
    """The network signal's part of a ranking request: only for a query actor of the
    generation (its partner graph is the generation's)."""
    row = snapshot.generation_row(query_actor) if query_actor and weight else None
    return {"network_weight": weight, "query_row": row} if row is not None else {}


def _with_text(query: QueryChunk, chunks: dict[int, StoredChunk]) -> QueryChunk:
    if query.chunk_id is None or query.chunk_id not in chunks:
        return query
    chunk = chunks[query.chunk_id]
    return replace(query, text=chunk.text, language=chunk.language)


def _query_from_generation(
    snapshot: Snapshot, actor_id: str, mode: Mode, limit: int, viewer: Viewer
) -> tuple[ActorSummary, list[QueryChunk], npt.NDArray[np.float32]] | None:
    """A stored actor as a query, from the generation's arrays (None when the actor is not in
    it, or was rewritten since: then the store has its current profile)."""
    rm = snapshot.generation.readmodel
    row = snapshot.generation_row(actor_id)
    if row is None:
        return None
    positions = rm.positions_of_rows(np.array([row], dtype=np.int64))
    levels = rm.levels(viewer, matching=True)  # its passages that may count for this viewer
    if levels is not None:
        positions = positions[rm.chunk_visibility[positions] <= levels[row]]
        if not len(positions):
            return rm.summary(row), [], np.zeros((0, rm.profile.shape[1]), dtype=np.float32)
    if mode == "complement":
        positions = positions[rm.chunk_need[positions]]
        if not len(positions):
            raise InvalidInput(
                [
                    FieldProblem(
                        "mode", "complement needs documents with `intent: need` in the query"
                    )
                ]
            )
    picked = _spread(positions, rm.chunk_document[positions], limit)
    vectors = snapshot.generation.index.reconstruct(rm.chunk_ids[picked])
    visible = rm.visible(picked, viewer)
    queries = [
        QueryChunk("", visible=bool(v), chunk_id=int(i))
        for i, v in zip(rm.chunk_ids[picked].tolist(), visible.tolist(), strict=True)
    ]
    return rm.summary(row), queries, vectors


def _spread(
    positions: npt.NDArray[np.int64], documents: npt.NDArray[np.int64], limit: int
) -> npt.NDArray[np.int64]:
    """`pick_query_chunks` on arrays: every document's first chunk first (documents in order),
    then every document's second, and so on, up to `limit`."""
    depth = np.zeros(len(positions), dtype=np.int64)
    seen: dict[int, int] = {}
    for i, d in enumerate(documents.tolist()):
        depth[i] = seen.get(d, 0)
        seen[d] = int(depth[i]) + 1
    order = np.lexsort((documents, depth))[:limit]
    picked: npt.NDArray[np.int64] = positions[order]
    return picked


PAGE_MARGIN = 5
"""Extra candidates resolved with each page, so a few deletions need no second read."""


def evidence_columns(candidate: Candidate, per_match: int = EVIDENCE_PER_MATCH) -> list[int]:
    """The candidate's best chunks the viewer may see, at most one per document."""
    out: list[int] = []
    seen: set[int] = set()
    for column in np.argsort(-candidate.best, kind="stable").tolist():
        document = int(candidate.document[column])
        if not candidate.visible[column] or document in seen:
            continue
        seen.add(document)
        out.append(column)
        if len(out) == per_match:
            break
    return out


def _evidence(
    candidate: Candidate, column: int, chunk: StoredChunk, queries: Sequence[QueryChunk]
) -> Evidence:
    query = queries[int(candidate.best_query[column])]
    return Evidence(
        document_id=chunk.document_id,
        document_kind=chunk.document_kind,
        text=chunk.text,
        score=round(float(candidate.best[column]), 6),
        query_text=query.text if query.visible else None,
        language=chunk.language,
        query_language=query.language,
    )


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
    fused = fused_scores([(m.actor.id, m.score) for m in scored], lexical, fusion, weight)
    return [replace(m, score=v) for m, v in zip(scored, fused, strict=True)]


def fused_scores(
    scored: Sequence[tuple[str, float]], lexical: dict[str, float], fusion: Fusion, weight: float
) -> list[float]:
    """`fuse`'s formula on (actor id, vector score) pairs: one fused score each, in order."""
    if fusion == "weighted":
        top = max(lexical.values(), default=1.0) or 1.0
        return [
            round(weight * score + (1 - weight) * lexical.get(actor, 0) / top, 6)
            for actor, score in scored
        ]
    by_vector = sorted(scored, key=lambda pair: (-pair[1], pair[0]))
    vector_rank = {actor: rank for rank, (actor, _) in enumerate(by_vector, start=1)}
    lexical_rank = {a: rank for rank, a in enumerate(lexical, start=1)}
    fused = []
    for actor, _ in scored:
        value = 1 / (RRF_K + vector_rank[actor])
        if actor in lexical_rank:
            value += 1 / (RRF_K + lexical_rank[actor])
        fused.append(round(value, 6))
    return fused
