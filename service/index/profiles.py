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
  HNSW stores the vectors themselves, so the scores it returns are exact cosines; only *which*
  actors are found is approximate (recall measured in BENCHMARKS.md).

Visibility: the graph holds the vectors over *every* passage. A row whose passages the viewer
may not all count (`levels < row_reach`) is never taken from the graph: it is scored exactly
with the vector over what counts for that viewer, so hidden text never makes an actor a
candidate (the rule of service.ranking).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from service.index.base import ChunkSelection

if TYPE_CHECKING:  # faiss is imported on first use, not with the read model
    from service.index.faiss_index import FaissIndex

EXACT_ROWS = 20_000
"""Eligible rows up to this many are scored exactly; a generation with more actors gets a graph."""
M, EF_CONSTRUCTION, EF_SEARCH = 16, 100, 128
"""Smaller than the chunk index's (32/200/128): one vector per actor, built at every publish."""
FILE = "profile.faiss"

Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


def build(profile: Floats) -> FaissIndex | None:
    """The graph over every row's profile vector (ids = rows), or None when exact is cheap."""
    if len(profile) <= EXACT_ROWS:
        return None
    from service.index.faiss_index import FaissIndex, HnswParams

    index = FaissIndex(
        profile.shape[1], kind="hnsw", hnsw=HnswParams(M, EF_CONSTRUCTION, EF_SEARCH)
    )
    index.add(np.arange(len(profile), dtype=np.int64), np.ascontiguousarray(profile))
    return index


def load(folder: Path) -> FaissIndex | None:
    from service.index.faiss_index import FaissIndex, HnswParams

    path = folder / FILE
    if not path.is_file():
        return None
    return FaissIndex.load(path, hnsw=HnswParams(M, EF_CONSTRUCTION, EF_SEARCH))


def nearest(
    graph: FaissIndex | None,
    profile: Floats,
    eligible: Bools,
    query: Floats,
    k: int,
) -> tuple[Ints, Floats]:
    """The `k` eligible rows whose `profile` row is nearest `query` (rows, cosines; best first).
    `profile` is read only for the rows scored exactly."""
    rows = np.flatnonzero(eligible)
    if not len(rows) or k <= 0:
        return rows[:0], np.zeros(0, dtype=np.float32)
    if graph is None or len(rows) <= EXACT_ROWS:
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
    found_scores, found = graph.search(query[None, :], k, selection)
    keep = found[0] >= 0
    return _best(found[0][keep], found_scores[0][keep], k)  # ties in row order, as exact


def _best(rows: Ints, scores: Floats, k: int) -> tuple[Ints, Floats]:
    if len(rows) > k:
        part = np.argpartition(-scores, k - 1)[:k]
        rows, scores = rows[part], scores[part]
    order = np.lexsort((rows, -scores))
    return rows[order], scores[order]
