"""Matching on the fake embedder: ranking, filters that still fill `limit`, exclusions, evidence."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from service.domain import Actor
from service.errors import InvalidInput, NotFound
from service.runtime import Runtime
from service.store import ActorFilter
from tests.factories import actor_data, make_actor

WIND = "offshore wind turbine blade composite materials"


def seed(runtime: Runtime) -> None:
    actors = [
        make_actor(f"wind-at-{i}", [f"{WIND} test bench {i}"], country="AT", kind="company")
        for i in range(12)
    ]
    actors += [
        make_actor(f"wind-de-{i}", [f"wind turbine maintenance robots {i}"], country="DE")
        for i in range(6)
    ]
    actors += [
        make_actor("bakery", ["sourdough bread and pastry production"], country="IT"),
        make_actor(
            "lab",
            ["battery cell chemistry", f"{WIND} fatigue testing"],
            country="SE",
            kind="research",
        ),
    ]
    runtime.ingestor.upsert(actors)
    runtime.reindexer.run()


def ids(result: object) -> list[str]:
    return [m.actor.id for m in result.matches]  # type: ignore[attr-defined]


def test_search_ranks_related_actors_with_evidence(runtime: Runtime) -> None:
    seed(runtime)
    result = runtime.matcher.search(WIND, limit=5)
    assert len(result.matches) == 5
    assert all(i.startswith("wind-at") or i == "lab" for i in ids(result))
    best = result.matches[0]
    assert best.evidence and WIND in best.evidence[0].text
    assert [m.score for m in result.matches] == sorted(
        (m.score for m in result.matches), reverse=True
    )
    assert "bakery" not in ids(runtime.matcher.search(WIND, limit=19))


def test_filter_fills_limit_when_candidates_exist(runtime: Runtime) -> None:
    seed(runtime)
    result = runtime.matcher.search(WIND, limit=6, filters=ActorFilter(countries=("DE",)))
    assert sorted(ids(result)) == sorted(f"wind-de-{i}" for i in range(6))
    research = runtime.matcher.search(WIND, limit=3, filters=ActorFilter(kinds=("research",)))
    assert ids(research) == ["lab"], "only one research actor exists: fewer is honest"


def test_deleted_actors_vanish_and_limit_is_still_filled(runtime: Runtime) -> None:
    seed(runtime)
    top = ids(runtime.matcher.search(WIND, limit=8))
    for actor_id in top[:8]:
        runtime.store.delete_actor(actor_id)
    after = ids(runtime.matcher.search(WIND, limit=8))
    assert len(after) == 8
    assert not set(after) & set(top[:8])


def test_match_never_returns_self_and_excludes_same_country(runtime: Runtime) -> None:
    seed(runtime)
    result = runtime.matcher.match_actor("wind-at-0", limit=10)
    assert "wind-at-0" not in ids(result)
    assert ids(result)[0].startswith("wind-at")
    foreign = runtime.matcher.match_actor(
        "wind-at-0", limit=10, filters=ActorFilter(exclude_same=frozenset({"country"}))
    )
    assert foreign.matches and all(m.actor.country != "AT" for m in foreign.matches)
    assert ids(foreign)[0] == "lab", "the Swedish lab shares the wind text"


def test_new_actor_can_be_matched_before_reindex(runtime: Runtime) -> None:
    seed(runtime)
    runtime.ingestor.upsert([make_actor("newcomer", [f"{WIND} recycling"], country="RO")])
    result = runtime.matcher.match_actor("newcomer", limit=3)
    assert len(result.matches) == 3 and "newcomer" not in ids(result)


def test_aggregates_differ_on_multi_chunk_queries(runtime: Runtime) -> None:
    seed(runtime)
    query = make_actor("q", ["battery cell chemistry", f"{WIND} fatigue testing"], country="PL")
    runtime.matcher.aggregate = "coverage"
    coverage = runtime.matcher.match_profile(query, limit=3)
    assert ids(coverage)[0] == "lab", "the lab covers both of the query's documents"
    runtime.matcher.aggregate = "max"
    best = runtime.matcher.match_profile(query, limit=3)
    assert best.matches[0].score >= coverage.matches[0].score


def test_unknown_actor(runtime: Runtime) -> None:
    seed(runtime)
    with pytest.raises(NotFound, match="nobody"):
        runtime.matcher.match_actor("nobody")


def test_fresh_store_matches_before_any_rebuild(runtime: Runtime) -> None:
    """No generation has been published: the empty stand-in serves and the delta holds all."""
    assert runtime.matcher.search("anything").matches == []
    runtime.ingestor.upsert(
        [make_actor("a1", [WIND], country="AT"), make_actor("a2", [f"{WIND} tests"])]
    )
    assert runtime.is_candidate("a1") and runtime.is_candidate("a2")
    assert ids(runtime.matcher.match_actor("a1")) == ["a2"]
    assert ids(runtime.matcher.search(WIND, limit=2)) == ["a1", "a2"]
    assert runtime.index.get().is_empty and runtime.pending_changes() == 2
    runtime.reindexer.run()
    runtime.index.reload()
    assert not runtime.index.get().is_empty
    assert ids(runtime.matcher.match_actor("a1")) == ["a2"]


def seed_one_project(runtime: Runtime, partners: int = 6, publish: bool = True) -> str:
    """`partners` partners of one project (sharing its text) and two other actors, published
    (else only in the live delta); the project text."""
    project = f"{WIND} joint project"
    copies = [make_actor(f"partner-{i:02d}", [project], country="AT") for i in range(partners)]
    others = [
        make_actor("se", [f"{WIND} fatigue tests"], country="SE", kind="research"),
        make_actor("it", [f"{WIND} recycling plant"], country="IT", kind="university"),
    ]
    runtime.ingestor.upsert(copies + others)
    if publish:
        runtime.reindexer.run()
        runtime.index.reload()
    return project


def test_diversify_breaks_up_near_copies(runtime: Runtime) -> None:
    project = seed_one_project(runtime)
    plain = runtime.matcher.search(project, limit=3, collapse=False)
    assert all(m.actor.id.startswith("partner-") for m in plain.matches)
    varied = runtime.matcher.search(project, limit=3, diversify=True, collapse=False)
    assert varied.matches[0].actor.id == plain.matches[0].actor.id, "the best stays first"
    assert sum(m.actor.id.startswith("partner-") for m in varied.matches) == 1
    assert {m.actor.id for m in varied.matches[1:]} == {"se", "it"}


def test_one_project_one_suggestion(runtime: Runtime) -> None:
    """Partners of one project share its text: by default they are one suggestion, the others
    listed with it, and the slots go to other actors; scores stay in order."""
    result = runtime.matcher.search(seed_one_project(runtime), limit=3)
    assert {m.actor.id for m in result.matches[1:]} == {"se", "it"}
    first = result.matches[0]
    assert first.actor.id == "partner-00" and {a.id for a in first.also} == {
        f"partner-{i:02d}" for i in range(1, 6)
    }
    scores = [m.score for m in result.matches]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("published", [True, False])
def test_many_partners_of_one_project_cost_one_page_read(runtime: Runtime, published: bool) -> None:
    """Which candidates share a suggestion is known from passage keys before any text is read
    (the generation's `chunk_passage`, the delta's content hashes), so thirty partners of one
    project collapse within the one store read of the page, whether in the generation or not."""
    project = seed_one_project(runtime, partners=30, publish=published)
    store = runtime.matcher.store
    reads: list[int] = []
    real_page = store.page

    def page(chunk_ids: Sequence[int]) -> Any:
        reads.append(len(chunk_ids))
        return real_page(chunk_ids)

    store.page = page  # type: ignore[method-assign]
    result = runtime.matcher.search(project, limit=3)
    assert len(reads) == 1, reads
    first = result.matches[0]
    assert {first.actor.id, *(a.id for a in first.also)} == {f"partner-{i:02d}" for i in range(30)}
    assert {m.actor.id for m in result.matches[1:]} == {"se", "it"}


def test_complement_matches_needs_against_offers(runtime: Runtime) -> None:
    def with_intents(actor_id: str, docs: list[tuple[str, str | None]]) -> Actor:
        data = actor_data(actor_id, [t for t, _ in docs], country="DE")
        for doc, (_, intent) in zip(data["documents"], docs, strict=True):
            if intent:
                doc["intent"] = intent
        return Actor.parse(data)

    runtime.ingestor.upsert(
        [
            with_intents(
                "seeker",
                [
                    ("recycling of composite rotor blades", "need"),
                    ("sourdough bread bakery", "offer"),
                ],
            ),
            with_intents("recycler", [("recycling of composite rotor blades service", "offer")]),
            with_intents("rival", [("recycling of composite rotor blades", "need")]),
            with_intents("baker", [("sourdough bread bakery", None)]),
        ]
    )
    runtime.reindexer.run()
    similar = [m.actor.id for m in runtime.matcher.match_actor("seeker", limit=3).matches]
    assert set(similar[:2]) == {"rival", "baker"}, "like against like, each covers one half"
    complement = runtime.matcher.match_actor("seeker", limit=3, mode="complement")
    ids = [m.actor.id for m in complement.matches]
    assert ids[0] == "recycler" and "rival" not in ids
    with pytest.raises(InvalidInput, match="intent: need"):
        runtime.matcher.match_actor("baker", mode="complement")


def test_aggregate_scores() -> None:
    import numpy as np

    from service.matching import aggregate_score

    block = np.array([[0.9, 0.1, 0.2], [0.3, 0.4, 0.8]], dtype=np.float32)
    assert aggregate_score(block, "max") == pytest.approx(0.9)
    assert aggregate_score(block, "coverage") == pytest.approx((0.9 + 0.8) / 2)
    assert aggregate_score(block, "topk") == pytest.approx((0.9 + 0.8 + 0.4) / 3)


def test_nothing_fits_says_so(runtime: Runtime) -> None:
    """Below the model's floor a search answers nothing, with a reason; an exact term shared
    with a passage (BM25) still counts as a fit."""
    seed(runtime)
    runtime.matcher.weak_below = 0.6  # the fake embedder: hashed words collide up to ~0.4
    nothing = runtime.matcher.search("quantum chromodynamics lattice")
    assert nothing.matches == [] and nothing.weak and nothing.reason
    assert "below 0.60" in nothing.reason
    fits = runtime.matcher.search(WIND, limit=3)
    assert len(fits.matches) == 3 and not fits.weak
    by_term = runtime.matcher.search("sourdough")  # far by vector, but a word in common
    assert [m.actor.id for m in by_term.matches][:1] == ["bakery"] and not by_term.weak
    runtime.matcher.fusion = "vector"
    assert runtime.matcher.search("sourdough").weak, "without BM25 the same query fits nothing"


def test_activity_prior_is_off_by_default_and_lifts_active_actors(runtime: Runtime) -> None:
    runtime.ingestor.upsert(
        [
            make_actor("query", [WIND]),
            make_actor("a-quiet", [f"{WIND} one"]),
            make_actor("b-busy", [f"{WIND} one", "bread", "cheese", "wine", "olive oil"]),
        ]
    )
    runtime.reindexer.run()
    runtime.matcher.aggregate = "max"  # both share the same best passage score
    assert ids(runtime.matcher.match_actor("query"))[0] == "a-quiet", "a tie goes by id"
    runtime.matcher.activity_prior = 1.0
    assert ids(runtime.matcher.match_actor("query"))[0] == "b-busy"
