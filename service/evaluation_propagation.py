"""Text x network signals for the stage analysis: profile vectors propagated over the partner
graph (graph feature propagation, as in SGC or label-propagation link prediction).

The partner network the service uses (service.network) is text-blind: a walk over who worked
with whom. These signals mix the two: a candidate c is scored by how close the query's text is
to c's *partners'* texts ("c works with actors like q") and c's text to the query's partners'
("q works with actors like c"). Four forms, all from the actors' profile vectors P (the read
model's, one row per actor) and the undirected partner graph as CSR (service.network):

- **partner mean**: P' = normalise(alpha x P + (1 - alpha) x mean of the partners' P) (an actor
  without partners keeps P); scored symmetrically, cos(P_q, P'_c) + cos(P'_q, P_c), or as
  cos(P'_q, P'_c);
- **smoothed**: P'' = normalise(S^k P) with S = D^-1/2 (A + I) D^-1/2, the SGC propagation
  (self-loops, symmetric normalisation);
- **nearest partner**: max over c's partners p of cos(P_q, P_p): "one of c's partners is like q",
  which does not average the partners' vectors towards the catalogue's centroid (e5's vectors
  share a large common component, docs/evaluation.md, stage analysis item 3);
- **centred**: the partner mean with the catalogue's mean vector subtracted from P first.

Exploratory only (docs/evaluation.md, "Stage analysis", item 9): none of them beat the default
text + network ranking on half B, so the service does not compute them.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from service.evaluation import Corpus, Scores
from service.network import Ints

Vectors = npt.NDArray[np.float64]


def normalise_rows(vectors: Vectors) -> Vectors:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    out: Vectors = vectors / np.where(norms > 0, norms, 1.0)
    return out


def partner_mean_profiles(profile: Vectors, start: Ints, rows: Ints, alpha: float) -> Vectors:
    """normalise(alpha x P + (1 - alpha) x the mean of each row's partners' P); a row without
    partners keeps its own (normalised) vector."""
    n = len(start) - 1
    degree = np.diff(start)
    sources = np.repeat(np.arange(n), degree)
    sums = np.zeros_like(profile)
    np.add.at(sums, sources, profile[rows])
    means = np.where(degree[:, None] > 0, sums / np.maximum(degree, 1)[:, None], profile)
    return normalise_rows(alpha * profile + (1 - alpha) * means)


def smoothed_profiles(profile: Vectors, start: Ints, rows: Ints, steps: int) -> Vectors:
    """normalise(S^steps P), S = D^-1/2 (A + I) D^-1/2 over the partner graph with self-loops."""
    n = len(start) - 1
    degree = np.diff(start)
    sources = np.repeat(np.arange(n), degree)
    scale = 1.0 / np.sqrt(degree + 1.0)
    out = profile
    for _ in range(steps):
        scaled = out * scale[:, None]
        spread = scaled.copy()  # the self-loop
        np.add.at(spread, sources, scaled[rows])
        out = spread * scale[:, None]
    return normalise_rows(out)


def nearest_partner(similarities: Scores, start: Ints, rows: Ints) -> Scores:
    """For every row c: max over c's partners p of `similarities[p]`. Rows without partners get
    the mean of the others (no evidence either way), or 0 when no row has partners."""
    n = len(start) - 1
    degree = np.diff(start)
    has = degree > 0
    out = np.zeros(n, dtype=np.float64)
    if not has.any():
        return out
    out[has] = np.maximum.reduceat(similarities[rows], start[:-1][has])
    out[~has] = out[has].mean()
    return out


class PairCosines:
    """A propagated score as a stage-analysis Scorer: sum over (query-side, candidate-side)
    vector pairs of cos(left_q, right_c), for every corpus actor."""

    def __init__(self, name: str, corpus: Corpus, pairs: list[tuple[Vectors, Vectors]]) -> None:
        self.name, self.corpus, self.pairs = name, corpus, pairs

    def scores(self, query: str) -> Scores:
        position = self.corpus.position[query]
        total = np.zeros(len(self.corpus.ids), dtype=np.float64)
        for left, right in self.pairs:
            total += right @ left[position]
        return total


class NearestPartner:
    """max over the candidate's partners of their profile cosine with the query's."""

    def __init__(self, name: str, corpus: Corpus, profile: Vectors, start: Ints, rows: Ints):
        self.name, self.corpus = name, corpus
        self.profile, self.start, self.rows = profile, start, rows

    def scores(self, query: str) -> Scores:
        similarities = self.profile @ self.profile[self.corpus.position[query]]
        return nearest_partner(similarities, self.start, self.rows)


PROPAGATION_FAMILIES = (
    "partner mean, symmetric",
    "partner mean, both sides",
    "smoothed S^2, both sides",
    "nearest partner",
    "partner mean, symmetric, centred",
)


def propagation_scorers(
    corpus: Corpus, profile: Vectors, start: Ints, rows: Ints
) -> dict[str, PairCosines | NearestPartner]:
    """The families of the stage analysis, by name (P: the profile vectors in corpus order)."""
    half = partner_mean_profiles(profile, start, rows, 0.5)
    centred_profile = normalise_rows(profile - profile.mean(axis=0))
    centred = partner_mean_profiles(centred_profile, start, rows, 0.5)
    smooth = smoothed_profiles(profile, start, rows, 2)
    symmetric, both, smoothed, nearest, centred_name = PROPAGATION_FAMILIES
    return {
        symmetric: PairCosines(symmetric, corpus, [(profile, half), (half, profile)]),
        both: PairCosines(both, corpus, [(half, half)]),
        smoothed: PairCosines(smoothed, corpus, [(smooth, smooth)]),
        nearest: NearestPartner(nearest, corpus, profile, start, rows),
        centred_name: PairCosines(
            centred_name, corpus, [(centred_profile, centred), (centred, centred_profile)]
        ),
    }
