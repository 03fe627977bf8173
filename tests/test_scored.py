"""`ranking.Scored`: candidates as columns, and the objects the page makes of them."""

from __future__ import annotations

import numpy as np

from service.ranking import Ranked, Scored


def part(ids: list[str], lengths: list[int], first_row: int, seed: int) -> Scored:
    rng = np.random.default_rng(seed)
    n = sum(lengths)
    return Scored(
        actor_ids=ids,
        rows=np.arange(first_row, first_row + len(ids), dtype=np.int64),
        score=rng.random(len(ids)),
        start=np.r_[0, np.cumsum(lengths)].astype(np.int64),
        chunk_ids=rng.integers(0, 10**6, n),
        best=rng.random(n).astype(np.float32),
        best_query=rng.integers(0, 3, n),
        visible=rng.random(n) > 0.3,
        document=rng.integers(0, 4, n),
        passage=rng.integers(-(2**62), 2**62, n),
    )


def same(a: object, b: object) -> bool:
    left, right = vars(a), vars(b)
    return left.keys() == right.keys() and all(
        np.array_equal(left[k], right[k])
        if isinstance(left[k], np.ndarray)
        else left[k] == right[k]
        for k in left
    )


def test_join_and_subset_keep_every_candidate_whole() -> None:
    a = part(["a", "b", "c"], [2, 1, 3], 0, 1)
    b = part(["x", "y"], [4, 1], 10, 2)
    joined = Scored.join([a, Scored.join([]), b])
    assert len(joined) == 5 and joined.start.tolist() == [0, 2, 3, 6, 10, 11]
    originals = [a.candidate(i) for i in range(3)] + [b.candidate(i) for i in range(2)]
    assert all(same(joined.candidate(i), c) for i, c in enumerate(originals))
    keep = np.array([4, 0, 2])
    picked = joined.subset(keep)
    assert all(same(picked.candidate(j), originals[i]) for j, i in enumerate(keep.tolist()))
    assert picked.best_chunk().tolist() == [float(originals[i].best.max()) for i in keep.tolist()]


def test_ranked_orders_by_shown_score_then_actor_id() -> None:
    scored = part(["b", "a", "c"], [1, 1, 1], 0, 3)
    scored = Scored(**{**vars(scored), "score": np.array([0.5, 0.5000000001, 0.9])})
    ranked = Ranked(scored)
    # 0.5 and 0.5000000001 are equal to six decimals: the actor id decides.
    assert [ranked[i].actor_id for i in range(len(ranked))] == ["c", "a", "b"]
