"""The text x network signals of the stage analysis (service.evaluation_propagation), on a
hand-made graph: 0-1, 0-2, and 3 without partners; profile vectors the unit vectors."""

from __future__ import annotations

import numpy as np
import pytest

from service.domain import Actor
from service.evaluation import Corpus
from service.evaluation_propagation import (
    PROPAGATION_FAMILIES,
    nearest_partner,
    partner_mean_profiles,
    propagation_scorers,
    smoothed_profiles,
)
from service.network import partner_graph
from tests.test_evaluation import profile

IDS = ["a0", "a1", "a2", "a3"]
START, ROWS = partner_graph(IDS, {"a0": ["a1", "a2"]})
P = np.eye(4)


def unit(v: list[float]) -> np.ndarray:
    x = np.array(v, dtype=np.float64)
    return x / np.linalg.norm(x)


def test_partner_mean_mixes_own_vector_with_the_partners_mean() -> None:
    out = partner_mean_profiles(P, START, ROWS, alpha=0.5)
    assert out[0] == pytest.approx(unit([0.5, 0.25, 0.25, 0]))
    assert out[1] == pytest.approx(unit([0.5, 0.5, 0, 0]))
    assert out[3] == pytest.approx([0, 0, 0, 1])  # no partners: its own vector
    only_partners = partner_mean_profiles(P, START, ROWS, alpha=0.0)
    assert only_partners[1] == pytest.approx([1, 0, 0, 0])
    assert only_partners[0] == pytest.approx(unit([0, 1, 1, 0]))


def test_smoothing_is_the_symmetric_normalised_adjacency_with_self_loops() -> None:
    a = np.zeros((4, 4))
    a[0, 1] = a[1, 0] = a[0, 2] = a[2, 0] = 1
    a += np.eye(4)
    d = a.sum(axis=1)
    s = a / np.sqrt(d)[:, None] / np.sqrt(d)[None, :]
    vectors = np.random.default_rng(1).normal(size=(4, 3))
    for steps in (1, 2):
        expected = np.linalg.matrix_power(s, steps) @ vectors
        expected /= np.linalg.norm(expected, axis=1, keepdims=True)
        assert smoothed_profiles(vectors, START, ROWS, steps) == pytest.approx(expected)
    assert smoothed_profiles(P, START, ROWS, 1)[0] == pytest.approx(
        unit([1 / 3, 1 / np.sqrt(6), 1 / np.sqrt(6), 0])
    )


def test_nearest_partner_takes_the_best_partner_and_the_mean_without_partners() -> None:
    similarities = np.array([0.1, 0.9, 0.5, 0.3])
    out = nearest_partner(similarities, START, ROWS)
    assert out == pytest.approx([0.9, 0.1, 0.1, (0.9 + 0.1 + 0.1) / 3])
    empty_start, empty_rows = partner_graph(IDS, {})
    assert nearest_partner(similarities, empty_start, empty_rows) == pytest.approx([0, 0, 0, 0])
    # without any partner the propagated profiles are the profiles
    assert partner_mean_profiles(P, empty_start, empty_rows, 0.5) == pytest.approx(P)
    assert smoothed_profiles(P, empty_start, empty_rows, 2) == pytest.approx(P)


def test_scorers_score_every_actor_from_the_query_and_its_partners() -> None:
    corpus = Corpus.of([Actor.parse(profile(a, [str(i + 1)])) for i, a in enumerate(IDS)])
    assert corpus.ids == IDS
    scorers = propagation_scorers(corpus, P, START, ROWS)
    assert tuple(scorers) == PROPAGATION_FAMILIES
    half = partner_mean_profiles(P, START, ROWS, 0.5)
    symmetric = scorers["partner mean, symmetric"].scores("a1")
    # cos(P_q, P'_c) + cos(P'_q, P_c) for q = a1
    assert symmetric == pytest.approx(half @ P[1] + P @ half[1])
    # a2 is like a1 only through their common partner a0
    assert symmetric[2] == pytest.approx(0.0)
    assert scorers["partner mean, both sides"].scores("a1")[2] > 0
    nearest = scorers["nearest partner"].scores("a1")
    assert nearest[0] == pytest.approx(1.0)  # a0 works with a1 itself
    assert nearest[2] == pytest.approx(0.0)  # a2's only partner, a0, is unlike a1
