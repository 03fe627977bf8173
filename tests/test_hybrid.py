"""Hybrid search: BM25 beside vectors, fused; exact terms and patent classes are findable."""

from __future__ import annotations

import numpy as np

from service.domain import OPERATOR, Actor, ActorSummary, Match, Owner
from service.lexical import DeltaLexical, GenerationLexical
from service.matching import fuse
from service.runtime import Runtime
from tests.factories import actor_data, make_actor


def public(texts: list[str], size: int | None = None) -> GenerationLexical:
    """Postings over public passages at positions 0, 1, ..."""
    return GenerationLexical.build(
        size or len(texts),
        np.arange(len(texts)),
        texts,
        np.zeros(len(texts), np.int8),
        [Owner()] * len(texts),
    )


def test_lexical_index_keeps_technical_tokens_and_honours_the_mask() -> None:
    index = public(
        ["rotor blades F03D 1/06", "PEM electrolyser for H2 and CO2", "wind farm service"]
    )
    assert index.search("F03D", 3, OPERATOR)[1].tolist() == [0]
    assert index.search("1/06", 3, OPERATOR)[1].tolist() == [0]
    assert index.search("co2 pem", 3, OPERATOR)[1].tolist() == [1]
    assert index.search("der die das", 3, OPERATOR)[1].tolist() == [], "stop words find nothing"
    allowed = np.array([True, True, False])
    assert index.search("wind", 3, OPERATOR, allowed)[1].tolist() == []


def summary(actor_id: str) -> ActorSummary:
    return ActorSummary(actor_id, actor_id, "company", "AT", None, ())


def test_rrf_rewards_agreement_of_both_lists() -> None:
    scored = [Match(summary("a"), 0.9), Match(summary("b"), 0.8), Match(summary("c"), 0.7)]
    fused = {m.actor.id: m.score for m in fuse(scored, {"c": 9.0, "b": 5.0}, "rrf", 0.7)}
    assert fused["b"] > fused["a"], "second in both beats first in one"
    assert fused["c"] > fused["a"]
    weighted = {m.actor.id: m.score for m in fuse(scored, {"c": 9.0}, "weighted", 0.5)}
    assert weighted["c"] == 0.5 * 0.7 + 0.5 and weighted["a"] == 0.45


def test_patent_class_and_acronym_are_findable(runtime: Runtime) -> None:
    patent = actor_data("patentee", ["x"])
    patent["documents"][0] = {
        "id": "EP1",
        "kind": "patent",
        "text": "A root insert that fastens a fibre shell to the hub.",
        "codes": ["F03D 1/06"],
    }
    runtime.ingestor.upsert(
        [
            Actor.parse(patent),
            make_actor("other", ["Fibre shells for boats and their hubs."]),
            make_actor("pem", ["We build PEM stacks."]),
            make_actor("solid", ["We build solid oxide stacks."]),
        ]
    )
    runtime.reindexer.run()
    assert runtime.matcher.search("F03D 1/06", limit=1).matches[0].actor.id == "patentee"
    assert runtime.matcher.search("PEM", limit=1).matches[0].actor.id == "pem"
    # written after the generation: found through the delta's own BM25
    runtime.ingestor.upsert([make_actor("late", ["CFRP recycling by pyrolysis"])])
    assert runtime.matcher.search("CFRP", limit=1).matches[0].actor.id == "late"


FUSION = (
    "Implementation of activities described in the Roadmap to Fusion during Horizon 2020 "
    "through a joint programme of the members of the EUROfusion consortium"
)


def test_an_actor_written_since_the_rebuild_ranks_as_it_will_after_it(runtime: Runtime) -> None:
    runtime.ingestor.upsert(
        [make_actor(f"partner{i}", [FUSION]) for i in range(12)]
        + [make_actor(f"other{i}", [f"wind turbine service {i}"]) for i in range(20)]
        + [make_actor(f"built{i}", [f"{FUSION} Reference built{i}."]) for i in range(5)]
    )
    runtime.reindexer.run()
    fresh = [make_actor(f"new{i}", [f"{FUSION} Reference new{i}."]) for i in range(6)]
    runtime.ingestor.upsert(fresh)
    for actor_id in ("built3", "new4"):  # one served from the generation, one from the delta
        found = runtime.matcher.search(f"{FUSION} Reference {actor_id}.", limit=10).matches
        assert found[0].actor.id == actor_id, [(m.actor.id, m.score) for m in found]


PASSAGES = [
    "rotor blades F03D 1/06 for offshore wind turbines",
    "PEM electrolyser for green hydrogen and CO2 capture",
    "wind farm service and blade repair",
    "hydrogen storage in salt caverns",
    "composite blades repair with glass fibre",
    "machine learning for wind farm forecasting",
]
QUERIES = ["wind blades", "hydrogen hydrogen PEM", "repair of composite blades", "F03D 1/06"]


def test_the_delta_scores_its_passages_as_the_whole_corpus_would() -> None:
    """Found by scripts/load_fault.py: the delta's BM25 had its own IDF and mean length, so its
    scores, fused with the generation's, ranked a fresh passage below its near-copies. Weighted
    alongside the generation's statistics, a delta passage scores what one index over
    everything gives it."""
    whole = public(PASSAGES)
    delta = DeltaLexical(public(PASSAGES[:4]))
    alone = DeltaLexical(None)
    for position, text in enumerate(PASSAGES[4:]):
        delta.append(position, text, 0, Owner())
        alone.append(position, text, 0, Owner())
    for query in QUERIES:
        expected = dict(zip(*reversed(whole.search(query, 10, OPERATOR)), strict=True))
        got = dict(zip(*reversed(delta.search(query, 10, OPERATOR)), strict=True))
        assert {p + 4 for p in got} == {p for p in expected if p >= 4}, query
        assert all(abs(got[p] - expected[p + 4]) < 1e-4 for p in got), (query, got, expected)
    differs = [
        q
        for q in QUERIES
        if alone.search(q, 10, OPERATOR)[0].tolist() != delta.search(q, 10, OPERATOR)[0].tolist()
    ]
    assert differs, "without the generation's statistics the scores differ (the bug)"
    delta.remove(0)
    assert delta.search("glass", 1, OPERATOR)[1].tolist() == [], "a removed passage is gone"
