"""The partner-network signal on tiny hand-made graphs: the graph, the walk, shared partners,
the rank score in text units, and the matcher's switchable hook (fake embedder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.domain import Actor
from service.network import (
    PPR_FLOOR,
    neighbours,
    network_scores,
    partner_graph,
    partner_mask,
    personalised_pagerank,
    rank_scores,
    shared_partners,
    standardised,
)
from service.runtime import Runtime
from tests.factories import actor_data, make_actor

IDS = ["a", "b", "c", "d", "e"]
# a-b, a-c, c-d; "x" is not in the catalogue; e lists itself (ignored) and has no partners.
LISTS = {"a": ["b", "c"], "c": ["d", "a"], "x": ["a"], "e": ["e"]}


def dense_ppr(start: np.ndarray, rows: np.ndarray, source: int, restart: float, steps: int):  # type: ignore[no-untyped-def]
    n = len(start) - 1
    adjacency = np.zeros((n, n))
    for i in range(n):
        adjacency[i, rows[start[i] : start[i + 1]]] = 1
    walk = adjacency / np.maximum(adjacency.sum(axis=1, keepdims=True), 1)
    position, out = np.eye(n)[source], restart * np.eye(n)[source]
    for _ in range(steps):
        position = (1 - restart) * position @ walk
        out = out + restart * position
    return out


def test_the_graph_is_undirected_without_loops_or_outsiders() -> None:
    start, rows = partner_graph(IDS, LISTS)
    assert [neighbours(start, rows, i).tolist() for i in range(5)] == [[1, 2], [0], [0, 3], [2], []]
    # listing a partnership on one side is enough; on both sides it is still one edge
    assert partner_graph(["a", "b"], {"b": ["a"]})[1].tolist() == [1, 0]
    assert partner_graph(["a", "b"], {})[0].tolist() == [0, 0, 0]


def test_the_frontier_walk_equals_the_dense_reference() -> None:
    start, rows = partner_graph(IDS, LISTS)
    for source in range(5):
        for steps in (0, 1, 4, 30):
            got = personalised_pagerank(start, rows, source, 0.15, steps)
            assert np.allclose(got, dense_ppr(start, rows, source, 0.15, steps))
    # four steps from b: a (1 hop), c (2), d (3); e is never reached
    walk = personalised_pagerank(start, rows, 1)
    assert walk[0] > walk[2] > walk[3] > 0 and walk[4] == 0
    scores = network_scores(start, rows, 1)
    assert scores[4] == np.log(PPR_FLOOR) and scores[3] > scores[4]
    assert not personalised_pagerank(start, rows, -1).any(), "no source: no mass"


def test_shared_partners_are_the_common_neighbours() -> None:
    start, rows = partner_graph(IDS, LISTS)
    of_b = partner_mask(start, rows, 1)
    assert shared_partners(start, rows, of_b, 2).tolist() == [0]  # b and c both work with a
    assert shared_partners(start, rows, of_b, 3).tolist() == []
    assert shared_partners(start, rows, partner_mask(start, rows, -1), 3).tolist() == []
    assert shared_partners(start, rows, of_b, -1).tolist() == []


def test_the_rank_score_orders_like_the_z_sum_and_stays_in_text_units() -> None:
    rng = np.random.default_rng(3)
    text, signal = rng.random(20), rng.random(20)
    adjusted = rank_scores(text, [(0.5, signal)])
    z_sum = standardised(text) + 0.5 * standardised(signal)
    assert (np.argsort(adjusted) == np.argsort(z_sum)).all()
    assert np.allclose(adjusted - text, text.std() * 0.5 * standardised(signal))
    assert np.array_equal(rank_scores(text, [(0.0, signal)]), text), "weight 0: the text score"
    assert np.array_equal(rank_scores(text, [(1.0, np.ones(20))]), text), "no spread: no move"


def linked(actor_id: str, texts: list[str], partners: list[str]) -> Actor:
    return Actor.parse({**actor_data(actor_id, texts), "partners": partners})


def test_the_network_signal_is_switchable_and_shows_its_evidence(runtime: Runtime) -> None:
    wind = "offshore wind turbine blade composite materials"
    runtime.ingestor.upsert(
        [
            linked("query", [wind], ["hub"]),
            linked("hub", ["bakery logistics"], ["query", "z-linked"]),
            make_actor("a-stranger", [f"{wind} one"]),
            make_actor("z-linked", [f"{wind} one"]),  # same text as a-stranger, later by id
        ]
    )
    runtime.reindexer.run()
    runtime.matcher.aggregate = "max"
    off = runtime.matcher.match_actor("query", limit=3, collapse=False)
    assert [m.actor.id for m in off.matches][:2] == ["a-stranger", "z-linked"], "a tie goes by id"
    assert all(m.similarity is None and m.shared_partners == () for m in off.matches)
    runtime.matcher.network_weight = 1.0
    on = runtime.matcher.match_actor("query", limit=3, collapse=False)
    by_id = {m.actor.id: m for m in on.matches}
    assert on.matches[0].actor.id == "z-linked", "a partner of a partner goes up"
    assert by_id["z-linked"].shared_partners == ("hub",)
    assert by_id["a-stranger"].shared_partners == ()
    # the text score travels beside the rank score, and the scores shown stay in order
    assert by_id["z-linked"].similarity == by_id["a-stranger"].similarity
    assert [m.score for m in on.matches] == sorted((m.score for m in on.matches), reverse=True)
    # a known partner gets no lift from the walk that reaches it first
    hub = by_id["hub"]
    assert hub.score < by_id["a-stranger"].score
    # free-text search never uses it
    assert all(m.similarity is None for m in runtime.matcher.search(wind).matches)


def test_the_walk_follows_at_most_its_edge_budget_per_step_and_is_exact_below_it() -> None:
    """Cost is bounded however dense the hubs (edges counted, not seconds); a graph whose
    frontier stays within the budget gets the uncapped walk's exact scores."""
    rng = np.random.default_rng(3)
    ids = [f"a{i}" for i in range(300)]
    partners = {ids[0]: set(ids[1:])}  # a hub with everyone
    for i in range(1, 300):
        partners.setdefault(ids[i], set()).update(
            ids[j] for j in rng.choice(300, 4).tolist() if j != i
        )
    start, rows = partner_graph(ids, partners)
    followed: list[int] = []
    capped = personalised_pagerank(start, rows, 5, max_edges=50, followed=followed)
    widest = int(np.diff(start).max())  # a single node heavier than the budget is still followed
    assert followed and all(f <= max(50, widest) for f in followed)
    uncapped_followed: list[int] = []
    uncapped = personalised_pagerank(start, rows, 5, max_edges=10**9, followed=uncapped_followed)
    assert sum(uncapped_followed) > sum(followed), "the budget cut the walk"
    assert 0.15 <= capped[5] <= uncapped[5] and (capped > 0).sum() <= (uncapped > 0).sum()
    assert np.array_equal(uncapped, personalised_pagerank(start, rows, 5, max_edges=len(rows)))


@pytest.mark.parametrize("suffix", ["", "+onnx-int8"])
def test_a_models_calibrations_hold_in_every_backend_of_it(tmp_path: Path, suffix: str) -> None:
    """The int8 copy of a model carries a suffixed id; its runtime must still get the model's
    network weight, profile weight and weak-result floor (it silently lost them once: the
    temporal evaluation fell from nDCG@10 0.138 to 0.058 with CLUSTERMATCH_BACKEND=onnx-int8)."""
    from service.config import ModelProfile, Settings
    from service.embedding.fake import FakeEmbedder

    profile = ModelProfile.load("all-minilm-l6-v2")
    runtime = Runtime(
        Settings(data_dir=tmp_path), embedder=FakeEmbedder(dim=384, model_id=profile.id + suffix)
    )
    assert runtime.matcher.network_weight == profile.network_weight > 0
    assert runtime.matcher.weak_below == profile.weak_below
    fake = Runtime(Settings(data_dir=tmp_path / "fake"), embedder=FakeEmbedder())
    assert fake.matcher.network_weight == 0.0, "a test's fake model gets no calibration"


def _reference_pagerank(start: Any, rows: Any, source: int, budget: int) -> Any:
    """The walk as first written (a full sort of the frontier, one pass over every row)."""
    n = len(start) - 1
    out = np.zeros(n)
    frontier, mass = np.array([source]), np.ones(1)
    out[source] = 0.15
    degree = np.diff(start)
    for _ in range(4):
        counts = degree[frontier]
        keep = counts > 0
        frontier, mass, counts = frontier[keep], mass[keep], counts[keep]
        if not len(frontier):
            break
        if int(counts.sum()) > budget:
            order = np.argsort(-mass, kind="stable")
            spent = np.cumsum(counts[order])
            take = order[: max(1, int(np.searchsorted(spent, budget, side="right")))]
            frontier, mass, counts = frontier[take], mass[take], counts[take]
        firsts = np.repeat(start[frontier] - np.cumsum(counts) + counts, counts)
        targets = rows[firsts + np.arange(int(counts.sum()))]
        spread = np.bincount(targets, weights=np.repeat(0.85 * mass / counts, counts), minlength=n)
        frontier = np.flatnonzero(spread)
        mass = spread[frontier]
        out[frontier] += 0.15 * mass
    return out


@pytest.mark.parametrize("seed", range(6))
def test_the_walk_equals_its_first_form_to_the_bit(seed: int) -> None:
    """The partial sort of a heavy frontier and the sorted spread of a sparse one change the
    cost of a step, never its result: bit-equal to the full sort and the pass over every row,
    on random graphs with hubs and ties, budgets small and large."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 3000))
    ids = [f"a{i}" for i in range(n)]
    hubs = rng.choice(n, size=5, replace=False)
    partners: dict[str, list[str]] = {}
    for i in range(n):
        k = int(rng.integers(0, 6))
        picks = rng.choice(n, size=k).tolist() + (
            [int(rng.choice(hubs))] if rng.random() < 0.5 else []
        )
        partners[ids[i]] = [ids[j] for j in picks if j != i]
    start, rows = partner_graph(ids, partners)
    for budget in (1, 7, 60, 500, 10**9):
        for source in rng.choice(n, size=4).tolist():
            got = personalised_pagerank(start, rows, source, max_edges=budget)
            assert np.array_equal(got, _reference_pagerank(start, rows, source, budget))
