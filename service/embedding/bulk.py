"""Embedding a rebuild's passages in bulk: the one step of a rebuild that a cluster can take over.

A rebuild first reads its snapshot and takes every vector the cache has; what is left are the
passages to embed, each content hash once. A `PassageEncoder` turns those into vectors and hands
them back batch by batch, so the rebuild commits each batch to the cache as it arrives (a killed
build loses at most one batch). `LocalEncoder` runs the service's own embedder in this process;
`service.embedding.ray_batch.RayEncoder` spreads the same work over a Ray cluster.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from service.embedding.base import Embedder, Vectors

Passage = tuple[str, str]
"""(content hash, text)."""


class PassageEncoder(Protocol):
    """Embeds passages (role "passage") with the model named `model_id`."""

    @property
    def model_id(self) -> str: ...

    def encode(self, passages: Sequence[Passage]) -> Iterator[tuple[list[str], Vectors]]:
        """Batches of (content hashes, their vectors), in any order, each hash exactly once."""
        ...


class LocalEncoder:
    """The embedder of this process, `batch_size` passages per step."""

    def __init__(self, embedder: Embedder, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.embedder = embedder
        self.batch_size = batch_size

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    def encode(self, passages: Sequence[Passage]) -> Iterator[tuple[list[str], Vectors]]:
        for start in range(0, len(passages), self.batch_size):
            part = passages[start : start + self.batch_size]
            yield [h for h, _ in part], self.embedder.embed([t for _, t in part], role="passage")
