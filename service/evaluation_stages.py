"""Stage analysis on the temporal task, in process: where does the service lose against the
mean-document-vector baseline?

For each model the 2007 profiles are indexed in a temporary data directory (the service's own
ingest, chunking, embedding and index), and each query is looked at stage by stage:

(a) **first stage**: the candidate actors `Matcher._candidates` returns (for `limit` 10 and 50),
    and the share of the query's first-time partners among them, against the same number of
    actors taken from the top of other rankings;
(b) **the aggregate over every eligible actor** (max, coverage, top-3 mean), scored exactly from
    the index's chunk vectors, i.e. the service's second stage without the first-stage cut;
(c) **the mean-vector score** (the baseline of the main table);
(d) **combinations**: z-scored sums of mean-vector and coverage, and an activity prior
    (z-scored log(1 + number of documents)) added with a weight;
(e) **the partner network** (the service's walk) added to the text, and a kind-pair prior;
(f) **text x network**: the service's text score + network at the model's weights, with a
    profile vector propagated over the partner graph added (service.evaluation_propagation);
    and, for the industry<->academia slice, the network standardised within each candidate kind
    and the slice cut by the query's side.

Every row is evaluated with the temporal protocol (service.evaluation_temporal); the service row
pages through `match_actor` like the HTTP evaluation does, so it should equal the HTTP figures.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from service.config import Settings
from service.domain import OPERATOR, Actor
from service.evaluation import Corpus, Scores, mean_ci
from service.evaluation_kinds import WithinKind, industry_academia_sides
from service.evaluation_propagation import PROPAGATION_FAMILIES, propagation_scorers
from service.evaluation_server import HttpRanker
from service.evaluation_temporal import (
    MeanVectorMethod,
    NetworkMethod,
    Records,
    Scorer,
    ScoreRanker,
    TemporalSplit,
    evaluate,
    half_means,
    halves,
    summarise,
)
from service.matching import MIN_CANDIDATE_ACTORS, _about, pick_query_chunks
from service.network import partner_graph
from service.ranking import TOP_K_PAIRS, Request
from service.ranking import Ranker as CandidateRanker
from service.runtime import Runtime
from service.store import ActorFilter

PRIOR_WEIGHTS = (0.25, 0.5, 1.0)
SERVICE_TEXT = "service text + network"
"""The stage rows closest to the service's default ranking: the model's own text score
(coverage, or the profile-vector cosine where the model's `profile_weight` is 1) plus the
network at the model's `network_weight`; the text x network rows add to it."""
CANDIDATE_LIMITS = (10, 50)
WITHIN_KIND_WEIGHTS = (1.0, 2.0)


class InProcessEndpoint:
    """`match` like `ServerProcess.match`, on a Runtime in this process."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def match(self, actor_id: str, limit: int, exclude: Iterable[str]) -> list[tuple[str, float]]:
        filters = ActorFilter(exclude_actor_ids=frozenset(exclude))
        result = self.runtime.matcher.match_actor(
            actor_id, limit=limit, filters=filters, collapse=False
        )
        return [(m.actor.id, m.score) for m in result.matches]


class ExactScores:
    """The matcher's second stage for every actor at once: query chunk vectors x every indexed
    chunk, reduced per actor by max, coverage or the mean of the best TOP_K_PAIRS pairs."""

    def __init__(self, runtime: Runtime, corpus: Corpus) -> None:
        generation = runtime.index.get()
        if generation.is_empty:
            raise RuntimeError("no index generation")
        self.runtime, self.corpus, self._index = runtime, corpus, generation.index
        chunks = sorted(
            (c for batch in runtime.store.iter_chunks() for c in batch),
            key=lambda c: (corpus.position[c.actor_id], c.id),
        )
        self.chunks = len(chunks)
        self._vectors = self._index.reconstruct(np.array([c.id for c in chunks], np.int64))
        owners = np.array([corpus.position[c.actor_id] for c in chunks], np.int64)
        self._starts = np.searchsorted(owners, np.arange(len(corpus.ids)))
        self._ends = np.append(self._starts[1:], len(chunks))
        self._cache: tuple[str, dict[str, Scores]] | None = None

    def query_vectors(self, query: str) -> np.ndarray[Any, np.dtype[np.float32]]:
        picked = pick_query_chunks(
            self.runtime.store.chunks_of_actors([query]), self.runtime.matcher.max_query_chunks
        )
        return self._index.reconstruct(np.array([c.id for c in picked], np.int64))

    def all(self, query: str) -> dict[str, Scores]:
        if self._cache is not None and self._cache[0] == query:
            return self._cache[1]
        sims = self.query_vectors(query) @ self._vectors.T
        best = np.maximum.reduceat(sims, self._starts, axis=1)
        topk = np.array(
            [
                np.sort(sims[:, s:e], axis=None)[::-1][:TOP_K_PAIRS].mean()
                for s, e in zip(self._starts.tolist(), self._ends.tolist(), strict=True)
            ]
        )
        scores = {
            "max": best.max(axis=0).astype(np.float64),
            "coverage": best.mean(axis=0).astype(np.float64),
            "topk": topk.astype(np.float64),
        }
        self._cache = (query, scores)
        return scores


@dataclass
class AggregateScorer:
    exact: ExactScores
    aggregate: str
    name: str

    def scores(self, query: str) -> Scores:
        return self.exact.all(query)[self.aggregate]


def zscore(values: Scores, query_position: int) -> Scores:
    """Standardised over the catalogue without the query itself."""
    mask = np.ones(len(values), dtype=bool)
    mask[query_position] = False
    spread = float(values[mask].std()) or 1.0
    return (values - float(values[mask].mean())) / spread


class ActivityPrior:
    """log(1 + number of documents), the same for every query."""

    name = "activity prior (log documents)"

    def __init__(self, corpus: Corpus, split: TemporalSplit) -> None:
        self.corpus = corpus
        self._scores = np.log1p([float(split.actors[a].documents) for a in corpus.ids])

    def scores(self, query: str) -> Scores:
        return np.asarray(self._scores, dtype=np.float64)


class Combined:
    """Sum of weighted, per-query z-scored parts."""

    def __init__(self, name: str, corpus: Corpus, parts: Sequence[tuple[Scorer, float]]) -> None:
        self.name, self.corpus, self.parts = name, corpus, parts

    def scores(self, query: str) -> Scores:
        position = self.corpus.position[query]
        total = np.zeros(len(self.corpus.ids))
        for scorer, weight in self.parts:
            total += weight * zscore(scorer.scores(query), position)
        return total


class KindPairPrior:
    """log of the smoothed share of first-time partners among eligible (query kind, candidate
    kind) pairs, counted on the `fit` queries only: "which kinds of organisations start working
    together". Exploratory: it is fitted on the truth of half A, and the degree-controlled AUC
    does not control for kind (its negatives are matched on activity only)."""

    name = "kind pairs (fit on half A)"

    def __init__(self, corpus: Corpus, split: TemporalSplit, fit: set[str]) -> None:
        self.corpus, self.split = corpus, split
        hits: dict[tuple[str, str], int] = {}
        pairs: dict[tuple[str, str], int] = {}
        for q in sorted(fit):
            kind = split.actors[q].kind
            for a in corpus.ids:
                if a == q or a in split.known[q]:
                    continue
                key = (kind, split.actors[a].kind)
                pairs[key] = pairs.get(key, 0) + 1
                hits[key] = hits.get(key, 0) + (a in split.relevant[q])
        self._log_odds = {k: float(np.log((hits[k] + 1) / (pairs[k] + 2))) for k in pairs}
        self._floor = float(np.log(1 / (1 + 2)))

    def scores(self, query: str) -> Scores:
        kind = self.split.actors[query].kind
        return np.array(
            [
                self._log_odds.get((kind, self.split.actors[a].kind), self._floor)
                for a in self.corpus.ids
            ]
        )


def first_stage(
    runtime: Runtime, split: TemporalSplit, query: str, limit: int
) -> dict[str, set[str]]:
    """The candidate actors `Matcher` gathers for `match_actor(query, limit)` with the query's
    known partners excluded: by chunk hits, by profile vector, and both (what gets scored)."""
    matcher = runtime.matcher
    snapshot = matcher._snapshot()
    summary = runtime.store.actor_summaries([query])[query]
    filters = _about(summary, ActorFilter(exclude_actor_ids=split.known[query]), "similar")
    chunks = pick_query_chunks(runtime.store.chunks_of_actors([query]), matcher.max_query_chunks)
    vectors = matcher.passage_vectors([(c.text, c.content_hash) for c in chunks])
    wanted = max(limit * 2, MIN_CANDIDATE_ACTORS)
    request = Request(vectors, filters, OPERATOR, wanted, matcher.aggregate, True)
    ranker = CandidateRanker(snapshot, request)
    rows, delta = ranker.chunk_hits(k=max(64, wanted * 2))  # as Matcher._rank asks
    names = ranker.rm.actor_ids
    by_chunks = {names[int(r)] for r in rows} | set(delta)
    by_profile = {names[int(r)] for r in ranker.profile_hits()}
    return {"chunk hits": by_chunks, "profile vectors": by_profile, "both": by_chunks | by_profile}


def candidate_recall(
    runtime: Runtime, split: TemporalSplit, others: Sequence[ScoreRanker], limit: int
) -> list[dict[str, Any]]:
    """Per candidate source: the share of each query's first-time partners among its candidates,
    and among the same number of actors from the top of each of `others` and of a random draw."""
    found: dict[str, dict[str, list[float]]] = {}
    sizes: dict[str, list[int]] = {}
    for q in split.queries:
        relevant = split.relevant[q]
        for source, candidates in first_stage(runtime, split, q, limit).items():
            row = found.setdefault(source, {"source": [], "random (expected)": []})
            sizes.setdefault(source, []).append(len(candidates))
            row["source"].append(len(relevant & candidates) / len(relevant))
            for other in others:
                top = other.rank(q, split.known[q], len(candidates)).top
                row.setdefault(other.name, []).append(len(relevant & set(top)) / len(relevant))
            row["random (expected)"].append(len(candidates) / split.eligible(q))
    return [
        {
            "limit": limit,
            "source": source,
            "candidates_median": float(np.median(sizes[source])),
            "recall": {name: float(np.mean(values)) for name, values in row.items()},
        }
        for source, row in found.items()
    ]


BUCKETS = {"1": (1, 1), "2": (2, 2), "3-4": (3, 4), "5+": (5, 1_000_000)}


def activity_bias(
    scorers: Sequence[Scorer], corpus: Corpus, split: TemporalSplit
) -> dict[str, dict[str, float | None]]:
    """Mean per-query z-score of the actors with 1, 2, 3-4 and 5+ documents: how much a score
    favours active actors whatever the query (None: no actor has that many)."""
    documents = np.array([split.actors[a].documents for a in corpus.ids])
    masks = {b: (documents >= low) & (documents <= high) for b, (low, high) in BUCKETS.items()}
    out: dict[str, dict[str, float | None]] = {}
    for scorer in scorers:
        sums = dict.fromkeys(BUCKETS, 0.0)
        for q in split.queries:
            z = zscore(scorer.scores(q), corpus.position[q])
            for bucket, mask in masks.items():
                sums[bucket] += float(z[mask].mean()) if mask.any() else 0.0
        out[scorer.name] = {
            b: sums[b] / len(split.queries) if masks[b].any() and split.queries else None
            for b in BUCKETS
        }
    return out


def stage_rows(
    runtime: Runtime,
    corpus: Corpus,
    actors: Sequence[Actor],
    split: TemporalSplit,
    model: str,
    seed: int,
    progress: bool = False,
) -> tuple[dict[str, Records], dict[str, Any]]:
    """Every stage and combination of one model, as temporal-task records."""
    exact = ExactScores(runtime, corpus)
    aggregates = {
        a: AggregateScorer(exact, a, f"{a} (all eligible)") for a in ("max", "coverage", "topk")
    }
    mean_vector = MeanVectorMethod(corpus, actors, runtime.embedder, "mean-vector")
    prior = ActivityPrior(corpus, split)
    coverage = aggregates["coverage"]
    scorers: list[Scorer] = [*aggregates.values(), mean_vector]
    scorers.append(Combined("mean-vector + coverage", corpus, [(mean_vector, 1), (coverage, 1)]))
    for w in PRIOR_WEIGHTS:
        scorers += [
            Combined(f"mean-vector + {w} prior", corpus, [(mean_vector, 1), (prior, w)]),
            Combined(f"coverage (all eligible) + {w} prior", corpus, [(coverage, 1), (prior, w)]),
            Combined(
                f"mean-vector + coverage + {w} prior",
                corpus,
                [(mean_vector, 1), (coverage, 1), (prior, w)],
            ),
        ]
    graph = NetworkMethod(corpus, split.known, "partner-pagerank")
    for w in PRIOR_WEIGHTS:
        scorers += [
            Combined(f"mean-vector + {w} network", corpus, [(mean_vector, 1), (graph, w)]),
            Combined(f"coverage (all eligible) + {w} network", corpus, [(coverage, 1), (graph, w)]),
        ]
    kinds = KindPairPrior(corpus, split, halves(split, seed)[0])
    scorers += [
        Combined(
            "mean-vector + 0.5 network + 0.25 prior",
            corpus,
            [(mean_vector, 1), (graph, 0.5), (prior, 0.25)],
        ),
        Combined(
            "mean-vector + 0.5 network + 1.0 kind pairs",
            corpus,
            [(mean_vector, 1), (graph, 0.5), (kinds, 1.0)],
        ),
    ]
    scorers += text_network_rows(runtime, corpus, split, mean_vector, coverage, graph)
    records: dict[str, Records] = {}
    service = HttpRanker(InProcessEndpoint(runtime), "service (as served, in process)")
    records[service.name] = evaluate(service, split, progress=progress)
    for scorer in tqdm(scorers, desc=f"stages {model}", unit="row", disable=not progress):
        records[scorer.name] = evaluate(ScoreRanker(scorer, corpus), split)
    others = [ScoreRanker(s, corpus) for s in (coverage, mean_vector)]
    stages = [
        r for limit in CANDIDATE_LIMITS for r in candidate_recall(runtime, split, others, limit)
    ]
    text_name = mean_vector.name if runtime.matcher.profile_weight >= 0.5 else coverage.name
    sides = [
        text_name,
        "mean-vector",
        f"{SERVICE_TEXT} (default weights)",
        *(f"service text + {w} network within kind" for w in WITHIN_KIND_WEIGHTS),
        service.name,
    ]
    info = {
        "chunks": exact.chunks,
        "industry_academia_sides": industry_academia_sides(records, split, sides),
        "activity_bias": activity_bias([aggregates["max"], coverage, mean_vector], corpus, split),
        "first_stage": stages,
        "incomplete_orders": sum(service.ordered[q] < split.eligible(q) for q in split.queries),
    }
    return records, info


def text_network_rows(
    runtime: Runtime,
    corpus: Corpus,
    split: TemporalSplit,
    mean_vector: Scorer,
    coverage: Scorer,
    graph: NetworkMethod,
) -> list[Scorer]:
    """The service's text score + network at its default weights, and the same with each
    propagated text x network signal (service.evaluation_propagation) added with a weight."""
    matcher = runtime.matcher
    text = mean_vector if matcher.profile_weight >= 0.5 else coverage
    base: list[tuple[Scorer, float]] = [(text, 1), (graph, matcher.network_weight)]
    rm = runtime.index.get().readmodel
    row_of = {a: i for i, a in enumerate(rm.actor_ids)}
    profile = np.asarray(rm.profile[[row_of[a] for a in corpus.ids]], dtype=np.float64)
    start, rows = partner_graph(corpus.ids, split.known)
    out: list[Scorer] = [Combined(f"{SERVICE_TEXT} (default weights)", corpus, base)]
    for family, signal in propagation_scorers(corpus, profile, start, rows).items():
        out += [
            Combined(f"{SERVICE_TEXT} + {w} {family}", corpus, [*base, (signal, w)])
            for w in PRIOR_WEIGHTS
        ]
    within = WithinKind(graph, corpus, split)
    out += [
        Combined(f"service text + {w} network within kind", corpus, [(text, 1), (within, w)])
        for w in WITHIN_KIND_WEIGHTS
    ]
    return out


def run_stages(
    actors: Sequence[Actor],
    split: TemporalSplit,
    models: Sequence[str],
    seed: int,
    progress: bool = False,
) -> dict[str, Any]:
    corpus = Corpus.of(actors)
    a, b = halves(split, seed)
    out: dict[str, Any] = {"models": {}, "halves": [len(a), len(b)]}
    reference: dict[str, Scorer] = {
        "activity prior (log documents)": ActivityPrior(corpus, split),
        "network alone (partner-pagerank)": NetworkMethod(corpus, split.known, "partner-pagerank"),
        "common-neighbours": NetworkMethod(corpus, split.known, "common-neighbours"),
        "kind pairs (fit on half A)": KindPairPrior(corpus, split, a),
    }
    # The service knows each actor's 2007 partners (as in the HTTP run): the network signal.
    actors = [a.model_copy(update={"partners": tuple(sorted(split.known[a.id]))}) for a in actors]
    for model in models:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="clustermatch-stages-") as tmp:
            runtime = Runtime(Settings(data_dir=Path(tmp), model=model))
            try:
                runtime.ingestor.upsert(list(actors))
                runtime.reindexer.run()
                records, info = stage_rows(runtime, corpus, actors, split, model, seed, progress)
            finally:
                runtime.close()
        out["models"][model] = {
            **info,
            "rows": {name: row(r, split, seed, a, b) for name, r in records.items()},
            "chosen_on_half_a": choose_on_half(records, a, b, seed),
            "seconds": round(time.perf_counter() - started, 1),
        }
    out["reference"] = {
        name: row(evaluate(ScoreRanker(scorer, corpus), split), split, seed, a, b)
        for name, scorer in reference.items()
    }
    return out


def row(records: Records, split: TemporalSplit, seed: int, a: set[str], b: set[str]) -> Any:
    summary = summarise(records, split, seed)
    return {
        "overall": summary["overall"],
        "industry_academia": summary["industry_academia"],
        "top_k": summary["top_k"],
        "ndcg@10_half_a": half_means(records, a),
        "ndcg@10_half_b": half_means(records, b),
        "recall@50_half_a": half_means(records, a, "recall@50"),
        "recall@50_half_b": half_means(records, b, "recall@50"),
    }


def choose_on_half(
    records: dict[str, Records], a: set[str], b: set[str], seed: int
) -> dict[str, Any]:
    """For each family of weighted rows: the weight best on half A (by nDCG@10; 0 is the row
    without the signal), read on half B; and for the text x network rows, the best of all their
    families and weights on half A."""
    out: dict[str, dict[str, Any]] = {}
    families: dict[str, str] = {
        "mean-vector + {w} prior": "mean-vector",
        "coverage (all eligible) + {w} prior": "coverage (all eligible)",
        "mean-vector + {w} network": "mean-vector",
        "coverage (all eligible) + {w} network": "coverage (all eligible)",
    }
    base = f"{SERVICE_TEXT} (default weights)"
    families |= {f"{SERVICE_TEXT} + {{w}} {family}": base for family in PROPAGATION_FAMILIES}
    for family, without in families.items():
        names = {w: family.format(w=w) for w in PRIOR_WEIGHTS} | {0.0: without}
        names = {w: name for w, name in sorted(names.items()) if name in records}
        if len(names) < 2:
            continue
        best = max(names, key=lambda w: half_means(records[names[w]], a))
        out[family.format(w="w")] = _read(records[names[best]], a, b) | {"weight": best}
    propagated = [
        f"{SERVICE_TEXT} + {w} {family}" for family in PROPAGATION_FAMILIES for w in PRIOR_WEIGHTS
    ]
    candidates = [base] + [name for name in propagated if name in records]
    if len(candidates) > 1:
        best_name = max(candidates, key=lambda name: half_means(records[name], a))
        out[f"{SERVICE_TEXT} + any text x network row"] = _read(records[best_name], a, b) | {
            "row": best_name,
            "default_half_b": _read(records[base], a, b),
            "minus_default_half_b": {
                metric: paired_on_half(records[best_name], records[base], b, seed, metric)
                for metric in ("ndcg@10", "recall@50")
            },
        }
    return out


def paired_on_half(
    x: Records, y: Records, half: set[str], seed: int, metric: str
) -> dict[str, Any]:
    """x - y per query of `half` (overall slice), mean with a bootstrap 95% interval."""
    values = [
        dict(zip(r.query_ids["overall"], r.per_query["overall"][metric], strict=True))
        for r in (x, y)
    ]
    return mean_ci([values[0][q] - values[1][q] for q in sorted(half)], seed)


def _read(records: Records, a: set[str], b: set[str]) -> dict[str, Any]:
    return {
        "ndcg@10_half_a": half_means(records, a),
        "ndcg@10_half_b": half_means(records, b),
        "recall@50_half_a": half_means(records, a, "recall@50"),
        "recall@50_half_b": half_means(records, b, "recall@50"),
    }


def markdown_stages(results: dict[str, Any]) -> str:
    lines: list[str] = []
    head = (
        "| row | nDCG@10 | recall@50 | MRR@50 | AUC degree-matched | AUC kind-matched "
        "| catalogue coverage "
        "| top-1% share | nDCG@10 half A / B | recall@50 half A / B "
        "| industry<->academia nDCG@10 / recall@50 |"
    )
    for model, figures in results["models"].items():
        lines += [f"**{model}** ({figures['chunks']} chunks)", "", head, "| --- " * 11 + "|"]
        rows = {**figures["rows"], **results["reference"]}
        for name, r in rows.items():
            o, top, ia = r["overall"], r["top_k"], r["industry_academia"]
            cells = [
                f"{o['ndcg@10']['mean']:.3f}",
                f"{o['recall@50']['mean']:.3f}",
                f"{o['mrr@50']['mean']:.3f}",
                f"{o['auc_degree_matched']['mean']:.3f}",
                f"{o['auc_kind_matched']['mean']:.3f}",
                f"{top['catalogue_coverage']:.3f}",
                f"{top['head_share']['mean']:.3f}",
                f"{r['ndcg@10_half_a']:.3f} / {r['ndcg@10_half_b']:.3f}",
                f"{r['recall@50_half_a']:.3f} / {r['recall@50_half_b']:.3f}",
                f"{ia['ndcg@10']['mean']:.3f} / {ia['recall@50']['mean']:.3f}",
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += ["", "first stage: share of first-time partners among the candidates", ""]
        stage = figures["first_stage"]
        names = [n for n in stage[0]["recall"] if n != "source"]
        lines.append("| limit | source | candidates | this source | " + " | ".join(names) + " |")
        lines.append("| --- " * (4 + len(names)) + "|")
        for st in stage:
            cells = [f"{st['recall'][n]:.3f}" for n in ("source", *names)]
            lines.append(
                f"| {st['limit']} | {st['source']} | {st['candidates_median']:.0f} | "
                + " | ".join(cells)
                + " |"
            )
        bias = figures["activity_bias"]
        labels = list(next(iter(bias.values())))
        lines += ["", "mean per-query z-score by the actor's number of documents", ""]
        lines.append("| score | " + " | ".join(f"{b} docs" for b in labels) + " |")
        lines.append("| --- " * (1 + len(labels)) + "|")
        for name, values in bias.items():
            cells = ["–" if values[b] is None else f"{values[b]:+.2f}" for b in labels]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += ["", "industry<->academia by the query's side (nDCG@10 / recall@50)", ""]
        lines += ["| row | company queries | academic queries |", "| --- | --- | --- |"]
        for name, sides in figures.get("industry_academia_sides", {}).items():
            cells = [
                f"{v['ndcg@10']:.3f} / {v['recall@50']:.3f} ({v['queries']})"
                for v in sides.values()
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += ["", "weight chosen on half A by nDCG@10, read on half B:", ""]
        for family, choice in figures["chosen_on_half_a"].items():
            what = f"row {choice['row']!r}" if "row" in choice else f"w = {choice['weight']}"
            line = (
                f"- {family}: {what}, nDCG@10 A {choice['ndcg@10_half_a']:.3f} "
                f"B {choice['ndcg@10_half_b']:.3f}, recall@50 A {choice['recall@50_half_a']:.3f} "
                f"B {choice['recall@50_half_b']:.3f}"
            )
            if "default_half_b" in choice:
                d, diff = choice["default_half_b"], choice["minus_default_half_b"]
                paired = "; ".join(
                    f"{m} {v['mean']:+.4f} ({v['ci95'][0]:+.4f} to {v['ci95'][1]:+.4f})"
                    for m, v in diff.items()
                )
                line += (
                    f" (the default weights on B: {d['ndcg@10_half_b']:.3f} / "
                    f"{d['recall@50_half_b']:.3f}; minus the default on B's queries, 95% "
                    f"bootstrap: {paired})"
                )
            lines.append(line)
        lines.append("")
    return "\n".join(lines)
