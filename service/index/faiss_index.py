"""FAISS backend behind `IndexIDMap2` (stable int64 ids): exact inner product, or HNSW when big.

- `flat`: `IndexFlatIP`, exact; the default while exact search is cheap.
- `hnsw-sq8`: what large generations get. `IndexHNSWSQ` behind `IndexIDMap` (no reverse id map:
  it reconstructs from its own rows and codes): the graph walks over 8-bit scalar-quantised
  codes (384 bytes per vector instead of 1,536), and the float vectors lie beside it in
  `<index>.vectors.npy`, rows in sorted-id order, read by rows with `pread` (`FileRows`), never
  mapped. Why: a graph walk touches vectors all over the index, so within a few dozen searches
  every page of the mapped file is resident; with float vectors in the graph that was 1.7 GB at
  1M chunks (BENCHMARKS.md, session 9). By default what leaves the index is exact: a search's
  candidates are rescored with the floats (only *which* vectors are found is approximate, and
  the build's recall probe measures that) and `reconstruct` returns the floats. The ranking,
  which scores many candidates' chunks, asks for the codes instead (`exact_scores=False`,
  `reconstruct(..., exact=False)`: decoded in C, within ~1e-3 of the float cosine), because a
  `pread` per candidate cost 16% of a search's CPU (BENCHMARKS.md, session 10).
- `hnsw`: `IndexHNSWFlat`, float vectors in the graph: what generations before `hnsw-sq8`
  hold; still loaded and searched.

`efSearch` is passed per call (`SearchParametersHNSW`), never set on the shared index, so
concurrent searches never race. A graph search restricted to a small allow-list can miss
eligible vectors, so such filtered searches run exactly over the allowed vectors instead:
filters still fill `limit`.

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
import numpy.typing as npt

from service.errors import CorruptArtifact
from service.index.base import ChunkSelection, IdArray, Scores, Vectors
from service.index.filerows import FileRows

# faiss's SWIG-generated stubs describe the C++ signatures, not the numpy wrappers Python calls
# (e.g. `remove_ids(array)`); typing it as Any keeps mypy honest about our own code only.
faiss: Any = _faiss

Kind = Literal["flat", "hnsw", "hnsw-sq8"]
_search_threads = 1
EXACT_SUBSET_MAX = 20_000
"""Allow-lists up to this size (or 5% of an HNSW index) are searched exactly over their vectors."""
OVERFETCH = 2
"""`hnsw-sq8` takes up to this many graph candidates per result asked (never more than the
walk's beam, `efSearch`, holds anyway) and keeps the best by exact score: the 8-bit codes
order near-ties (cosine errors ~1e-3) a little differently from the floats."""
VECTORS_SUFFIX = ".vectors.npy"


def vectors_path(index_path: Path) -> Path:
    """Where an `hnsw-sq8` index keeps its float vectors: `index.faiss` -> `index.vectors.npy`."""
    return index_path.with_suffix(VECTORS_SUFFIX)


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
        rows: Vectors | FileRows | None = None,
    ) -> None:
        self._dim = dim
        self.mapped = mapped
        """True when `index` views a memory-mapped file: read-only."""
        self._kind: Kind = kind
        self.hnsw = hnsw or HnswParams()
        if index is None:
            if kind == "hnsw-sq8":
                inner = faiss.IndexHNSWSQ(
                    dim, faiss.ScalarQuantizer.QT_8bit, self.hnsw.m, faiss.METRIC_INNER_PRODUCT
                )
                inner.hnsw.efConstruction = self.hnsw.ef_construction
            elif kind == "hnsw":
                inner = faiss.IndexHNSWFlat(dim, self.hnsw.m, faiss.METRIC_INNER_PRODUCT)
                inner.hnsw.efConstruction = self.hnsw.ef_construction
            else:
                inner = faiss.IndexFlatIP(dim)
            # IDMap2 keeps a reverse map (id -> position: ~50 MiB of heap per worker at 1M)
            # for `reconstruct`; an 8-bit index reconstructs from its float rows instead.
            index = faiss.IndexIDMap(inner) if kind == "hnsw-sq8" else faiss.IndexIDMap2(inner)
        self._index = index
        self._sorted_ids: IdArray | None = None
        self._rows: Vectors | FileRows | None = rows
        """`hnsw-sq8`: the float vectors, one row per id in sorted-id order."""
        self._codes: tuple[Any, npt.NDArray[np.uint8], IdArray | None] | None = None
        """`hnsw-sq8`: its quantiser, a view of the (mapped) codes, and each sorted id's
        position among them where the ids were not added in order (`_coded`)."""
        if kind == "hnsw-sq8" and rows is None:
            self._rows = np.zeros((0, dim), dtype=np.float32)

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def kind(self) -> str:
        idmap = "idmap" if self._kind == "hnsw-sq8" else "idmap2"
        return f"faiss-{idmap}-{self._kind}-ip"

    @property
    def params(self) -> dict[str, int]:
        if self._kind == "flat":
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
        return FaissIndex(
            self._dim, self._index, self._kind, tuned, mapped=self.mapped, rows=self._rows
        )

    def _writable(self) -> None:
        if self.mapped:
            raise ValueError("a loaded (memory-mapped) index is read-only; build a new one")

    def add(self, ids: IdArray, vectors: Vectors) -> None:
        self._writable()
        if len(ids) != len(vectors):
            raise ValueError("ids and vectors differ in length")
        if len(ids):
            floats = np.ascontiguousarray(vectors, dtype=np.float32)
            ids = np.ascontiguousarray(ids, dtype=np.int64)
            if self._kind == "hnsw-sq8":
                if not self._index.is_trained:
                    # The 8-bit codes' per-dimension ranges come from the first batch: a build
                    # adds every vector at once (service.reindex); later values outside the
                    # ranges are clipped (exact searches rescore with the floats anyway).
                    self._index.train(floats)
                everything = np.concatenate([self.ids(), ids])
                rows = np.concatenate([np.asarray(self._rows), floats])
                order = np.argsort(everything, kind="stable")
                self._rows = np.ascontiguousarray(rows[order])
            self._index.add_with_ids(floats, ids)
            self._sorted_ids = None
            self._codes = None

    def remove(self, ids: IdArray) -> int:
        self._writable()
        if self._kind != "flat":
            raise ValueError("an HNSW index cannot remove vectors; build a new one")
        self._sorted_ids = None
        return int(self._index.remove_ids(np.ascontiguousarray(ids, dtype=np.int64)))

    def ids(self) -> IdArray:
        return np.asarray(faiss.vector_to_array(self._index.id_map), dtype=np.int64)

    def _known(self) -> IdArray:
        """Every id, sorted (cached per index: 8 bytes per vector)."""
        if self._sorted_ids is None:
            self._sorted_ids = np.sort(self.ids())
        return self._sorted_ids

    def _coded(self) -> tuple[Any, npt.NDArray[np.uint8], IdArray | None]:
        """An `hnsw-sq8` index's quantiser and codes (a view, not a copy: the mapped file's)."""
        if self._codes is None:
            storage = faiss.downcast_index(faiss.downcast_index(self._index.index).storage)
            n, size = int(storage.ntotal), int(storage.code_size)
            codes = faiss.rev_swig_ptr(storage.codes.data(), n * size).reshape(n, size)
            added = self.ids()  # codes are in the order the ids were added
            order = None if bool(np.all(added[1:] > added[:-1])) else np.argsort(added)
            self._codes = (storage, codes, order)
        return self._codes

    def _present(self, ids: IdArray) -> IdArray:
        """The subset of `ids` this index holds."""
        known = self._known()
        positions = np.searchsorted(known, ids)
        positions[positions >= len(known)] = 0
        return ids[known[positions] == ids] if len(known) else ids[:0]

    def search(
        self,
        queries: Vectors,
        k: int,
        selection: ChunkSelection | None = None,
        exact_scores: bool = True,
    ) -> tuple[Scores, IdArray]:
        k = max(1, min(k, max(len(self), 1)))
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self._kind != "flat":
            allow = selection.allow if selection is not None else None
            if allow is not None and len(allow) <= max(EXACT_SUBSET_MAX, len(self) // 20):
                allowed = np.asarray(allow, dtype=np.int64)
                return self._exact_subset(queries, k, allowed, exact_scores)
        if self._kind == "hnsw-sq8" and exact_scores:
            return self._rescored(queries, k, selection)
        if self._kind != "flat":  # hnsw: exact scores; hnsw-sq8: the codes' scores
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

    def _rescored(
        self, queries: Vectors, k: int, selection: ChunkSelection | None
    ) -> tuple[Scores, IdArray]:
        """The graph's candidates by their 8-bit codes, then the best `k` by exact score."""
        ef = max(self.hnsw.ef_search, k)
        fetch = min(max(k, min(OVERFETCH * k, ef)), len(self))
        params = faiss.SearchParametersHNSW(efSearch=ef)
        selector = faiss_selector(selection)
        if selector is not None:
            params.sel = selector
        with searching():
            _, found = self._index.search(queries, fetch, params=params)
        out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_ids = np.full((len(queries), k), -1, dtype=np.int64)
        distinct = np.unique(found[found >= 0])
        if not len(distinct):
            return out_scores, out_ids
        sims = queries @ self.reconstruct(distinct).T  # (queries, distinct candidates)
        column = np.searchsorted(distinct, np.where(found >= 0, found, distinct[0]))
        exact = np.take_along_axis(sims, column, axis=1)
        exact[found < 0] = -np.inf
        top = np.argsort(-exact, axis=1, kind="stable")[:, :k]
        width = top.shape[1]
        out_scores[:, :width] = np.take_along_axis(exact, top, axis=1)
        out_ids[:, :width] = np.take_along_axis(found, top, axis=1)
        out_ids[out_scores == -np.inf] = -1
        return out_scores, out_ids

    def _exact_subset(
        self, queries: Vectors, k: int, allow: IdArray, exact_scores: bool = True
    ) -> tuple[Scores, IdArray]:
        present = self._present(np.unique(allow))
        out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_ids = np.full((len(queries), k), -1, dtype=np.int64)
        if len(present) == 0:
            return out_scores, out_ids
        sims = queries @ self.reconstruct(present, exact=exact_scores).T
        top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        width = top.shape[1]
        out_scores[:, :width] = np.take_along_axis(sims, top, axis=1)
        out_ids[:, :width] = present[top]
        return out_scores, out_ids

    def reconstruct(self, ids: IdArray, exact: bool = True) -> Vectors:
        if len(ids) == 0:
            return np.zeros((0, self._dim), dtype=np.float32)
        if self._rows is not None:  # hnsw-sq8
            wanted = np.asarray(ids, dtype=np.int64)
            known = self._known()
            positions = np.searchsorted(known, wanted).clip(max=max(len(known) - 1, 0))
            if not len(known) or not np.array_equal(known[positions], wanted):
                raise KeyError("reconstruct: an id is not in the index")
            if exact:  # the float rows, one pread per run of nearby rows
                return np.asarray(self._rows[positions], dtype=np.float32)
            # The codes, decoded in C: ~20 us for 150 chunks where the preads of their floats
            # took ~150 us (under load, 16% of a search's CPU: BENCHMARKS.md, session 10).
            quantiser, codes, order = self._coded()
            at = positions if order is None else order[positions]
            with searching():  # sa_decode is an OpenMP loop: one thread, as every search
                decoded = quantiser.sa_decode(np.ascontiguousarray(codes[at]))
            return np.asarray(decoded, dtype=np.float32)
        with searching():
            out = self._index.reconstruct_batch(np.ascontiguousarray(ids, dtype=np.int64))
        return np.asarray(out, dtype=np.float32)

    def save(self, path: Path) -> None:
        """Write the index to `path` (and, for `hnsw-sq8`, its float rows beside it)."""
        faiss.write_index(self._index, str(path))
        if self._rows is not None:
            np.save(vectors_path(path), np.asarray(self._rows, dtype=np.float32))

    @classmethod
    def load(cls, path: Path, hnsw: HnswParams | None = None) -> FaissIndex:
        try:
            index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)
        except RuntimeError as exc:
            raise CorruptArtifact(f"cannot read FAISS index {path}: {exc}") from exc
        inner = faiss.downcast_index(index.index)
        kind: Kind = (
            "hnsw-sq8"
            if isinstance(inner, faiss.IndexHNSWSQ)
            else "hnsw"
            if isinstance(inner, faiss.IndexHNSWFlat)
            else "flat"
        )
        rows = None
        if kind == "hnsw-sq8":
            try:
                rows = FileRows(vectors_path(path))
            except (OSError, ValueError) as exc:
                raise CorruptArtifact(f"cannot read the vectors of {path}: {exc}") from exc
            if rows.shape != (int(index.ntotal), int(index.d)) or rows.dtype != np.float32:
                raise CorruptArtifact(
                    f"{vectors_path(path).name} holds {rows.shape} {rows.dtype}, the index "
                    f"{index.ntotal} vectors of dim {index.d}"
                )
        return cls(int(index.d), index, kind=kind, hnsw=hnsw, mapped=True, rows=rows)
