"""Ranking on a snapshot's arrays: candidates, exact actor scores, evidence columns.

No store access here: filters are masks over the read model's actor rows (and a predicate over
the few live-delta actors), hits are grouped by actor with numpy, and each candidate's chunks are
scored exactly against every query chunk. `service.matching` turns the ranked candidates into
matches with one store read for the final page.

Candidates come from three sources, each able to find actors the others miss:
- **chunk hits**: the nearest chunks of every query chunk (FAISS, filters inside the search);
- **profile vectors** (actor matching): the eligible actors whose mean chunk vector is nearest
  the query's, scored exactly over *every* eligible actor, so one strong chunk elsewhere cannot
  crowd out an actor that answers the whole profile;
- **BM25** (free-text search): the best lexical passages.

**What counts** is decided per viewer before any of this (`ReadModel.levels`, `Viewer.level`):
free-text search ranks an actor only by the passages the viewer may see, so no score is an
oracle for hidden text; actor matching may also count passages the viewer cannot see where their
owner's `private_in_matching` allows it. Passages that do not count are masked out of candidate
generation (FAISS deny/allow lists, BM25 per audience, the delta's mask) and out of scoring
(CSR slices, profile vectors) alike, with the same vectorised masks as the filters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from service import network
from service.config import Aggregate
from service.domain import Viewer
from service.index import profiles
from service.index.base import ChunkSelection
from service.index.readmodel import passage_keys
from service.serving import Snapshot
from service.store import ActorFilter

Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int64]

TOP_K_PAIRS = 3
ALLOW_LIST_SHARE = 0.5
"""Below this share of eligible chunks a search gets an allow-list, above it a deny-list."""


@dataclass(frozen=True)
class Candidate:
    """One actor's exact score, and per scored chunk what evidence needs."""

    actor_id: str
    score: float
    chunk_ids: Ints
    best: Floats
    """Each chunk's best similarity to any query chunk."""
    best_query: Ints
    visible: npt.NDArray[np.bool_]
    document: Ints
    """Document ordinal of each chunk within the actor (evidence takes one per document)."""
    passage: Ints
    """Each chunk's passage key (`readmodel.passage_keys`): equal texts, equal keys."""
    row: int = -1
    """Read-model row, or -1 for an actor of the live delta."""
    similarity: float | None = None
    """The text score alone, where `score` also holds non-text signals (else None: the same)."""


CHUNK_COLUMNS: dict[str, type] = {
    "chunk_ids": np.int64,
    "best": np.float32,
    "best_query": np.int64,
    "visible": np.bool_,
    "document": np.int64,
    "passage": np.int64,
}
"""The per-chunk columns `Candidate` and `Scored` share (and their types)."""


@dataclass(frozen=True)
class Scored:
    """Every scored candidate as columns, one entry per actor, and their chunks as CSR columns
    (candidate `i`'s chunks are `start[i]:start[i + 1]`). Signals, fusion, the weak floor, the
    order and the facets are array operations over them; `candidate(i)` makes the one object a
    result page needs, for the few candidates it reads (a search scores ~250 actors and shows
    10: objects for all of them, copied at each step, were a tenth of its CPU)."""

    # Per candidate (`Candidate`'s `actor_id`, `row`, `score`, `similarity`), then per chunk
    # (`Candidate`'s chunk columns, concatenated in candidate order).
    actor_ids: list[str]
    rows: Ints
    score: npt.NDArray[np.float64]
    start: Ints
    chunk_ids: Ints
    best: Floats
    best_query: Ints
    visible: npt.NDArray[np.bool_]
    document: Ints
    passage: Ints
    similarity: npt.NDArray[np.float64] | None = None

    def __len__(self) -> int:
        return len(self.actor_ids)

    @classmethod
    def join(cls, parts: Sequence[Scored]) -> Scored:
        """One set from several (rows of the generation, actors of the delta)."""
        parts = [p for p in parts if len(p)]
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return cls(
                [],
                np.zeros(0, np.int64),
                np.zeros(0),
                np.zeros(1, np.int64),
                **{name: np.zeros(0, dtype) for name, dtype in CHUNK_COLUMNS.items()},
            )
        offsets = np.cumsum([0] + [len(p.chunk_ids) for p in parts[:-1]])
        return cls(
            actor_ids=[a for p in parts for a in p.actor_ids],
            rows=np.concatenate([p.rows for p in parts]),
            score=np.concatenate([p.score for p in parts]),
            start=np.concatenate(
                [np.zeros(1, np.int64)]
                + [p.start[1:] + o for p, o in zip(parts, offsets, strict=True)]
            ),
            **{name: np.concatenate([getattr(p, name) for p in parts]) for name in CHUNK_COLUMNS},
        )

    def candidate(self, i: int) -> Candidate:
        s, e = int(self.start[i]), int(self.start[i + 1])
        return Candidate(
            actor_id=self.actor_ids[i],
            score=float(self.score[i]),
            row=int(self.rows[i]),
            similarity=None if self.similarity is None else float(self.similarity[i]),
            **{name: getattr(self, name)[s:e] for name in CHUNK_COLUMNS},
        )

    def best_chunk(self) -> Floats:
        """Each candidate's best chunk similarity (every candidate has at least one chunk)."""
        if not len(self):
            return np.zeros(0, np.float32)
        best: Floats = np.maximum.reduceat(self.best, self.start[:-1])
        return best

    def subset(self, keep: Ints) -> Scored:
        """The candidates at `keep`, in that order."""
        lengths = np.diff(self.start)[keep]
        start = np.zeros(len(keep) + 1, dtype=np.int64)
        start[1:] = np.cumsum(lengths)
        chunks = np.repeat(self.start[keep] - start[:-1], lengths) + np.arange(start[-1])
        return Scored(
            actor_ids=[self.actor_ids[int(i)] for i in keep],
            rows=self.rows[keep],
            score=self.score[keep],
            start=start,
            similarity=None if self.similarity is None else self.similarity[keep],
            **{name: getattr(self, name)[chunks] for name in CHUNK_COLUMNS},
        )

    def order(self) -> Ints:
        """Best first; equal scores (to 6 decimals, as shown) by actor id."""
        if not len(self):
            return np.zeros(0, dtype=np.int64)
        rounded = np.array([-round(v, 6) for v in self.score.tolist()])
        order: Ints = np.lexsort((np.array(self.actor_ids), rounded))
        return order


class Ranked:
    """`Scored` in its order, made into `Candidate`s one at a time as the page reads them."""

    def __init__(self, scored: Scored) -> None:
        self.scored = scored
        self._order = scored.order()

    def __len__(self) -> int:
        return len(self._order)

    def __getitem__(self, i: int) -> Candidate:
        return self.scored.candidate(int(self._order[i]))


@dataclass(frozen=True)
class Request:
    queries: Floats
    actor_filter: ActorFilter
    viewer: Viewer
    wanted: int
    aggregate: Aggregate = "coverage"
    profile_candidates: bool = False
    profile_weight: float = 0.0
    activity_prior: float = 0.0
    """Weight of the activity prior (0: off)."""
    network_weight: float = 0.0
    """Weight of the partner-network signal (0: off; service.network)."""
    query_row: int = -1
    """The query actor's read-model row (actor matching from the generation), else -1."""
    free_text: bool = False
    """Free-text search: only passages the viewer may see count (else actor matching's rule)."""


def normalised(v: Floats) -> Floats:
    norm = float(np.linalg.norm(v))
    return (v / norm).astype(np.float32) if norm > 0 else v.astype(np.float32)


def reduce(best: Floats, aggregate: Aggregate) -> Floats:
    """(query chunks x actors) best similarities -> one score per actor."""
    if best.shape[0] == 0:
        return np.zeros(best.shape[1], dtype=np.float32)
    reduced: Floats = best.max(axis=0) if aggregate == "max" else best.mean(axis=0)
    return reduced


def _top(scores: Floats, n: int) -> Ints:
    """Indexes of the `n` highest finite scores, best first (ties by index)."""
    finite = np.flatnonzero(np.isfinite(scores))
    if len(finite) > n:
        part = np.argpartition(-scores[finite], n - 1)[:n]
        finite = finite[part]
    order = np.lexsort((finite, -scores[finite]))
    return finite[order]


class Ranker:
    """Candidates and exact scores for one request on one snapshot."""

    def __init__(self, snapshot: Snapshot, request: Request) -> None:
        self.snapshot = snapshot
        self.request = request
        self.rm = snapshot.generation.readmodel
        self.delta = snapshot.delta
        f = request.actor_filter
        self.rows_ok = self.rm.mask(f) & ~self.delta.superseded[: len(self.rm)]
        self.levels = self.rm.levels(request.viewer, matching=not request.free_text)
        """Per row how far into its passages this request reaches (None: all of them)."""
        self.everything = bool(self.rows_ok.all()) and not f.exclude_needs and self.levels is None
        self._chunks_ok: npt.NDArray[np.bool_] | None = None
        self._delta_ok = self._delta_mask()
        self._network: npt.NDArray[np.float64] | None = None
        self._query_partners: npt.NDArray[np.bool_] | None = None

    @property
    def chunks_ok(self) -> npt.NDArray[np.bool_]:
        """Eligible chunk positions (computed on first use: a gather over every chunk)."""
        if self._chunks_ok is None:
            needs = self.request.actor_filter.exclude_needs
            self._chunks_ok = self.rm.chunk_mask(self.rows_ok, needs, self.levels)
        return self._chunks_ok

    # --- eligibility -----------------------------------------------------------------------

    def _delta_mask(self) -> npt.NDArray[np.bool_]:
        """Delta chunks that are alive, of an admitted actor, not needs in complement mode, and
        within the viewer's reach: gathers over the chunks, the filter and the reach decided
        once per delta actor."""
        delta, request = self.delta, self.request
        f = request.actor_filter
        ok = delta.alive()
        if not ok.any():
            return ok
        codes = delta.actor_code
        admitted = np.zeros(delta.actor_count, dtype=np.bool_)
        reach = np.zeros(delta.actor_count, dtype=np.int8)
        for code in np.unique(codes[ok]).tolist():
            actor = delta.actor(delta.actor_id(code))
            if actor is not None and f.admits(actor):
                admitted[code] = True
                reach[code] = request.viewer.level(actor.owner, matching=not request.free_text)
        ok &= admitted[codes] & (delta.visibility <= reach[codes])
        if f.exclude_needs:
            ok &= ~delta.need
        return ok

    def selection(self) -> ChunkSelection | None:
        if self.everything:
            return None
        if self.chunks_ok.mean() < ALLOW_LIST_SHARE:
            return ChunkSelection(allow=self.rm.chunk_ids[self.chunks_ok])
        return ChunkSelection(deny=self.rm.chunk_ids[~self.chunks_ok])

    # --- candidate sources -----------------------------------------------------------------

    def chunk_hits(self, k: int) -> tuple[Ints, list[str]]:
        """Rows and delta actors holding the nearest chunks, best first."""
        q, wanted = self.request.queries, self.request.wanted
        rows = np.zeros(0, dtype=np.int64)
        index = self.snapshot.generation.index
        if len(index) and self.rows_ok.any():
            # The codes' scores suffice to choose rows (`score` then scores their chunks).
            scores, ids = index.search(q, min(k, len(index)), self.selection(), exact_scores=False)
            flat_ids, flat_scores = ids.ravel(), scores.ravel()
            positions = self.rm.positions_of_ids(flat_ids)
            hit = (flat_ids >= 0) & (positions >= 0)
            positions, flat_scores = positions[hit], flat_scores[hit]
            if not self.everything:  # the mask is the truth, whatever FAISS was told
                hit = self.chunks_ok[positions]
                positions, flat_scores = positions[hit], flat_scores[hit]
            best = np.full(len(self.rm), -np.inf, dtype=np.float32)
            np.maximum.at(best, self.rm.chunk_actor[positions], flat_scores)
            rows = _top(best, wanted)
        return rows, self._delta_best(q, wanted)

    def _delta_best(self, q: Floats, wanted: int) -> list[str]:
        delta = self.delta
        if not self._delta_ok.any():
            return []
        sims = (q @ delta.vectors.T).max(axis=0)
        best = np.full(delta.actor_count, -np.inf, dtype=np.float32)
        np.maximum.at(best, delta.actor_code[self._delta_ok], sims[self._delta_ok])
        return [delta.actor_id(int(code)) for code in _top(best, wanted).tolist()]

    def profile_hits(self) -> Ints:
        """Eligible rows by profile-vector cosine to the query's mean vector, best first: exact
        up to `profiles.EXACT_ROWS` eligible rows, from the generation's graph beyond."""
        rm, wanted = self.rm, self.request.wanted
        if not len(rm) or not self.rows_ok.any():
            return np.zeros(0, dtype=np.int64)
        query = normalised(self.request.queries.mean(axis=0))
        if self.levels is None:
            rows, _ = profiles.nearest(rm.profile_index, rm.profile, self.rows_ok, query, wanted)
            return rows
        # Rows with passages this viewer may not count are scored with the vector over what
        # counts, never found through the graph (which holds the vectors over everything).
        partial = self.rows_ok & (self.levels < rm.row_reach)
        rows, scores = profiles.nearest(
            rm.profile_index, rm.profile, self.rows_ok & ~partial, query, wanted
        )
        exact = np.flatnonzero(partial)
        if len(exact):
            rows = np.concatenate([rows, exact])
            scores = np.concatenate([scores, rm.profiles(exact, self.levels) @ query])
        best: Ints = rows[_top(scores.astype(np.float32), wanted)]
        return best

    def lexical_hits(self, query: str, k: int) -> dict[tuple[int, str], float]:
        """(row, "") or (-1, delta actor id) -> its best BM25 score, best first."""
        out: dict[tuple[int, str], float] = {}
        viewer = self.request.viewer
        lexical = self.snapshot.lexical
        if lexical is not None and len(self.rm):
            allowed = None if self.everything else self.chunks_ok
            scores, positions = lexical.search(query, k, viewer, allowed)
            if allowed is not None:  # the mask is the truth, whatever BM25 was told
                keep = allowed[positions]
                scores, positions = scores[keep], positions[keep]
            best = np.zeros(len(self.rm), dtype=np.float32)
            np.maximum.at(best, self.rm.chunk_actor[positions], scores)
            for row in np.flatnonzero(best > 0).tolist():
                out[(row, "")] = float(best[row])
        delta_lexical = self.delta.lexical
        if delta_lexical is not None:
            scores, positions = delta_lexical.search(query, k, viewer)
            keep = positions < self.delta.n
            scores, positions = scores[keep], positions[keep]
            keep = self._delta_ok[positions]
            for score, p in zip(scores[keep].tolist(), positions[keep].tolist(), strict=True):
                key = (-1, self.delta.chunk(p).actor_id)
                out[key] = max(out.get(key, 0.0), score)
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    # --- exact scores ----------------------------------------------------------------------

    def score(self, rows: Ints, delta_actors: list[str]) -> Scored:
        """Every query chunk against every (eligible) chunk of each candidate."""
        parts = [self._score_rows(np.unique(rows))] if len(rows) else []
        parts += [c for a in dict.fromkeys(delta_actors) if (c := self._score_delta(a))]
        scored = Scored.join(parts)
        if len(scored) and (self.request.activity_prior or self._network_on()):
            scored = self._with_signals(scored)
        return scored

    def _with_signals(self, scored: Scored) -> Scored:
        """The text score adjusted by the switchable non-text signals, in its own units
        (`service.network.rank_scores`): the activity prior, log(1 + documents), and the
        partner-network score. `similarity` keeps the text score; shared partners are evidence."""
        request, rm = self.request, self.rm
        rows = scored.rows
        in_generation = rows >= 0
        signals = []
        if request.activity_prior:
            documents = np.zeros(len(scored))
            documents[in_generation] = rm.documents[rows[in_generation]]
            for i in np.flatnonzero(~in_generation).tolist():  # the few actors of the delta
                segment = scored.document[scored.start[i] : scored.start[i + 1]]
                documents[i] = len(np.unique(segment))
            signals.append((request.activity_prior, np.log1p(documents)))
        if self._network_on():
            everyone = self.network_scores()
            values = np.full(len(scored), float(np.log(network.PPR_FLOOR)))
            values[in_generation] = everyone[rows[in_generation]]
            # Known partners are no news: the walk reaches them first, so they get no
            # adjustment (the mean of the others) rather than a lift.
            known = np.isin(
                rows, network.neighbours(rm.partner_start, rm.partner_rows, request.query_row)
            )
            if known.any() and not known.all():
                values[known] = values[~known].mean()
            signals.append((request.network_weight, values))
        text = scored.score
        scores = network.rank_scores(text, signals) if len(scored) > 1 else text
        return replace(scored, score=np.asarray(scores, dtype=np.float64), similarity=text)

    def shared_partners(self, row: int) -> tuple[str, ...]:
        """The partners the query actor and the candidate at `row` share (evidence of the
        network signal), by row, at most `network.SHARED_SHOWN`. Asked only for the matches of
        the page: one gather over the candidate's partners against a mask of the query's, where
        computing it for every scored candidate cost a set intersection each (hub neighbour
        lists of thousands: 200 ms per match at 100,000 chunks, BENCHMARKS.md)."""
        if not self._network_on() or row < 0:
            return ()
        rm = self.rm
        if self._query_partners is None:
            self._query_partners = network.partner_mask(
                rm.partner_start, rm.partner_rows, self.request.query_row
            )
        common = network.shared_partners(
            rm.partner_start, rm.partner_rows, self._query_partners, row
        )
        return tuple(rm.actor_ids[int(p)] for p in common.tolist())

    def _network_on(self) -> bool:
        return bool(self.request.network_weight) and 0 <= self.request.query_row < len(self.rm)

    def network_scores(self) -> npt.NDArray[np.float64]:
        """Every row's network score from the query actor (computed once per request)."""
        if self._network is None:
            rm = self.rm
            self._network = network.network_scores(
                rm.partner_start, rm.partner_rows, self.request.query_row
            )
        return self._network

    def network_hits(self) -> Ints:
        """Eligible rows the query's partner network reaches, by network score, best first."""
        if not self._network_on() or not self.rows_ok.any():
            return np.zeros(0, dtype=np.int64)
        scores = self.network_scores()
        reached = self.rows_ok & (scores > np.log(network.PPR_FLOOR) + 1e-9)
        return _top(np.where(reached, scores, -np.inf).astype(np.float32), self.request.wanted)

    def _score_rows(self, rows: Ints) -> Scored:
        rm, q, request = self.rm, self.request.queries, self.request
        positions = rm.positions_of_rows(rows)
        if not self.everything:
            positions = positions[self.chunks_ok[positions]]
        if not len(positions):
            return Scored.join([])
        # From 100k chunks (`hnsw-sq8`) the chunks are scored with their 8-bit codes, decoded:
        # within ~1e-3 of the float cosine (docs/architecture.md), at a tenth of the cost.
        vectors = self.snapshot.generation.index.reconstruct(rm.chunk_ids[positions], exact=False)
        sims = q @ vectors.T
        labels = rm.chunk_actor[positions]
        starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
        ends = np.r_[starts[1:], len(labels)]
        best = np.maximum.reduceat(sims, starts, axis=1)  # (queries, candidates)
        scores = self._aggregate(best, sims, starts, ends)
        rows = labels[starts]
        if request.profile_weight:
            profile = rm.profiles(rows, self.levels) @ normalised(q.mean(axis=0))
            scores = (1 - request.profile_weight) * scores + request.profile_weight * profile
        return Scored(
            actor_ids=[rm.actor_ids[r] for r in rows.tolist()],
            rows=rows,
            score=scores.astype(np.float64),
            start=np.r_[starts, len(labels)],
            chunk_ids=np.asarray(rm.chunk_ids[positions]),
            best=sims.max(axis=0),
            best_query=sims.argmax(axis=0),
            # shown as evidence: may differ from what counted
            visible=rm.visible(positions, request.viewer),
            document=np.asarray(rm.chunk_document[positions]),
            passage=np.asarray(rm.chunk_passage[positions]),
        )

    def _aggregate(self, best: Floats, sims: Floats, starts: Ints, ends: Ints) -> Floats:
        if self.request.aggregate != "topk":
            return reduce(best, self.request.aggregate)
        return np.array(
            [
                np.sort(sims[:, s:e], axis=None)[::-1][:TOP_K_PAIRS].mean()
                for s, e in zip(starts.tolist(), ends.tolist(), strict=True)
            ],
            dtype=np.float32,
        )

    def _score_delta(self, actor_id: str) -> Scored | None:
        delta, request = self.delta, self.request
        positions = np.array(
            [
                p
                for p in (delta.log.positions.get(actor_id, []) if delta.log else [])
                if p < delta.n
            ],
            dtype=np.int64,
        )
        positions = positions[self._delta_ok[positions]] if len(positions) else positions
        summary = delta.actor(actor_id)
        if not len(positions) or summary is None:
            return None
        vectors = delta.vectors[positions]
        sims = request.queries @ vectors.T
        starts = np.zeros(1, dtype=np.int64)
        ends = np.array([len(positions)], dtype=np.int64)
        score = float(self._aggregate(sims.max(axis=1, keepdims=True), sims, starts, ends)[0])
        if request.profile_weight:
            profile = float(
                normalised(vectors.mean(axis=0)) @ normalised(request.queries.mean(axis=0))
            )
            score = (1 - request.profile_weight) * score + request.profile_weight * profile
        chunks = [delta.chunk(int(p)) for p in positions]
        documents: dict[str, int] = {}
        return Scored(
            actor_ids=[actor_id],
            rows=np.full(1, -1, dtype=np.int64),
            score=np.full(1, score),
            start=np.array([0, len(positions)], dtype=np.int64),
            chunk_ids=delta.ids[positions],
            best=sims.max(axis=0),
            best_query=sims.argmax(axis=0),
            visible=delta.visibility[positions] <= request.viewer.level(summary.owner),
            document=np.array(
                [documents.setdefault(c.document_id, len(documents)) for c in chunks],
                dtype=np.int64,
            ),
            passage=passage_keys([c.content_hash for c in chunks]),
        )

    # --- facets ----------------------------------------------------------------------------

    def facets(self, scored: Scored) -> dict[str, dict[str, int]]:
        """Counts per country, kind and sector over the scored candidates."""
        rm = self.rm
        words = {k: v.words for k, v in rm.vocabularies.items()}
        counts: dict[str, dict[str, int]] = {"country": {}, "kind": {}, "sector": {}}

        def add(facet: str, codes: Ints) -> None:
            values, numbers = np.unique(codes[codes >= 0], return_counts=True)
            for code, n in zip(values.tolist(), numbers.tolist(), strict=True):
                word = words[facet][code]
                counts[facet][word] = counts[facet].get(word, 0) + n

        rows = scored.rows[scored.rows >= 0]
        add("country", rm.country[rows])
        add("kind", rm.kind[rows])
        lengths = rm.sector_start[rows + 1] - rm.sector_start[rows]
        starts = np.repeat(rm.sector_start[rows] - np.r_[0, np.cumsum(lengths)[:-1]], lengths)
        add("sector", rm.sector_codes[starts + np.arange(int(lengths.sum()))])
        for i in np.flatnonzero(scored.rows < 0).tolist():  # the few actors of the delta
            summary = self.delta.actor(scored.actor_ids[i])
            if summary is None:
                continue
            for facet, values in (
                ("country", [summary.country] if summary.country else []),
                ("kind", [summary.kind]),
                ("sector", list(summary.sectors)),
            ):
                for value in values:
                    counts[facet][value] = counts[facet].get(value, 0) + 1
        return {
            k: dict(sorted(v.items(), key=lambda kv: (-kv[1], kv[0]))) for k, v in counts.items()
        }
