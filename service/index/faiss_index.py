"""FAISS backend: an exact inner-product index behind `IndexIDMap2` (stable int64 ids)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss as _faiss
import numpy as np

from service.errors import CorruptArtifact
from service.index.base import ChunkSelection, IdArray, Scores, Vectors

# faiss's SWIG-generated stubs describe the C++ signatures, not the numpy wrappers Python calls
# (e.g. `remove_ids(array)`); typing it as Any keeps mypy honest about our own code only.
faiss: Any = _faiss


def _search_parameters(selection: ChunkSelection | None) -> Any:
    """Per-call parameters: nothing is ever set on the shared index object, so searches from many
    threads never race on it."""
    if selection is None or selection.is_everything:
        return None
    if selection.allow is not None:
        selector: Any = faiss.IDSelectorBatch(np.ascontiguousarray(selection.allow, dtype=np.int64))
    else:
        assert selection.deny is not None
        inner = faiss.IDSelectorBatch(np.ascontiguousarray(selection.deny, dtype=np.int64))
        selector = faiss.IDSelectorNot(inner)
        selector.referenced_inner = inner  # keep the wrapped selector alive as long as the outer
    return faiss.SearchParameters(sel=selector)


class FaissIndex:
    def __init__(self, dim: int, index: Any = None) -> None:
        self._dim = dim
        self._index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def kind(self) -> str:
        return "faiss-idmap2-flat-ip"

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, ids: IdArray, vectors: Vectors) -> None:
        if len(ids) != len(vectors):
            raise ValueError("ids and vectors differ in length")
        if len(ids):
            self._index.add_with_ids(
                np.ascontiguousarray(vectors, dtype=np.float32),
                np.ascontiguousarray(ids, dtype=np.int64),
            )

    def remove(self, ids: IdArray) -> int:
        return int(self._index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64)))

    def ids(self) -> IdArray:
        return np.asarray(faiss.vector_to_array(self._index.id_map), dtype=np.int64)

    def search(
        self, queries: Vectors, k: int, selection: ChunkSelection | None = None
    ) -> tuple[Scores, IdArray]:
        k = max(1, min(k, max(len(self), 1)))
        params = _search_parameters(selection)
        scores, ids = self._index.search(
            np.ascontiguousarray(queries, dtype=np.float32), k, params=params
        )
        scores[ids < 0] = -np.inf
        return scores.astype(np.float32), ids.astype(np.int64)

    def reconstruct(self, ids: IdArray) -> Vectors:
        if len(ids) == 0:
            return np.zeros((0, self._dim), dtype=np.float32)
        out = self._index.reconstruct_batch(np.ascontiguousarray(ids, dtype=np.int64))
        return np.asarray(out, dtype=np.float32)

    def save(self, path: Path) -> None:
        faiss.write_index(self._index, str(path))

    @classmethod
    def load(cls, path: Path) -> FaissIndex:
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise CorruptArtifact(f"cannot read FAISS index {path}: {exc}") from exc
        return cls(int(index.d), index)
