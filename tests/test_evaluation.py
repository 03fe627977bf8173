"""The evaluation protocol on tiny hand-made profiles (texts written for these tests)."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.config import Settings
from service.domain import Actor
from service.embedding.fake import FakeEmbedder
from service.evaluation import (
    ClusterMatchMethod,
    Corpus,
    EvalConfig,
    MostConnectedMethod,
    Pair,
    Query,
    degree_balance,
    degree_matched,
    indexed_actors,
    make_split,
    markdown_table,
    mean_ci,
    ndcg_at_k,
    pairwise_win,
    partner_sets,
    rank_by_scores,
    recall_at_k,
    reciprocal_rank,
    remove_documents,
    run,
    select_queries,
    slice_relevant,
)
from service.runtime import Runtime


def profile(actor_id: str, projects: list[str], country: str = "AT", kind: str = "company") -> Any:
    return {
        "id": actor_id,
        "name": actor_id,
        "kind": kind,
        "country": country,
        "documents": [
            {"id": f"project:{p}", "kind": "description", "text": TEXTS[p], "language": "en"}
            for p in projects
        ],
    }


TEXTS = {
    "1": "offshore wind turbine blade composite fatigue testing",
    "2": "battery cell chemistry for electric vehicles",
    "3": "sourdough bread fermentation and bakery hygiene",
    "4": "wind farm grid integration and power electronics",
    "5": "solid state battery electrolyte materials",
    "6": "bakery supply chain logistics and food safety",
}

# a: 1,2 | b: 1,4 | c: 2,5 | d: 3,6 | e: 4 | f: 5 | g: 3 | h: 6,1
PROFILES = [
    profile("a", ["1", "2"]),
    profile("b", ["1", "4"], country="DE"),
    profile("c", ["2", "5"], kind="research"),
    profile("d", ["3", "6"], country="IT"),
    profile("e", ["4"]),
    profile("f", ["5"], country="SE"),
    profile("g", ["3"]),
    profile("h", ["6", "1"], country="FR", kind="university"),
]


# --- metrics --------------------------------------------------------------------------------


def test_recall_counts_relevant_in_the_top_k_only() -> None:
    ranking = ["x", "r1", "y", "r2", "z"]
    assert recall_at_k(ranking, {"r1", "r2"}, 2) == 0.5
    assert recall_at_k(ranking, {"r1", "r2"}, 4) == 1.0
    assert recall_at_k(ranking, {"r1", "missing"}, 10) == 0.5
    with pytest.raises(ValueError):
        recall_at_k(ranking, set(), 10)


def test_ndcg_on_known_rankings() -> None:
    assert ndcg_at_k(["r", "x", "y"], {"r"}, 10) == 1.0
    assert ndcg_at_k(["x", "r"], {"r"}, 10) == pytest.approx(1 / math.log2(3))
    # two relevant at ranks 1 and 3: (1 + 1/2) / (1 + 1/log2(3))
    expected = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(["r1", "x", "r2"], {"r1", "r2"}, 10) == pytest.approx(expected)
    assert ndcg_at_k(["x", "y", "r"], {"r"}, 2) == 0.0
    # more relevant than k: the ideal list is k hits, so a perfect top-k scores 1
    assert ndcg_at_k(["r1", "r2"], {"r1", "r2", "r3"}, 2) == pytest.approx(1.0)


def test_reciprocal_rank_is_first_hit_and_zero_when_absent() -> None:
    assert reciprocal_rank(["x", "y", "r", "r2"], {"r", "r2"}) == pytest.approx(1 / 3)
    assert reciprocal_rank(["x", "y"], {"r"}) == 0.0


def test_pairwise_ties_count_half() -> None:
    assert [pairwise_win(2, 1), pairwise_win(1, 1), pairwise_win(0, 1)] == [1.0, 0.5, 0.0]


def test_degree_matched_sampler_stays_within_tolerance() -> None:
    degrees = {"low": 1, "nine": 9, "ten": 10, "twelve": 12, "thirteen": 13, "hub": 50}
    pool = sorted(degrees)
    rng = np.random.default_rng(0)
    drawn = {degree_matched(10, pool, degrees, rng) for _ in range(200)}
    assert drawn == {"nine", "ten", "twelve"}  # 8..12; 13 is outside ±20%
    # nothing within ±20% of 30: the nearest degree wins (hub at 50 is 20 away, thirteen 17)
    assert degree_matched(30, pool, degrees, rng) == "thirteen"
    assert degree_matched(0, ["hub"], degrees, rng) == "hub"
    assert degree_matched(5, [], degrees, rng) is None


def test_bootstrap_resamples_whole_queries_when_pairs_are_grouped() -> None:
    # ten queries of twenty identical pair results each: the pairs are not independent
    values = [float(i % 2) for i in range(10) for _ in range(20)]
    groups = [f"q{i}" for i in range(10) for _ in range(20)]
    flat, grouped = mean_ci(values, seed=1), mean_ci(values, seed=1, groups=groups)
    assert flat["mean"] == grouped["mean"] == 0.5
    assert flat["n"] == grouped["n"] == 200
    width = [r["ci95"][1] - r["ci95"][0] for r in (flat, grouped)]
    assert width[1] > 2 * width[0]
    assert mean_ci([0.3] * 5, seed=1)["ci95"] == pytest.approx([0.3, 0.3])
    assert mean_ci([], seed=1)["mean"] is None


# --- the split ------------------------------------------------------------------------------


def test_remove_documents_strips_every_profile_and_drops_empty_ones() -> None:
    remaining = remove_documents(PROFILES, {"project:4", "project:5"})
    ids = [p["id"] for p in remaining]
    assert "e" not in ids and "f" not in ids  # their only project was held out
    for p in remaining:
        assert all(d["id"] not in {"project:4", "project:5"} for d in p["documents"])
    assert [d["id"] for d in next(p for p in remaining if p["id"] == "b")["documents"]] == [
        "project:1"
    ]
    assert len(PROFILES[1]["documents"]) == 2, "the input is not modified"


def test_partner_sets_are_distinct_co_participants() -> None:
    partners = partner_sets(PROFILES)
    assert partners["a"] == {"b", "h", "c"}
    assert partners["e"] == {"b"}
    assert "a" not in partners["a"]


def test_split_holds_out_projects_everywhere_and_keeps_queries_answerable() -> None:
    for seed in range(20):
        split = make_split(PROFILES, 5, seed)
        assert split.queries
        indexed = {p["id"]: p for p in split.profiles}
        for p in split.profiles:
            assert not {d["id"] for d in p["documents"]} & split.held_out
        for q in split.queries:
            assert q.project_id in split.held_out
            assert q.actor_id in indexed, "a query keeps at least one document"
            relevant = split.relevant[q.actor_id]
            assert relevant and q.actor_id not in relevant
            assert relevant <= set(indexed)
            holders = {p["id"] for p in PROFILES if q.project_id in _docs(p)}
            assert relevant == (holders - {q.actor_id}) & set(indexed)


def test_indexed_profiles_know_no_partner_of_a_held_out_project() -> None:
    listing_everyone = [
        {**p, "partners": sorted(partner_sets(PROFILES)[p["id"]])} for p in PROFILES
    ]
    for seed in range(20):
        split = make_split(listing_everyone, 5, seed)
        actors = {a.id: a for a in indexed_actors(split.profiles)}
        for q in split.queries:
            held_out_only = split.relevant[q.actor_id] - partner_sets(split.profiles)[q.actor_id]
            assert not held_out_only & set(actors[q.actor_id].partners)
            assert set(actors[q.actor_id].partners) == partner_sets(split.profiles)[q.actor_id]


def test_query_selection_is_seeded_and_needs_two_projects() -> None:
    first = select_queries(PROFILES, 3, seed=7)
    assert first == select_queries(PROFILES, 3, seed=7)
    assert all(len(_docs(p)) >= 2 for p in PROFILES if p["id"] in {q.actor_id for q in first})
    assert {q.actor_id for q in select_queries(PROFILES, 100, seed=1)} <= {"a", "b", "c", "d", "h"}


def _docs(p: Any) -> set[str]:
    return {d["id"] for d in p["documents"]}


def test_slices_restrict_the_relevant_set() -> None:
    corpus = Corpus.of([Actor.parse(p) for p in PROFILES])
    query = Query("a", "project:1", "company", "AT")
    past = {"a": {"c"}}
    slices = slice_relevant(query, frozenset({"b", "c", "h"}), corpus, past)
    assert slices["cross_country"] == {"b", "h"}
    assert slices["new_partners"] == {"b", "h"}
    assert slices["company"] == {"b", "c", "h"}
    other = slice_relevant(
        Query("c", "p", "research", "AT"), frozenset({"a"}), corpus, {"c": set()}
    )
    assert other["company"] == frozenset()


def test_rank_by_scores_excludes_the_query_and_breaks_ties_by_id() -> None:
    corpus = Corpus.of([Actor.parse(p) for p in PROFILES])
    ranked = MostConnectedMethod(corpus).ranking("a", 3)
    degrees = corpus.degrees
    assert "a" not in ranked
    assert [degrees[x] for x in ranked] == sorted((degrees[x] for x in ranked), reverse=True)
    scores = np.zeros(len(corpus.ids))
    assert rank_by_scores(corpus, scores, "b", 3) == ["a", "c", "d"]
    assert rank_by_scores(corpus, scores, "b", 3, frozenset({"c"})) == ["a", "d", "e"]


def test_degree_balance_predicts_what_popularity_alone_wins() -> None:
    degrees = {"p1": 10, "p2": 5, "p3": 7, "n1": 8, "n2": 5, "n3": 9}
    pairs = [Pair("q", "p1", "n1", "n2"), Pair("q", "p2", "n2", "n1"), Pair("q", "p3", "n3", "n2")]
    balance = degree_balance(pairs, degrees)
    assert balance["matched"]["partner_higher"] == pytest.approx(1 / 3)
    assert balance["matched"]["equal"] == pytest.approx(1 / 3)
    assert balance["matched"]["partner_lower"] == pytest.approx(1 / 3)
    wins = [pairwise_win(degrees[p.partner], degrees[p.matched]) for p in pairs]
    expected = balance["matched"]["partner_higher"] + balance["matched"]["equal"] / 2
    assert np.mean(wins) == pytest.approx(expected)


# --- the service under evaluation, with the fake embedder -----------------------------------


def test_exact_scores_agree_with_the_matcher(tmp_path: Path) -> None:
    runtime = Runtime(Settings(data_dir=tmp_path / "data"), embedder=FakeEmbedder())
    try:
        actors = [Actor.parse(p) for p in PROFILES]
        runtime.ingestor.upsert(actors)
        runtime.reindexer.run()
        corpus = Corpus.of(actors)
        for aggregate in ("max", "coverage"):
            method = ClusterMatchMethod(runtime, corpus, aggregate)
            ranking = method.ranking("a", 7)
            assert sorted(ranking) == sorted(set(corpus.ids) - {"a"})
            assert method.max_score_gap < 1e-5
            scores = method.scores("a")
            assert rank_by_scores(corpus, scores, "a", 7) == ranking
            excluded = method.ranking("a", 7, frozenset({"b", "h"}))
            assert excluded == [x for x in ranking if x not in {"b", "h"}]
    finally:
        runtime.close()


def test_a_whole_run_on_tiny_data(tmp_path: Path) -> None:
    data = tmp_path / "profiles.jsonl.gz"
    with gzip.open(data, "wt", encoding="utf-8") as handle:
        for p in PROFILES:
            handle.write(json.dumps(p) + "\n")
    config = EvalConfig(queries=3, limit=10, k=3, data_file=data, baselines=("random", "tf-idf"))
    results = run(config, embedder=FakeEmbedder())
    assert results["split"]["queries"] == 3
    assert results["checks"]["held_out_chunks_in_index"] == 0
    assert set(results["methods"]) == {
        "clustermatch:max",
        "clustermatch:coverage",
        "random",
        "tf-idf",
    }
    overall = results["methods"]["clustermatch:coverage"]["overall"]
    assert overall["recall"]["n"] == 3
    assert 0.0 <= overall["ndcg"]["mean"] <= 1.0
    assert "coverage - max" in results["differences"]
    assert "| clustermatch:max |" in markdown_table(results, k=3)
    json.dumps(results)  # JSON-ready
