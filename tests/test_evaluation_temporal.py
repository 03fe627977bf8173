"""The temporal "first-time collaborations" evaluation on tiny hand-made data (texts written for
these tests; no model, except the fake embedder)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest

from service.domain import Actor
from service.embedding.fake import FakeEmbedder
from service.evaluation import Corpus, MostConnectedMethod
from service.evaluation_kinds import WithinKind
from service.evaluation_server import (
    HttpRanker,
    HttpSearchRanker,
    ServerProcess,
    passed_settings,
    profile_query,
)
from service.evaluation_stages import (
    ActivityPrior,
    Combined,
    KindPairPrior,
    choose_on_half,
    markdown_stages,
    row,
    stage_rows,
    zscore,
)
from service.evaluation_temporal import (
    FutureProject,
    MeanVectorMethod,
    Member,
    NetworkMethod,
    Ranked,
    Records,
    ScoreRanker,
    TemporalSplit,
    activity_matched,
    evaluate,
    first_time_partners,
    half_figures,
    halves,
    head_actors,
    load_future,
    make_temporal_split,
    paired_difference,
    slice_wanted,
    summarise,
    win,
)
from service.evaluation_temporal_run import (
    BASELINES,
    TemporalConfig,
    markdown_temporal,
    run_temporal,
)
from service.runtime import Runtime
from tests.test_evaluation import profile

# 2007: a-b (project 1), a-c (2), d-e (4); g alone (5).
PROFILES = [
    profile("a", ["1", "2"]),
    profile("b", ["1"], country="DE", kind="university"),
    profile("c", ["2"], kind="research"),
    profile("d", ["4"], country="IT"),
    profile("e", ["4"], country="FR", kind="university"),
    profile("g", ["5"], country="SE"),
]
ACTORS = [Actor.parse(p) for p in PROFILES]
KNOWN = {"a": {"b", "c"}, "b": {"a"}, "c": {"a"}, "d": {"e"}, "e": {"d"}, "g": set()}
# 2014: F1 brings a, b, d together (a-b is a repeat); F2 is a large consortium (61 partners);
# F3 sits exactly at the cap; F4 only repeats d-e.
FUTURE = [
    FutureProject("F1", 5, frozenset({"a", "b", "d"})),
    FutureProject("F2", 61, frozenset({"a", "e"})),
    FutureProject("F3", 60, frozenset({"c", "g"})),
    FutureProject("F4", 3, frozenset({"d", "e"})),
]


# --- truth ----------------------------------------------------------------------------------


def test_truth_is_first_time_pairs_in_projects_within_the_cap() -> None:
    truth = first_time_partners(KNOWN, FUTURE, {a.id for a in ACTORS}, max_partners=60)
    assert truth == {
        "a": {"d"},  # b is a known partner; e only in the 61-partner consortium
        "b": {"d"},
        "d": {"a", "b"},  # e is known (P3)
        "c": {"g"},  # F3 has exactly 60 partners: counted
        "g": {"c"},
    }
    smaller_cap = first_time_partners(KNOWN, FUTURE, {a.id for a in ACTORS}, max_partners=59)
    assert "c" not in smaller_cap and "g" not in smaller_cap
    # organisations outside the catalogue are never partners
    assert first_time_partners(KNOWN, FUTURE, {"a", "b"}, 60) == {}


def test_split_knows_2007_partners_and_samples_queries_with_first_time_partners() -> None:
    split = make_temporal_split(ACTORS, FUTURE, queries=10, seed=3)
    assert {a: set(s) for a, s in split.known.items()} == KNOWN
    assert split.queries == ["a", "b", "c", "d", "g"]  # e has no first-time partner
    assert split.actors["a"] == Member("company", "AT", 2, 2)
    assert split.eligible("a") == 6 - 1 - 2
    for q in split.queries:
        assert not split.relevant[q] & split.known[q]
    assert make_temporal_split(ACTORS, FUTURE, 2, seed=3).queries == (
        make_temporal_split(ACTORS, FUTURE, 2, seed=3).queries
    )
    assert len(make_temporal_split(ACTORS, FUTURE, 2, seed=3).queries) == 2


def test_non_partners_never_met_the_query_in_any_year_or_project_size() -> None:
    split = make_temporal_split(ACTORS, FUTURE, queries=10, seed=3)
    assert len(split.pairs) == sum(len(r) for r in split.relevant.values())
    for pair in split.pairs:
        for negative in (pair.matched, pair.uniform):
            assert negative != pair.query and negative not in split.known[pair.query]
            assert negative not in split.relevant[pair.query]
    # a met b (2007), c (2007), d (F1) and e (F2, over the cap): only g is a stranger
    assert {(p.matched, p.uniform) for p in split.pairs if p.query == "a"} == {("g", "g")}


def test_non_partners_match_documents_first_then_degree() -> None:
    def member(documents: int, degree: int) -> Member:
        return Member("company", "AT", documents, degree)

    members = {"a": member(3, 9), "b": member(3, 20), "c": member(1, 10), "d": member(2, 10)}
    partner, rng = member(3, 10), np.random.default_rng(0)
    assert {activity_matched(partner, sorted(members), members, rng, 0.2) for _ in range(20)} == {
        "a"
    }
    assert activity_matched(partner, ["b"], members, rng, 0.2) == "b"  # nearest degree
    assert activity_matched(partner, ["c", "d"], members, rng, 0.2) == "d"  # nearest documents
    assert activity_matched(partner, [], members, rng, 0.2) is None


def test_future_projects_load_from_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "projects.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(json.dumps({"id": "F1", "partners": 5, "members": ["a", "b"]}) + "\n")
    assert load_future(path) == [FutureProject("F1", 5, frozenset({"a", "b"}))]


# --- slices and metrics ---------------------------------------------------------------------


def tiny_split(relevant: dict[str, frozenset[str]], actors: dict[str, Member]) -> TemporalSplit:
    known = {a: frozenset[str]() for a in actors}
    return TemporalSplit(actors, known, sorted(relevant), relevant, [], 60)


def test_slices() -> None:
    actors = {
        "q": Member("company", "AT", 1, 0),
        "uni": Member("university", "DE", 1, 0),
        "lab": Member("research", "AT", 1, 0),
        "firm": Member("company", "AT", 1, 0),
        "nowhere": Member("public", None, 1, 0),
        "u2": Member("university", None, 1, 0),
    }
    split = tiny_split({"q": frozenset({"uni", "lab", "firm", "nowhere"})}, actors)
    wanted = slice_wanted(split, "q")
    assert wanted["company"] == wanted["overall"]
    assert wanted["cross_country"] == {"uni"}  # an unknown country is not "another"
    assert wanted["cross_kind"] == {"uni", "lab", "nowhere"}
    assert wanted["industry_academia"] == {"uni", "lab"}
    academic = slice_wanted(tiny_split({"u2": frozenset({"firm", "lab"})}, actors), "u2")
    assert academic["industry_academia"] == {"firm"}
    assert academic["company"] == frozenset()
    assert academic["cross_country"] == frozenset()
    public = slice_wanted(tiny_split({"nowhere": frozenset({"firm"})}, actors), "nowhere")
    assert public["industry_academia"] == frozenset()


def test_pairwise_win_counts_absent_actors_as_ranked_last() -> None:
    keys = {"p": 2.0, "n": 1.0, "t": 2.0}
    assert [win(keys, "p", "n"), win(keys, "n", "p"), win(keys, "p", "t")] == [1.0, 0.0, 0.5]
    assert win(keys, "n", "missing") == 1.0 and win(keys, "x", "y") == 0.5


class FixedRanker:
    """Ranks by a fixed global order; for tests of the evaluation loop."""

    name = "fixed"

    def __init__(self, order: list[str]) -> None:
        self.order = order

    def rank(self, query: str, exclude: frozenset[str], limit: int) -> Ranked:
        eligible = [a for a in self.order if a != query and a not in exclude]
        return Ranked(eligible[:limit], {a: -float(i) for i, a in enumerate(eligible)})


def test_evaluate_computes_metrics_and_what_the_top_ten_holds() -> None:
    split = make_temporal_split(ACTORS, FUTURE, queries=10, seed=3)
    records = evaluate(FixedRanker(["d", "g", "c", "b", "a", "e"]), split)
    # lists without the query and its known partners: a [d g e], b [d g c e], c [d g b e],
    # d [g c b a], g [d c b a e]; first-time partners a:d b:d c:g d:a,b g:c
    assert records.tops["d"] == ["g", "c", "b", "a"]
    overall = records.per_query["overall"]
    assert records.query_ids["overall"] == ["a", "b", "c", "d", "g"]
    third, fourth = 1 / np.log2(4), 1 / np.log2(5)
    assert overall["ndcg@10"] == pytest.approx(
        [1, 1, 1 / np.log2(3), (third + fourth) / (1 + 1 / np.log2(3)), 1 / np.log2(3)]
    )
    assert overall["recall@50"] == [1, 1, 1, 1, 1]
    assert overall["mrr@50"] == pytest.approx([1, 1, 1 / 2, 1 / 3, 1 / 2])
    assert records.query_ids["company"] == ["a", "d", "g"]
    assert records.query_ids["cross_country"] == ["a", "b", "c", "d", "g"]
    assert records.query_ids["cross_kind"] == ["b", "c", "d", "g"]  # a's only partner: a company
    summary = summarise(records, split, seed=1)
    assert summary["top_k"]["catalogue_coverage"] == 1.0
    # the head is a (two documents): 1 of d's 4 slots, 1 of g's 5
    assert summary["top_k"]["head_share"]["mean"] == pytest.approx((1 / 4 + 1 / 5) / 5)
    assert summary["overall"]["auc_degree_matched"]["n"] == len(split.pairs)


def test_head_actors_are_the_most_active() -> None:
    split = make_temporal_split(ACTORS, FUTURE, queries=10, seed=3)
    assert head_actors(split) == {"a"}  # two documents; ceil(1% of 6) = 1
    assert len(head_actors(split, share=0.5)) == 3


def test_paired_difference_needs_the_same_queries() -> None:
    split = make_temporal_split(ACTORS, FUTURE, queries=10, seed=3)
    one = evaluate(FixedRanker(["d", "g", "c", "b", "a", "e"]), split)
    assert paired_difference(one, one, seed=1)["overall"]["ndcg@10"]["mean"] == 0.0
    with pytest.raises(ValueError):
        paired_difference(one, Records(), seed=1)


# --- methods --------------------------------------------------------------------------------


def test_mean_vector_and_score_rankers_exclude_known_partners() -> None:
    corpus = Corpus.of(ACTORS)
    method = MeanVectorMethod(corpus, ACTORS, FakeEmbedder(), "mean-vector:fake")
    scores = method.scores("a")
    assert scores[corpus.position["a"]] == pytest.approx(1.0)
    ranked = ScoreRanker(method, corpus).rank("a", frozenset({"b", "c"}), 10)
    assert set(ranked.top) == {"d", "e", "g"}
    assert set(ranked.keys) == set(corpus.ids)
    popular = ScoreRanker(MostConnectedMethod(corpus), corpus).rank("g", frozenset(), 2)
    assert popular.top == ["a", "b"]  # degree 2, then degree 1 by id


class StubServer:
    """Answers /v1/match like the service: a fixed order, minus the excluded actors."""

    def __init__(self, order: list[tuple[str, float]]) -> None:
        self.order = order
        self.calls: list[tuple[int, int]] = []

    def match(self, actor_id: str, limit: int, exclude: Iterable[str]) -> list[tuple[str, float]]:
        skip = set(exclude) | {actor_id}
        self.calls.append((limit, len(skip)))
        return [(a, s) for a, s in self.order if a not in skip][:limit]


def test_http_ranker_pages_through_the_whole_order() -> None:
    order = [(f"x{i:03d}", 1.0 - i / 1000) for i in range(450)]
    order[1] = ("x001", order[0][1])  # a tie with the first
    server = StubServer(order)
    ranker = HttpRanker(server, "service:stub")
    ranked = ranker.rank("x449", frozenset({"x002"}), 50)
    assert ranked.top == [a for a, _ in order[:51] if a != "x002"]
    assert len(ranked.keys) == 450 - 2 == ranker.ordered["x449"]
    assert ranked.keys["x000"] == ranked.keys["x001"] > ranked.keys["x003"]
    assert ranked.keys["x051"] > ranked.keys["x300"]  # later page, lower
    assert [limit for limit, _ in server.calls] == [50, 200, 200]  # 50 + 200 + 198
    top_only = HttpRanker(StubServer(order), "s", complete=False)
    assert len(top_only.rank("x449", frozenset(), 50).keys) == 50


class StubSearch:
    def __init__(self, order: list[tuple[str, float]], partners: dict[str, set[str]]) -> None:
        self.order, self.partners = order, partners
        self.calls: list[tuple[str, str, int]] = []

    def search(self, text: str, for_actor: str, limit: int) -> list[tuple[str, float]]:
        skip = self.partners.get(for_actor, set()) | {for_actor}
        self.calls.append((text, for_actor, limit))
        return [(a, s) for a, s in self.order if a not in skip][:limit]


def test_http_search_ranker_asks_with_the_actors_texts_on_its_behalf() -> None:
    order = [(f"x{i:03d}", 1.0 - i / 1000) for i in range(300)]
    server = StubSearch(order, {"x010": {"x000", "x001"}})
    ranker = HttpSearchRanker(server, "service-search:stub", {"x010": "rotor blades"})
    ranked = ranker.rank("x010", frozenset({"x000", "x001"}), 50)
    assert server.calls == [("rotor blades", "x010", 200)]  # one request, the API's largest page
    assert ranked.top == [a for a, _ in order[2:] if a != "x010"][:50]
    assert len(ranked.keys) == 200 and ranked.keys["x002"] > ranked.keys["x003"]
    assert "x299" not in ranked.keys  # beyond the page: ties below it in the pairwise tests


def test_a_profile_query_joins_the_texts_within_the_search_limit() -> None:
    assert profile_query([" Rotor blades ", "", "wind farms"]) == "Rotor blades wind farms"
    long = profile_query(["word " * 1000])
    assert len(long) <= 2000 and long.endswith("word") and long == long.strip()
    assert profile_query(["x" * 3000]) == "x" * 2000  # no word boundary: cut at the limit


def test_server_settings_passed_on_leave_out_what_the_run_decides() -> None:
    environ = {"CLUSTERMATCH_AGGREGATE": "max", "CLUSTERMATCH_MODEL": "x", "HOME": "/root"}
    assert passed_settings(environ) == {"CLUSTERMATCH_AGGREGATE": "max"}


# --- a whole run through a real server process (fake-embedder CLI) --------------------------


@pytest.mark.slow
def test_a_whole_run_through_a_real_server(tmp_path: Path) -> None:
    actors_file, projects_file = tmp_path / "actors.jsonl.gz", tmp_path / "projects.jsonl.gz"
    with gzip.open(actors_file, "wt", encoding="utf-8") as handle:
        for p in PROFILES:
            handle.write(json.dumps(p) + "\n")
    with gzip.open(projects_file, "wt", encoding="utf-8") as handle:
        for f in FUTURE:
            row = {"id": f.id, "partners": f.partners, "members": sorted(f.members)}
            handle.write(json.dumps(row) + "\n")
    config = TemporalConfig(
        queries=5,
        models=("all-minilm-l6-v2",),
        actors_file=actors_file,
        projects_file=projects_file,
        server_module="tests.fake_cli",
    )
    results = run_temporal(config, embedders=lambda model: FakeEmbedder())
    assert results["split"]["queries"] == 5
    # the profiles carry their 2007 partners (a-b, a-c, d-e: each listed on both sides)
    assert results["split"]["partner_links_loaded"] == 6
    server = results["servers"]["all-minilm-l6-v2"]
    assert server["index"]["actors"] == 6 and server["incomplete_orders"] == 0
    baselines = {b for b in BASELINES if b != "mean-vector"}
    assert set(results["methods"]) == {
        "service:all-minilm-l6-v2",
        "service-search:all-minilm-l6-v2",
        "mean-vector:all-minilm-l6-v2",
        *baselines,
    }
    assert {"common-neighbours", "partner-pagerank"} <= baselines
    assert list(results["methods"])[:3] == [
        "service:all-minilm-l6-v2",
        "service-search:all-minilm-l6-v2",
        "mean-vector:all-minilm-l6-v2",
    ]
    for name in ("service:all-minilm-l6-v2", "service-search:all-minilm-l6-v2"):
        overall = results["methods"][name]["overall"]
        assert overall["ndcg@10"]["n"] == 5 and 0 <= overall["ndcg@10"]["mean"] <= 1
    assert server["search_seconds"] >= 0
    assert "| service:all-minilm-l6-v2 |" in markdown_temporal(results)
    json.dumps(results)


def test_server_process_reports_a_failed_start(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, "all-minilm-l6-v2", module="no_such_module_here")
    with pytest.raises(RuntimeError, match="exited at start-up"):
        server.start()
    server.stop()


def test_auc_compares_each_partner_with_its_sampled_non_partner() -> None:
    split = make_temporal_split(ACTORS, FUTURE, queries=10, seed=3)
    records = evaluate(FixedRanker(["g", "d", "c", "b", "a", "e"]), split)
    assert records.pair_queries["overall"] == [p.query for p in split.pairs]
    wins = dict(zip(records.pair_queries["overall"], records.matched["overall"], strict=True))
    assert wins["a"] == 0.0  # a's partner d ranks below g, its only possible non-partner


# --- stage analysis -------------------------------------------------------------------------


def test_stage_rows_on_tiny_data(runtime: Runtime) -> None:
    runtime.ingestor.upsert(ACTORS)
    runtime.reindexer.run()
    split = make_temporal_split(ACTORS, FUTURE, queries=10, seed=3)
    records, info = stage_rows(runtime, Corpus.of(ACTORS), ACTORS, split, "fake", 7)
    # six actors: the first stage keeps every one, so the service is coverage over all of them
    served = records["service (as served, in process)"]
    assert served.per_query == records["coverage (all eligible)"].per_query
    assert info["incomplete_orders"] == 0
    stages = {(s["limit"], s["source"]): s for s in info["first_stage"]}
    assert set(stages) == {
        (n, s) for n in (10, 50) for s in ("chunk hits", "profile vectors", "both")
    }
    assert all(s["recall"]["source"] == 1.0 for s in stages.values())
    assert set(info["activity_bias"]["mean-vector"]) == {"1", "2", "3-4", "5+"}
    a, b = halves(split, 7)
    rows = {name: row(r, split, 7, a, b) for name, r in records.items()}
    assert rows["mean-vector + 1.0 network"]["recall@50_half_b"] >= 0
    figures = {**info, "rows": rows, "chosen_on_half_a": choose_on_half(records, a, b, 7)}
    table = markdown_stages({"models": {"fake": figures}, "reference": {}})
    assert "| mean-vector + 0.5 network + 1.0 kind pairs |" in table
    assert "- mean-vector + w network: w = " in table
    # the text x network rows: the service's text + network, and each propagated signal added
    base = records["service text + network (default weights)"]
    assert base.per_query["overall"]["ndcg@10"]
    assert "| service text + network + 0.5 nearest partner |" in table
    assert "- service text + network + any text x network row: row '" in table
    assert "minus the default on B's queries, 95% bootstrap: ndcg@10 " in table
    sides = info["industry_academia_sides"]["service text + network (default weights)"]
    assert set(sides) == {"company queries", "academic queries"}
    assert "| row | company queries | academic queries |" in table


def test_zscore_and_combined_scores() -> None:
    values = np.array([1.0, 2.0, 3.0, 100.0])
    z = zscore(values, query_position=3)  # the query's own score is left out of mean and spread
    assert z[:3] == pytest.approx([-1.2247449, 0.0, 1.2247449])
    corpus = Corpus.of(ACTORS)
    split = make_temporal_split(ACTORS, FUTURE, queries=10, seed=3)
    prior = ActivityPrior(corpus, split)
    both = Combined("prior twice", corpus, [(prior, 1.0), (prior, 1.0)])
    position = corpus.position["b"]
    assert both.scores("b") == pytest.approx(2 * zscore(prior.scores("b"), position))


def test_within_kind_standardises_each_candidate_kind_without_the_query() -> None:
    corpus = Corpus.of(ACTORS)  # a, d, g companies; b, e universities; c research
    split = make_temporal_split(ACTORS, FUTURE, queries=10, seed=3)
    values = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 5.0, "e": 4.0, "g": 9.0}

    class Fixed:
        name = "fixed"

        def scores(self, query: str) -> np.ndarray:
            return np.array([values[a] for a in corpus.ids])

    within = WithinKind(Fixed(), corpus, split)
    assert within.name == "fixed within kind"
    out = dict(zip(corpus.ids, within.scores("a").tolist(), strict=True))
    # companies without the query a: d 5, g 9 (mean 7, std 2); universities: b 2, e 4
    assert out == pytest.approx({"a": -3.0, "d": -1.0, "g": 1.0, "b": -1.0, "e": 1.0, "c": 0.0})


# --- network: graph baselines, halves, kind pairs ---------------------------------------------


def test_graph_baselines_read_the_2007_partner_graph() -> None:
    corpus = Corpus.of(ACTORS)
    known = {a: frozenset(s) for a, s in KNOWN.items()}
    common = NetworkMethod(corpus, known, "common-neighbours")
    shared = dict(zip(corpus.ids, common.scores("b").tolist(), strict=True))
    assert shared == {"a": 0.0, "b": 1.0, "c": 1.0, "d": 0.0, "e": 0.0, "g": 0.0}  # b, c share a
    walk = dict(
        zip(corpus.ids, NetworkMethod(corpus, known, "partner-pagerank").scores("b"), strict=True)
    )
    assert walk["a"] > walk["c"] > walk["d"] == walk["g"], "a partner, a partner's partner, none"
    with pytest.raises(ValueError, match="unknown graph baseline"):
        NetworkMethod(corpus, known, "jaccard")


def test_halves_split_the_queries_and_give_figures_per_half() -> None:
    split = make_temporal_split(ACTORS, FUTURE, queries=10, seed=3)
    a, b = halves(split, 3)
    assert a | b == set(split.queries) and not a & b and abs(len(a) - len(b)) <= 1
    assert halves(split, 3) == (a, b), "seeded"
    records = evaluate(FixedRanker(["g", "d", "c", "b", "a", "e"]), split)
    figures = half_figures(records, split, 3)
    assert set(figures) == {f"{m}_half_{h}" for m in ("ndcg@10", "recall@50") for h in "ab"}
    values = records.per_query["overall"]["ndcg@10"]
    by_query = dict(zip(records.query_ids["overall"], values, strict=True))
    assert figures["ndcg@10_half_a"] == pytest.approx(np.mean([by_query[q] for q in a]))


def test_kind_pairs_are_counted_on_the_fitting_queries_only() -> None:
    split = make_temporal_split(ACTORS, FUTURE, queries=10, seed=3)
    corpus = Corpus.of(ACTORS)
    # fitted on d alone (a company): its first-time partners a (company), b (university)
    prior = KindPairPrior(corpus, split, {"d"})
    scores = dict(zip(corpus.ids, prior.scores("a").tolist(), strict=True))
    # company -> company: d's eligible companies are a and g, one of them a hit: log(2/4)
    eligible_companies = [
        x for x in corpus.ids if x not in {"d", "e"} and split.actors[x].kind == "company"
    ]
    assert scores["g"] == pytest.approx(np.log((1 + 1) / (len(eligible_companies) + 2)))
    assert scores["b"] == pytest.approx(np.log((1 + 1) / (1 + 2)))  # university: 1 of 1
    assert scores["c"] == pytest.approx(np.log(1 / 3)), "research: 0 of 1"
    assert prior.scores("b")[0] == pytest.approx(np.log(1 / 3)), "a pair never seen: the floor"


def test_kind_matched_pairs_share_the_partners_kind_and_leave_the_pairs_alone() -> None:
    split = make_temporal_split(ACTORS, FUTURE, queries=10, seed=3)
    assert split.kind_pairs, "some partner has a stranger of its kind"
    for pair in split.kind_pairs:
        assert split.actors[pair.matched].kind == split.actors[pair.partner].kind
        assert pair.matched not in split.known[pair.query] | split.relevant[pair.query]
    # a stream of its own: the activity-matched pairs do not depend on it
    again = make_temporal_split(ACTORS, FUTURE, queries=10, seed=3)
    assert again.pairs == split.pairs and again.kind_pairs == split.kind_pairs
    records = evaluate(FixedRanker(["g", "d", "c", "b", "a", "e"]), split)
    summary = summarise(records, split, 3)
    assert summary["overall"]["auc_kind_matched"]["n"] == len(split.kind_pairs)
