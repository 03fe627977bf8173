"""Exact search in numpy: the oracle the FAISS backend is tested against, and a small live index."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from service.index.base import ChunkSelection, IdArray, Scores, Vectors


class ExactIndex:
    def __init__(self, dim: int) -> None:
        self._dim = dim
        self._ids: IdArray = np.zeros(0, dtype=np.int64)
        self._vectors: Vectors = np.zeros((0, dim), dtype=np.float32)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def kind(self) -> str:
        return "exact-numpy"

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, ids: IdArray, vectors: Vectors) -> None:
        if len(ids) != len(vectors):
            raise ValueError("ids and vectors differ in length")
        self.remove(np.asarray(ids, dtype=np.int64))
        self._ids = np.concatenate([self._ids, np.asarray(ids, dtype=np.int64)])
        self._vectors = np.vstack([self._vectors, np.asarray(vectors, dtype=np.float32)])

    def remove(self, ids: IdArray) -> int:
        keep = ~np.isin(self._ids, ids)
        removed = int((~keep).sum())
        self._ids, self._vectors = self._ids[keep], self._vectors[keep]
        return removed

    def ids(self) -> IdArray:
        return self._ids.copy()

    def search(
        self,
        queries: Vectors,
        k: int,
        selection: ChunkSelection | None = None,
        exact_scores: bool = True,  # always exact here
    ) -> tuple[Scores, IdArray]:
        k = max(1, min(k, max(len(self), 1)))
        scores = np.asarray(queries, dtype=np.float32) @ self._vectors.T
        if selection is not None and selection.allow is not None:
            scores[:, ~np.isin(self._ids, selection.allow)] = -np.inf
        if selection is not None and selection.deny is not None:
            scores[:, np.isin(self._ids, selection.deny)] = -np.inf
        out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_ids = np.full((len(queries), k), -1, dtype=np.int64)
        if len(self) == 0:
            return out_scores, out_ids
        # Stable sort on (-score, id) so ties are deterministic.
        for row in range(len(queries)):
            order = np.lexsort((self._ids, -scores[row]))[:k]
            valid = np.isfinite(scores[row, order])
            out_scores[row, : valid.sum()] = scores[row, order][valid]
            out_ids[row, : valid.sum()] = self._ids[order][valid]
        return out_scores, out_ids

    def reconstruct(self, ids: IdArray, exact: bool = True) -> Vectors:  # always exact here
        position = {int(i): n for n, i in enumerate(self._ids)}
        return self._vectors[[position[int(i)] for i in ids]].reshape(-1, self._dim)

    def save(self, path: Path) -> None:
        with path.open("wb") as handle:
            np.savez(handle, ids=self._ids, vectors=self._vectors)
