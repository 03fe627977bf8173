"""Generations: atomic publish, refusal of another model's index, checksum, pruning, debris."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.domain import ActorSummary
from service.errors import CorruptArtifact, IndexMismatch
from service.index.faiss_index import FaissIndex
from service.index.generations import GenerationStore, Manifest
from service.index.readmodel import ReadModel
from service.store import StoredChunk

FIELDS = {
    "model_id": "m/one",
    "actors": 1,
    "watermark": 3,
    "built_at": "2026-01-01T00:00:00+00:00",
    "build_seconds": 0.1,
}


def small_index() -> FaissIndex:
    index = FaissIndex(4)
    index.add(np.arange(1, 4, dtype=np.int64), np.eye(4, dtype=np.float32)[:3])
    return index


def small_readmodel() -> ReadModel:
    chunks = [
        StoredChunk(i, "a", "d", "description", "public", 0, f"text {i}", f"h{i}", "en")
        for i in range(1, 4)
    ]
    summary = ActorSummary("a", "A", "company", "AT", None, ())
    return ReadModel.build(chunks, np.eye(4, dtype=np.float32)[:3], {"a": summary}, 4)


def publish(store: GenerationStore) -> Manifest:
    return store.publish(small_index(), small_readmodel(), **FIELDS)


def test_publish_then_load(tmp_path: Path) -> None:
    store = GenerationStore(tmp_path)
    manifest = publish(store)
    assert store.current_id() == manifest.generation
    loaded = store.load(model_id="m/one", dim=4)
    assert loaded is not None and len(loaded.index) == 3 and loaded.manifest.chunks == 3
    assert loaded.readmodel.actor_ids == ("a",) and len(loaded.readmodel.chunk_ids) == 3


def test_tampered_read_model_fails_checksum(tmp_path: Path) -> None:
    store = GenerationStore(tmp_path)
    manifest = publish(store)
    path = tmp_path / "generations" / manifest.generation / "readmodel" / "strings.json"
    path.write_text(path.read_text().replace('"a"', '"b"'))
    with pytest.raises(CorruptArtifact, match="read model"):
        store.load(model_id="m/one", dim=4)


def test_nothing_published_loads_none(tmp_path: Path) -> None:
    assert GenerationStore(tmp_path).load(model_id="m/one", dim=4) is None


@pytest.mark.parametrize(("model_id", "dim"), [("m/other", 4), ("m/one", 8)])
def test_mismatch_refused_with_clear_error(tmp_path: Path, model_id: str, dim: int) -> None:
    store = GenerationStore(tmp_path)
    publish(store)
    with pytest.raises(IndexMismatch, match="clustermatch reindex"):
        store.load(model_id=model_id, dim=dim)


def test_tampered_index_fails_checksum(tmp_path: Path) -> None:
    store = GenerationStore(tmp_path)
    manifest = publish(store)
    path = tmp_path / "generations" / manifest.generation / "index.faiss"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip one byte inside the vectors
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptArtifact, match="checksum"):
        store.load(model_id="m/one", dim=4)


def test_an_sq8_generation_checks_and_serves_its_float_vectors(tmp_path: Path) -> None:
    store = GenerationStore(tmp_path)
    index = FaissIndex(4, kind="hnsw-sq8")
    index.add(np.arange(1, 4, dtype=np.int64), np.eye(4, dtype=np.float32)[:3])
    manifest = store.publish(index, small_readmodel(), **FIELDS)
    assert manifest.vectors_checksum and manifest.index_kind == "faiss-idmap-hnsw-sq8-ip"
    loaded = store.load(model_id="m/one", dim=4)
    assert loaded is not None
    assert np.array_equal(loaded.index.reconstruct(np.array([2])), np.eye(4)[1:2])
    path = tmp_path / "generations" / manifest.generation / "index.vectors.npy"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # one byte of the last vector
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptArtifact, match="vectors of generation"):
        store.load(model_id="m/one", dim=4)


def test_prune_keeps_newest_and_debris_is_cleaned(tmp_path: Path) -> None:
    store = GenerationStore(tmp_path, keep=2)
    (tmp_path / "generations" / ".tmp-killed-build").mkdir(parents=True)
    published = [publish(store).generation for _ in range(4)]
    assert store.list_ids() == sorted(published)[-2:]
    assert store.current_id() == published[-1]
    assert not (tmp_path / "generations" / ".tmp-killed-build").exists()
