"""Nearest profile vectors: the candidate source of actor matching that looks at every actor.

Actor matching asks which eligible actors' profile vectors (the mean of their passages' vectors,
`ReadModel.profile`) are nearest the query's. Exactly, that is one matrix-vector product over
every actor row: at 100,000 chunks (64,000 actors) it reads 98 MB per request, the largest single
cost of a match (BENCHMARKS.md), and it grows with the catalogue. So:

- up to `EXACT_ROWS` eligible rows the scan stays exact (a gather of the eligible rows only: a
  filter that admits few actors makes it cheap at any size);
- beyond, a generation of more than `EXACT_ROWS` actors carries an HNSW graph over its profile
  vectors, built once at publish time beside the read model (`readmodel/profile.faiss`,
  memory-mapped like the chunk index), searched with the eligibility mask as a FAISS selector.
  The graph holds the vectors as 8-bit scalar-quantised codes (`IndexHNSWSQ`, 384 bytes per
  actor), not as a second float copy of `profile.npy` (1,536 bytes per actor: ~1 GiB at 663k
  actors, on top of the read model's own copy); it over-fetches `OVERFETCH` times the asked
  candidates and rescores them exactly from `profile`, so the scores returned are exact cosines
  and only *which* actors are found is approximate (recall measured in BENCHMARKS.md).

Visibility: the graph holds the vectors over *every* passage. A row whose passages the viewer
may not all count (`levels < row_reach`) is never taken from the graph: it is scored exactly
with the vector over what counts for that viewer, so hidden text never makes an actor a
candidate (the rule of service.ranking).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from service.index.base import ChunkSelection
from service.index.filerows import FileRows

EXACT_ROWS = 20_000
"""Eligible rows up to this many are scored exactly; a generation with more actors gets a graph."""
M, EF_CONSTRUCTION, EF_SEARCH = 16, 100, 128
"""Smaller than the chunk index's (32/200/128): one vector per actor, built at every publish."""
OVERFETCH = 2
"""Graph candidates fetched per candidate wanted, then rescored exactly: the 8-bit codes rank
near-ties (errors ~1e-3 of cosine) a little differently from the float vectors."""
FILE = "profile.faiss"

Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


class ProfileGraph:
    """An HNSW graph over the profile rows (FAISS ids = rows), searched by candidates only: the
    scores come from the float profile vectors the caller passes."""

    def __init__(self, index: Any, mapped: bool = False) -> None:
        self._index = index
        self.mapped = mapped
        """True when loaded from a generation's file (memory-mapped, read-only)."""

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def candidates(self, query: Floats, k: int, selection: ChunkSelection | None) -> Ints:
        """Up to `k` rows near `query` among the selected ones, by the graph's own scores."""
        from service.index.faiss_index import faiss, faiss_selector, searching

        k = max(1, min(k, len(self)))
        params = faiss.SearchParametersHNSW(efSearch=max(EF_SEARCH, k))
        selector = faiss_selector(selection)
        if selector is not None:
            params.sel = selector
        with searching():  # the configured OpenMP threads in this (request) thread
            _, found = self._index.search(np.ascontiguousarray(query[None, :]), k, params=params)
        rows: Ints = found[0][found[0] >= 0].astype(np.int64)
        return rows

    def save(self, path: Path) -> None:
        from service.index.faiss_index import faiss

        faiss.write_index(self._index, str(path))


def build(profile: Floats) -> ProfileGraph | None:
    """The graph over every row's profile vector (ids = rows), or None when exact is cheap."""
    if len(profile) <= EXACT_ROWS:
        return None
    from service.index.faiss_index import faiss

    vectors = np.ascontiguousarray(profile, dtype=np.float32)
    index = faiss.IndexHNSWSQ(
        profile.shape[1], faiss.ScalarQuantizer.QT_8bit, M, faiss.METRIC_INNER_PRODUCT
    )
    index.hnsw.efConstruction = EF_CONSTRUCTION
    index.train(vectors)  # the per-dimension ranges of the 8-bit codes
    index.add(vectors)
    return ProfileGraph(index)


def load(folder: Path) -> ProfileGraph | None:
    """The generation's graph, memory-mapped (a read model from before the 8-bit graph lacks
    the side tables too, so it is rebuilt from the store and never pairs with an old graph)."""
    from service.errors import CorruptArtifact
    from service.index.faiss_index import faiss

    path = folder / FILE
    if not path.is_file():
        return None
    try:
        index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)
    except RuntimeError as exc:
        raise CorruptArtifact(f"cannot read the profile graph {path}: {exc}") from exc
    return ProfileGraph(index, mapped=True)


def nearest(
    graph: ProfileGraph | None,
    profile: Floats | FileRows,
    eligible: Bools,
    query: Floats,
    k: int,
) -> tuple[Ints, Floats]:
    """The `k` eligible rows whose `profile` row is nearest `query` (rows, cosines; best first).
    `profile` is read only for the rows scored: every eligible one when exact, else the graph's
    candidates."""
    rows = np.flatnonzero(eligible)
    if not len(rows) or k <= 0:
        return rows[:0], np.zeros(0, dtype=np.float32)
    if graph is None or len(rows) <= max(EXACT_ROWS, len(eligible) // 20):
        # few eligible rows: a gather of those is cheaper than a filtered graph walk, and exact
        scores: Floats = np.asarray(profile[rows] @ query, dtype=np.float32)
        return _best(rows, scores, k)
    ineligible = int(len(eligible) - len(rows))
    selection = (
        None
        if ineligible == 0
        else ChunkSelection(deny=np.flatnonzero(~eligible).astype(np.int64))
        if ineligible <= len(rows)
        else ChunkSelection(allow=rows.astype(np.int64))
    )
    found = graph.candidates(query, OVERFETCH * k, selection)
    found = np.sort(found)  # rows in order: the gather reads forward, ties as exact
    exact: Floats = np.asarray(profile[found] @ query, dtype=np.float32)
    return _best(found, exact, k)


def _best(rows: Ints, scores: Floats, k: int) -> tuple[Ints, Floats]:
    if len(rows) > k:
        part = np.argpartition(-scores, k - 1)[:k]
        rows, scores = rows[part], scores[part]
    order = np.lexsort((rows, -scores))
    return rows[order], scores[order]
