"""Does a candidate embedder agree with a reference one closely enough to replace it?

Two measures, because each alone can mislead: the cosine between the two vectors of the same text
(each text must stay close, not just the average), and how many of a query's top-k neighbours
among the texts stay the same (what users of search and matching would notice). Used to accept the
ONNX int8 backend against sentence-transformers on torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from service.embedding.base import Embedder, Vectors

MIN_COSINE = 0.98
"""Every text's vector from the candidate must be at least this close to the reference's."""
MIN_OVERLAP = 0.90
"""The mean share of each query's top-k neighbours that the candidate must reproduce."""


@dataclass(frozen=True)
class ParityReport:
    text_cosines: npt.NDArray[np.float32]
    """Cosine between reference and candidate vectors, one per text."""
    query_cosines: npt.NDArray[np.float32]
    """The same for the queries (embedded with role="query"); informative, not part of `passes`."""
    overlaps: npt.NDArray[np.float64]
    """Per query, the share of the reference's top-k texts that the candidate's top-k also holds."""
    k: int
    min_cosine_required: float = MIN_COSINE
    min_overlap_required: float = MIN_OVERLAP

    @property
    def min_cosine(self) -> float:
        return float(self.text_cosines.min())

    @property
    def mean_cosine(self) -> float:
        return float(self.text_cosines.mean())

    @property
    def mean_overlap(self) -> float:
        return float(self.overlaps.mean())

    @property
    def passes(self) -> bool:
        return (
            self.min_cosine >= self.min_cosine_required
            and self.mean_overlap >= self.min_overlap_required
        )

    def __str__(self) -> str:
        return (
            f"{len(self.text_cosines)} texts: cosine min {self.min_cosine:.4f} mean "
            f"{self.mean_cosine:.4f}; {len(self.overlaps)} queries: top-{self.k} overlap mean "
            f"{self.mean_overlap:.3f} min {float(self.overlaps.min()):.2f}, query cosine min "
            f"{float(self.query_cosines.min()):.4f}; {'passes' if self.passes else 'FAILS'}"
        )


def check_parity(
    reference: Embedder,
    candidate: Embedder,
    texts: Sequence[str],
    queries: Sequence[str],
    k: int = 10,
) -> ParityReport:
    """Embed `texts` (as passages) and `queries` with both embedders and compare them."""
    if not texts or not queries:
        raise ValueError("parity needs at least one text and one query")
    if reference.dim != candidate.dim:
        raise ValueError(f"dimensions differ: {reference.dim} vs {candidate.dim}")
    return compare_vectors(
        reference.embed(texts),
        candidate.embed(texts),
        reference.embed(queries, role="query"),
        candidate.embed(queries, role="query"),
        k,
    )


def compare_vectors(
    ref_texts: Vectors,
    cand_texts: Vectors,
    ref_queries: Vectors,
    cand_queries: Vectors,
    k: int = 10,
) -> ParityReport:
    """The same measures on vectors already computed (row i of both sides is the same text), e.g.
    the vectors of two rebuilds that embedded the same store in different places."""
    if ref_texts.shape != cand_texts.shape or ref_queries.shape != cand_queries.shape:
        raise ValueError(
            f"shapes differ: texts {ref_texts.shape} vs {cand_texts.shape}, queries "
            f"{ref_queries.shape} vs {cand_queries.shape}"
        )
    if len(ref_texts) == 0 or len(ref_queries) == 0:
        raise ValueError("parity needs at least one text and one query")
    k = min(k, len(ref_texts))
    ref_top = _top_k(ref_queries, ref_texts, k)
    cand_top = _top_k(cand_queries, cand_texts, k)
    overlaps = np.array(
        [len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(ref_top, cand_top, strict=True)]
    )
    return ParityReport(
        text_cosines=_row_cosines(ref_texts, cand_texts),
        query_cosines=_row_cosines(ref_queries, cand_queries),
        overlaps=overlaps,
        k=k,
    )


def _row_cosines(a: Vectors, b: Vectors) -> npt.NDArray[np.float32]:
    # Both sides are L2-normalised by contract, so the row dot product is the cosine.
    cosines: npt.NDArray[np.float32] = np.einsum("ij,ij->i", a, b)
    return cosines


def _top_k(queries: Vectors, texts: Vectors, k: int) -> npt.NDArray[np.intp]:
    """Indices of each query's k most similar texts (as a set: their order does not matter)."""
    scores = queries @ texts.T
    top: npt.NDArray[np.intp] = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return top
