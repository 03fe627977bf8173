"""The profile store: actors, documents, chunks and cached chunk vectors."""

from service.store.base import (
    ActorFilter,
    ActorPage,
    ChunkDraft,
    FreshChunks,
    ProfileStore,
    SameAttribute,
    StoreCounts,
    StoredChunk,
)
from service.store.sql import SqlProfileStore

__all__ = [
    "ActorFilter",
    "ActorPage",
    "ChunkDraft",
    "FreshChunks",
    "ProfileStore",
    "SameAttribute",
    "SqlProfileStore",
    "StoreCounts",
    "StoredChunk",
]
