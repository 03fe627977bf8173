"""The boundary every vector index implements, and the id selection searches accept."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

IdArray = npt.NDArray[np.int64]
Vectors = npt.NDArray[np.float32]
Scores = npt.NDArray[np.float32]


@dataclass(frozen=True)
class ChunkSelection:
    """Which ids a search may return: only those in `allow` when given, never those in `deny`.

    Both None means every id. Applied inside the search (FAISS `IDSelector`), so a filtered search
    still returns k hits whenever k eligible vectors exist.
    """

    allow: IdArray | None = None
    deny: IdArray | None = None

    @property
    def is_everything(self) -> bool:
        return self.allow is None and (self.deny is None or len(self.deny) == 0)


class VectorIndex(Protocol):
    """Inner-product search over L2-normalised vectors with caller-chosen int64 ids."""

    @property
    def dim(self) -> int: ...

    @property
    def kind(self) -> str:
        """A short name recorded in the manifest, e.g. `flat-ip`."""
        ...

    def __len__(self) -> int: ...

    def add(self, ids: IdArray, vectors: Vectors) -> None: ...

    def remove(self, ids: IdArray) -> int: ...

    def ids(self) -> IdArray: ...

    def search(
        self,
        queries: Vectors,
        k: int,
        selection: ChunkSelection | None = None,
        exact_scores: bool = True,
    ) -> tuple[Scores, IdArray]:
        """Top-k per query, best first; rows are padded with id -1 and score -inf. With
        `exact_scores=False` an index that finds its candidates over compressed vectors may
        return their compressed scores (errors ~1e-3) instead of reading the exact vectors: for
        a caller that scores what it keeps exactly itself (the ranking's first stage)."""
        ...

    def reconstruct(self, ids: IdArray, exact: bool = True) -> Vectors:
        """The stored vectors of `ids` (every id must be present). With `exact=False` an index
        over compressed vectors may return them decoded (errors ~1e-3 per coordinate sum) instead
        of reading the floats: for scoring many candidates, not for vectors that leave it."""
        ...

    def save(self, path: Path) -> None: ...
