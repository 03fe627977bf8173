"""Temporal evaluation "first-time collaborations": does a method suggest the organisations an
organisation will work with for the FIRST time, seven years later?

Data (`data/temporal/`, converted from CORDIS by `scripts/build_temporal_data.py`):

- profiles of the organisations of the FP7 projects that started in 2007, one document per project
  (title + call topic, as for the demo data): what is known in 2007;
- the projects that started in 2014 in which at least two of those organisations take part, with
  their total number of partners.

Truth, for a query organisation q: the organisations it meets in a 2014 project of at most
`max_partners` partners and with which it shared no 2007 project. Its 2007 partners are known to
it and are excluded from every ranked list (`exclude_actors` in the API). Every 2007 organisation
is a candidate. Queries are a seeded sample of the organisations with at least one first-time
partner.

Per query and method: nDCG@10 (binary), recall@50 and MRR@50 of the first 50 suggestions; a
degree-controlled pairwise AUC (each (query, first-time partner) pair against a non-partner as
active in 2007: the same number of documents and about the same number of partners; ties half)
and the same against a uniformly drawn non-partner. Non-partners never met the query, in 2007
or 2014 (in a project of any size).
Per method: catalogue coverage (share of all actors in any top 10) and the share of top-10 slots
taken by the 1% most active actors (most documents). See docs/evaluation.md.
"""

from __future__ import annotations

import gzip
import json
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
from tqdm import tqdm

from service.config import CHECKOUT_DIR
from service.domain import Actor
from service.embedding.base import Embedder, l2_normalise
from service.evaluation import (
    Corpus,
    Pair,
    Scores,
    SliceRecords,
    degree_matched,
    mean_ci,
    ndcg_at_k,
    paired_differences,
    partner_sets,
    rank_by_scores,
    recall_at_k,
    reciprocal_rank,
)
from service.ingest import document_text
from service.network import neighbours, network_scores, partner_graph

TEMPORAL_DIR = CHECKOUT_DIR / "data" / "temporal"
ACTORS_FILE = TEMPORAL_DIR / "actors-2007.jsonl.gz"
PROJECTS_FILE = TEMPORAL_DIR / "projects-2014.jsonl.gz"
SLICES = ("overall", "company", "cross_country", "cross_kind", "industry_academia")
K, LIMIT = 10, 50
METRICS = (f"ndcg@{K}", f"recall@{LIMIT}", f"mrr@{LIMIT}")
ACADEMIA = frozenset({"university", "research"})
HEAD_SHARE = 0.01
"""The "most active" actors: this share of the catalogue, by number of documents."""
# Random streams of this task, derived from the one seed (the held-out task uses 1-4).
_QUERIES, _PAIRS, _HALVES, _KIND_PAIRS = 11, 12, 13, 14


# --- data and truth ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FutureProject:
    id: str
    partners: int
    """Every participating organisation, not only the 2007 ones."""
    members: frozenset[str]
    """The 2007 organisations among them."""


def load_future(path: Path = PROJECTS_FILE) -> list[FutureProject]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return [FutureProject(r["id"], int(r["partners"]), frozenset(r["members"])) for r in rows]


def co_participants(
    projects: Iterable[FutureProject], universe: Iterable[str], max_partners: int | None
) -> dict[str, set[str]]:
    """Actor -> the universe actors it meets in a project (of at most `max_partners`)."""
    known = set(universe)
    out: dict[str, set[str]] = defaultdict(set)
    for project in projects:
        if max_partners is not None and project.partners > max_partners:
            continue
        present = project.members & known
        for actor in present:
            out[actor] |= present - {actor}
    return dict(out)


def first_time_partners(
    known: Mapping[str, Iterable[str]],
    future: Iterable[FutureProject],
    universe: Iterable[str],
    max_partners: int,
) -> dict[str, frozenset[str]]:
    """Actor -> actors it meets in a future project of at most `max_partners` partners and never
    met before; actors without any are left out."""
    out = {}
    for actor, met in co_participants(future, universe, max_partners).items():
        new = frozenset(met - set(known.get(actor, ())))
        if new:
            out[actor] = new
    return out


@dataclass(frozen=True)
class Member:
    """What the split knows of an actor in 2007."""

    kind: str
    country: str | None
    documents: int
    degree: int
    """Distinct 2007 partners."""


@dataclass(frozen=True)
class TemporalSplit:
    actors: dict[str, Member]
    """The catalogue: every 2007 actor, by id (sorted)."""
    known: dict[str, frozenset[str]]
    """Each actor's 2007 partners: excluded from its lists."""
    queries: list[str]
    relevant: dict[str, frozenset[str]]
    """Query -> its first-time partners."""
    pairs: list[Pair]
    max_partners: int
    kind_pairs: list[Pair] = field(default_factory=list)
    """Each (query, first-time partner) against a stranger as active AND of the partner's kind
    (`matched`; `uniform` repeats the pair's uniform draw): the AUC that a prior on kinds cannot
    win by kind alone. Drawn from a stream of its own, so `pairs` stay as they were."""

    def eligible(self, query: str) -> int:
        return len(self.actors) - 1 - len(self.known[query])


def make_temporal_split(
    actors: Sequence[Actor],
    future: Sequence[FutureProject],
    queries: int,
    seed: int,
    max_partners: int = 60,
    tolerance: float = 0.2,
) -> TemporalSplit:
    ordered = sorted(actors, key=lambda a: a.id)
    shapes = [{"id": a.id, "documents": [{"id": d.id} for d in a.documents]} for a in ordered]
    known = {a: frozenset(s) for a, s in partner_sets(shapes).items()}
    members = {
        a.id: Member(a.kind.value, a.country or None, len(a.documents), len(known[a.id]))
        for a in ordered
    }
    candidates = first_time_partners(known, future, members, max_partners)
    rng = np.random.default_rng([seed, _QUERIES])
    pool = sorted(candidates)
    chosen = sorted(pool[int(i)] for i in rng.permutation(len(pool))[:queries])
    relevant = {q: candidates[q] for q in chosen}
    met_ever = co_participants(future, members, None)
    pair_rng = np.random.default_rng([seed, _PAIRS])
    pairs, kind_pairs = [], []
    kind_rng = np.random.default_rng([seed, _KIND_PAIRS])
    for q in chosen:
        strangers = [
            a for a in members if a != q and a not in known[q] and a not in met_ever.get(q, set())
        ]
        for partner in sorted(relevant[q]):
            matched = activity_matched(members[partner], strangers, members, pair_rng, tolerance)
            if matched is None:
                continue
            uniform = strangers[int(pair_rng.integers(len(strangers)))]
            pairs.append(Pair(q, partner, matched, uniform))
            kind = members[partner].kind
            alike = [a for a in strangers if members[a].kind == kind]
            same_kind = activity_matched(members[partner], alike, members, kind_rng, tolerance)
            if same_kind is not None:
                kind_pairs.append(Pair(q, partner, same_kind, uniform))
    return TemporalSplit(members, known, chosen, relevant, pairs, max_partners, kind_pairs)


def activity_matched(
    partner: Member,
    pool: Sequence[str],
    members: Mapping[str, Member],
    rng: np.random.Generator,
    tolerance: float,
) -> str | None:
    """A non-partner as active as `partner` in 2007: the same number of documents (else the
    nearest number), and among those a degree within ±tolerance (else the nearest degree)."""
    if not pool:
        return None
    gap = min(abs(members[a].documents - partner.documents) for a in pool)
    alike = [a for a in pool if abs(members[a].documents - partner.documents) == gap]
    degrees = {a: members[a].degree for a in alike}
    return degree_matched(partner.degree, alike, degrees, rng, tolerance)


def slice_wanted(split: TemporalSplit, query: str) -> dict[str, frozenset[str]]:
    """The relevant set of each slice (empty: the query is not in that slice). An unknown
    country is never "another country"."""
    q, relevant, actors = split.actors[query], split.relevant[query], split.actors

    def where(test: Any) -> frozenset[str]:
        return frozenset(a for a in relevant if test(actors[a]))

    if q.kind == "company":
        industry_academia = where(lambda m: m.kind in ACADEMIA)
    elif q.kind in ACADEMIA:
        industry_academia = where(lambda m: m.kind == "company")
    else:
        industry_academia = frozenset()
    return {
        "overall": relevant,
        "company": relevant if q.kind == "company" else frozenset(),
        "cross_country": where(
            lambda m: q.country is not None and m.country is not None and m.country != q.country
        ),
        "cross_kind": where(lambda m: m.kind != q.kind),
        "industry_academia": industry_academia,
    }


def head_actors(split: TemporalSplit, share: float = HEAD_SHARE) -> frozenset[str]:
    """The ceil(share x catalogue) most active actors: most documents, then most partners."""
    count = max(1, math.ceil(share * len(split.actors)))
    order = sorted(
        split.actors, key=lambda a: (-split.actors[a].documents, -split.actors[a].degree, a)
    )
    return frozenset(order[:count])


# --- methods ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ranked:
    top: list[str]
    """What a user sees: the first `limit` eligible actors, best first."""
    keys: Mapping[str, float]
    """A value per eligible actor, higher = better, for the pairwise tests; an actor missing
    from it counts as ranked below every actor in it."""


class Ranker(Protocol):
    name: str

    def rank(self, query: str, exclude: frozenset[str], limit: int) -> Ranked:
        """Never the query nor any of `exclude`."""
        ...


class Scorer(Protocol):
    name: str

    def scores(self, query: str) -> Scores:
        """One score per corpus actor."""
        ...


class ScoreRanker:
    """A method that scores every catalogue actor (the baselines) as a Ranker."""

    def __init__(self, scorer: Scorer, corpus: Corpus) -> None:
        self.scorer, self.corpus, self.name = scorer, corpus, scorer.name

    def rank(self, query: str, exclude: frozenset[str], limit: int) -> Ranked:
        scores = self.scorer.scores(query)
        top = rank_by_scores(self.corpus, scores, query, limit, exclude)
        return Ranked(top, dict(zip(self.corpus.ids, scores.tolist(), strict=True)))


class MeanVectorMethod:
    """Cosine of the actors' mean document vectors: every document embedded whole (title and
    text, as the service embeds them, `passage` role), averaged per actor, normalised."""

    def __init__(self, corpus: Corpus, actors: Sequence[Actor], embedder: Embedder, name: str):
        self.name, self.corpus = name, corpus
        by_id = {a.id: a for a in actors}
        texts = [[document_text(d) for d in by_id[a].documents] for a in corpus.ids]
        distinct = sorted({t for doc_texts in texts for t in doc_texts})
        vectors = embedder.embed(distinct, role="passage") if distinct else np.zeros((0, 1))
        row = {t: i for i, t in enumerate(distinct)}
        means = np.stack([vectors[[row[t] for t in doc_texts]].mean(axis=0) for doc_texts in texts])
        self._vectors = l2_normalise(means)

    def scores(self, query: str) -> Scores:
        vector = self._vectors[self.corpus.position[query]]
        return np.asarray(self._vectors @ vector, dtype=np.float64)


class NetworkMethod:
    """Graph baselines on the 2007 partner graph (what the profiles' `partners` say), with the
    service's own graph code (service.network): `common-neighbours` (the number of shared
    partners) and `partner-pagerank` (the network score the service adds to its text score)."""

    KINDS = ("common-neighbours", "partner-pagerank")

    def __init__(self, corpus: Corpus, known: Mapping[str, Iterable[str]], kind: str) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"unknown graph baseline {kind!r}")
        self.name, self.corpus, self.kind = kind, corpus, kind
        self._start, self._rows = partner_graph(corpus.ids, known)

    def scores(self, query: str) -> Scores:
        source = self.corpus.position[query]
        if self.kind == "partner-pagerank":
            return network_scores(self._start, self._rows, source)
        counts = np.zeros(len(self.corpus.ids), dtype=np.float64)
        for partner in neighbours(self._start, self._rows, source).tolist():
            np.add.at(counts, neighbours(self._start, self._rows, partner), 1.0)
        return counts


# --- evaluation -------------------------------------------------------------------------------


@dataclass
class Records(SliceRecords):
    SLICE_NAMES: ClassVar[tuple[str, ...]] = SLICES
    METRIC_NAMES: ClassVar[tuple[str, ...]] = METRICS
    tops: dict[str, list[str]] = field(default_factory=dict)
    """Query -> its top K (overall list)."""
    kind_matched: dict[str, list[float]] = field(default_factory=dict)
    kind_pair_queries: dict[str, list[str]] = field(default_factory=dict)


def win(keys: Mapping[str, float], positive: str, negative: str) -> float:
    """1 when `positive` ranks above `negative`, 0.5 on a tie (both absent: a tie)."""
    a, b = keys.get(positive, -math.inf), keys.get(negative, -math.inf)
    return 1.0 if a > b else 0.5 if a == b else 0.0


def evaluate(ranker: Ranker, split: TemporalSplit, progress: bool = False) -> Records:
    """Every query's first LIMIT suggestions: nDCG@K, recall@LIMIT, MRR@LIMIT; pairwise wins."""
    limit, k = LIMIT, K
    started = time.perf_counter()
    records = Records()
    pairs_of: dict[str, list[Pair]] = defaultdict(list)
    for pair in split.pairs:
        pairs_of[pair.query].append(pair)
    kind_pairs_of: dict[str, list[Pair]] = defaultdict(list)
    for pair in split.kind_pairs:
        kind_pairs_of[pair.query].append(pair)
    for q in tqdm(split.queries, desc=ranker.name, unit="query", disable=not progress):
        ranked = ranker.rank(q, split.known[q], limit)
        if q in ranked.top or split.known[q] & set(ranked.top):
            raise RuntimeError(f"{ranker.name} returned the query or a known partner for {q}")
        relevant = split.relevant[q]
        records.tops[q] = ranked.top[:k]
        for name, wanted in slice_wanted(split, q).items():
            if not wanted:
                continue
            # Other true partners are neither hits nor misses in a restricted slice.
            shown = [a for a in ranked.top if a in wanted or a not in relevant]
            values = records.per_query[name]
            values[METRICS[0]].append(ndcg_at_k(shown, wanted, k))
            values[METRICS[1]].append(recall_at_k(shown, wanted, limit))
            values[METRICS[2]].append(reciprocal_rank(shown[:limit], wanted))
            records.query_ids[name].append(q)
            for pair in pairs_of[q]:
                if pair.partner in wanted:
                    records.pair_queries[name].append(q)
                    records.matched[name].append(win(ranked.keys, pair.partner, pair.matched))
                    records.uniform[name].append(win(ranked.keys, pair.partner, pair.uniform))
            for pair in kind_pairs_of[q]:
                if pair.partner in wanted:
                    records.kind_pair_queries.setdefault(name, []).append(q)
                    won = win(ranked.keys, pair.partner, pair.matched)
                    records.kind_matched.setdefault(name, []).append(won)
    records.seconds = time.perf_counter() - started
    return records


def summarise(records: Records, split: TemporalSplit, seed: int) -> dict[str, Any]:
    out = records.by_slice(seed, "auc_degree_matched", "auc_uniform")
    for name in SLICES:
        out[name]["auc_kind_matched"] = mean_ci(
            records.kind_matched.get(name, []), seed, records.kind_pair_queries.get(name, [])
        )
    head = head_actors(split)
    shown = [a for top in records.tops.values() for a in top]
    out["top_k"] = {
        "catalogue_coverage": len(set(shown)) / len(split.actors) if split.actors else 0.0,
        "head_share": mean_ci(
            [sum(a in head for a in top) / len(top) for top in records.tops.values() if top], seed
        ),
        "median_documents": float(np.median([split.actors[a].documents for a in shown]))
        if shown
        else None,
        "median_degree": float(np.median([split.actors[a].degree for a in shown]))
        if shown
        else None,
    }
    return out


def paired_difference(a: Records, b: Records, seed: int) -> dict[str, Any]:
    """a - b per slice, over the same queries (pairs for the AUC)."""
    return paired_differences(a, b, seed, SLICES, METRICS, "auc_degree_matched")


def halves(split: TemporalSplit, seed: int) -> tuple[set[str], set[str]]:
    """The queries cut in two at random (for choosing a weight on one half, reading the other)."""
    order = np.random.default_rng([seed, _HALVES]).permutation(len(split.queries))
    first = {split.queries[int(i)] for i in order[: len(order) // 2]}
    return first, set(split.queries) - first


def half_means(records: Records, half: set[str], metric: str = "ndcg@10") -> float:
    values = records.per_query["overall"][metric]
    ids = records.query_ids["overall"]
    return float(np.mean([v for q, v in zip(ids, values, strict=True) if q in half]))


def half_figures(records: Records, split: TemporalSplit, seed: int) -> dict[str, float]:
    """nDCG@K and recall@LIMIT on each half of the queries (A: where a setting is chosen)."""
    a, b = halves(split, seed)
    return {
        f"{metric}_half_{name}": half_means(records, half, metric)
        for metric in METRICS[:2]
        for name, half in (("a", a), ("b", b))
    }
