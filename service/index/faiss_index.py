"""FAISS backend behind `IndexIDMap2` (stable int64 ids): exact inner product, or HNSW when big.

- `flat`: `IndexFlatIP`, exact; the default while exact search is cheap.
- `hnsw`: `IndexHNSWFlat` (inner product) for large generations; `efSearch` is passed per call
  (`SearchParametersHNSW`), never set on the shared index, so concurrent searches never race.
  A graph search restricted to a small allow-list can miss eligible vectors, so such filtered
  searches run exactly over the allowed vectors instead: filters still fill `limit`.

A saved index is loaded memory-mapped (`IO_FLAG_MMAP_IFC`): the vectors and the HNSW graph stay
in the page cache, shared by every worker process on the host, instead of one private copy per
worker (at 1M chunks 1.7 GB each; docs/scaling.md). Generations are immutable, so a loaded index
refuses `add` and `remove` (FAISS would abort the process on a mapped vector).

Searches run with `search_threads()` OpenMP threads (1 unless set): a server answers requests in
parallel already, and OpenMP's thread count is a *per-thread* setting, so setting it once at
start-up never reached the request threads that search (they kept one OpenMP thread per core,
which spun at every barrier: 10 ms of CPU per search at 100k chunks, a third of the search).
Builds (`add`) keep OpenMP's default, all cores.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import faiss as _faiss
import numpy as np

from service.errors import CorruptArtifact
from service.index.base import ChunkSelection, IdArray, Scores, Vectors

# faiss's SWIG-generated stubs describe the C++ signatures, not the numpy wrappers Python calls
# (e.g. `remove_ids(array)`); typing it as Any keeps mypy honest about our own code only.
faiss: Any = _faiss

Kind = Literal["flat", "hnsw"]
_search_threads = 1
EXACT_SUBSET_MAX = 20_000
"""Allow-lists up to this size (or 5% of an HNSW index) are searched exactly over their vectors."""


@dataclass(frozen=True)
class HnswParams:
    m: int = 32
    ef_construction: int = 200
    ef_search: int = 128


def set_search_threads(threads: int) -> None:
    """OpenMP threads of every later search and reconstruct, in whichever thread it runs."""
    global _search_threads
    if threads < 1:
        raise ValueError("search threads must be >= 1")
    _search_threads = threads


def search_threads() -> int:
    return _search_threads


@contextmanager
def searching() -> Iterator[None]:
    """The calling thread's OpenMP thread count at `search_threads()` for one call, restored
    after it (the same thread may build an index later, which wants every core)."""
    before = int(faiss.omp_get_max_threads())
    if before != _search_threads:
        faiss.omp_set_num_threads(_search_threads)
    try:
        yield
    finally:
        if before != _search_threads:
            faiss.omp_set_num_threads(before)


def faiss_selector(selection: ChunkSelection | None) -> Any:
    if selection is None or selection.is_everything:
        return None
    if selection.allow is not None:
        return faiss.IDSelectorBatch(np.ascontiguousarray(selection.allow, dtype=np.int64))
    assert selection.deny is not None
    inner = faiss.IDSelectorBatch(np.ascontiguousarray(selection.deny, dtype=np.int64))
    selector = faiss.IDSelectorNot(inner)
    selector.referenced_inner = inner  # keep the wrapped selector alive as long as the outer
    return selector


class FaissIndex:
    def __init__(
        self,
        dim: int,
        index: Any = None,
        kind: Kind = "flat",
        hnsw: HnswParams | None = None,
        mapped: bool = False,
    ) -> None:
        self._dim = dim
        self.mapped = mapped
        """True when `index` views a memory-mapped file: read-only."""
        self._kind: Kind = kind
        self.hnsw = hnsw or HnswParams()
        if index is None:
            if kind == "hnsw":
                inner = faiss.IndexHNSWFlat(dim, self.hnsw.m, faiss.METRIC_INNER_PRODUCT)
                inner.hnsw.efConstruction = self.hnsw.ef_construction
            else:
                inner = faiss.IndexFlatIP(dim)
            index = faiss.IndexIDMap2(inner)
        self._index = index
        self._sorted_ids: IdArray | None = None

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def kind(self) -> str:
        return f"faiss-idmap2-{'hnsw' if self._kind == 'hnsw' else 'flat'}-ip"

    @property
    def params(self) -> dict[str, int]:
        if self._kind != "hnsw":
            return {}
        return {
            "M": self.hnsw.m,
            "efConstruction": self.hnsw.ef_construction,
            "efSearch": self.hnsw.ef_search,
        }

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def with_ef_search(self, ef_search: int) -> FaissIndex:
        """The same FAISS index (shared, not copied) searched with another efSearch; its
        `params`, published in the manifest, say so."""
        tuned = replace(self.hnsw, ef_search=ef_search)
        return FaissIndex(self._dim, self._index, kind=self._kind, hnsw=tuned, mapped=self.mapped)

    def _writable(self) -> None:
        if self.mapped:
            raise ValueError("a loaded (memory-mapped) index is read-only; build a new one")

    def add(self, ids: IdArray, vectors: Vectors) -> None:
        self._writable()
        if len(ids) != len(vectors):
            raise ValueError("ids and vectors differ in length")
        if len(ids):
            self._index.add_with_ids(
                np.ascontiguousarray(vectors, dtype=np.float32),
                np.ascontiguousarray(ids, dtype=np.int64),
            )
            self._sorted_ids = None

    def remove(self, ids: IdArray) -> int:
        self._writable()
        self._sorted_ids = None
        return int(self._index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64)))

    def ids(self) -> IdArray:
        return np.asarray(faiss.vector_to_array(self._index.id_map), dtype=np.int64)

    def _present(self, ids: IdArray) -> IdArray:
        """The subset of `ids` this index holds (sorted id array cached per index)."""
        if self._sorted_ids is None:
            self._sorted_ids = np.sort(self.ids())
        known = self._sorted_ids
        positions = np.searchsorted(known, ids)
        positions[positions >= len(known)] = 0
        return ids[known[positions] == ids] if len(known) else ids[:0]

    def search(
        self, queries: Vectors, k: int, selection: ChunkSelection | None = None
    ) -> tuple[Scores, IdArray]:
        k = max(1, min(k, max(len(self), 1)))
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self._kind == "hnsw":
            allow = selection.allow if selection is not None else None
            if allow is not None and len(allow) <= max(EXACT_SUBSET_MAX, len(self) // 20):
                return self._exact_subset(queries, k, np.asarray(allow, dtype=np.int64))
            params = faiss.SearchParametersHNSW(efSearch=max(self.hnsw.ef_search, k))
            selector = faiss_selector(selection)
            if selector is not None:
                params.sel = selector
        else:
            selector = faiss_selector(selection)
            params = faiss.SearchParameters(sel=selector) if selector is not None else None
        with searching():
            scores, ids = self._index.search(queries, k, params=params)
        scores[ids < 0] = -np.inf
        return scores.astype(np.float32), ids.astype(np.int64)

    def _exact_subset(self, queries: Vectors, k: int, allow: IdArray) -> tuple[Scores, IdArray]:
        present = self._present(np.unique(allow))
        out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_ids = np.full((len(queries), k), -1, dtype=np.int64)
        if len(present) == 0:
            return out_scores, out_ids
        sims = queries @ self.reconstruct(present).T
        top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        width = top.shape[1]
        out_scores[:, :width] = np.take_along_axis(sims, top, axis=1)
        out_ids[:, :width] = present[top]
        return out_scores, out_ids

    def reconstruct(self, ids: IdArray) -> Vectors:
        if len(ids) == 0:
            return np.zeros((0, self._dim), dtype=np.float32)
        with searching():
            out = self._index.reconstruct_batch(np.ascontiguousarray(ids, dtype=np.int64))
        return np.asarray(out, dtype=np.float32)

    def save(self, path: Path) -> None:
        faiss.write_index(self._index, str(path))

    @classmethod
    def load(cls, path: Path, hnsw: HnswParams | None = None) -> FaissIndex:
        try:
            index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)
        except RuntimeError as exc:
            raise CorruptArtifact(f"cannot read FAISS index {path}: {exc}") from exc
        inner = faiss.downcast_index(index.index)
        kind: Kind = "hnsw" if isinstance(inner, faiss.IndexHNSWFlat) else "flat"
        return cls(int(index.d), index, kind=kind, hnsw=hnsw, mapped=True)
