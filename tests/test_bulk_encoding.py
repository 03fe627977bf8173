"""The rebuild's embedding step behind `PassageEncoder`: any encoder that hands back each asked
hash once, in any order, gives the same generation as the local path; one that lies is refused
before anything is published; vectors are cached batch by batch as they arrive."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pytest

from service.embedding.base import Vectors
from service.embedding.bulk import LocalEncoder, Passage
from service.embedding.fake import FakeEmbedder
from service.errors import CorruptArtifact, ModelUnavailable
from service.reindex import EMBED_BATCH, Reindexer
from service.runtime import Runtime
from tests.factories import make_actor

SHARED = "Offshore wind turbine blades made of recycled carbon fibre."


def seed(runtime: Runtime, actors: int = 300) -> None:
    """Enough chunks for several store batches, with one text shared across all of them."""
    items = [
        make_actor(f"a{i}", [f"Laser welding station {i} for aluminium car bodies.", SHARED])
        for i in range(actors)
    ]
    runtime.store.upsert_actors(runtime.ingestor.prepare(items))


class Reversed:
    """The local embedder, batches handed back last first (as a cluster may finish them)."""

    def __init__(self, embedder: FakeEmbedder, batch_size: int = 50) -> None:
        self.inner = LocalEncoder(embedder, batch_size)
        self.asked: list[int] = []

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    def encode(self, passages: Sequence[Passage]) -> Iterator[tuple[list[str], Vectors]]:
        self.asked.append(len(passages))
        yield from reversed(list(self.inner.encode(passages)))


class Lossy(Reversed):
    """Drops the last passage of the last batch, after the first batches went through."""

    def encode(self, passages: Sequence[Passage]) -> Iterator[tuple[list[str], Vectors]]:
        batches = list(self.inner.encode(passages))
        yield from batches[:-1]
        hashes, vectors = batches[-1]
        yield hashes[:-1], vectors[:-1]


def generation_vectors(runtime: Runtime) -> dict[int, np.ndarray]:
    loaded = runtime.generations.load(model_id="fake/hashing-bow", dim=64)
    assert loaded is not None
    ids = np.asarray(loaded.readmodel.chunk_ids)
    return dict(zip(ids.tolist(), loaded.index.reconstruct(ids), strict=True))


def test_an_encoder_returning_batches_out_of_order_builds_the_local_generation(
    runtime: Runtime, tmp_path_factory: pytest.TempPathFactory
) -> None:
    seed(runtime)
    chunks = runtime.store.counts().chunks
    assert chunks > 2 * EMBED_BATCH, "the snapshot spans several store batches"
    reference = runtime.reindexer.run(full=True)
    expected = generation_vectors(runtime)

    embedder = FakeEmbedder()
    encoder = Reversed(embedder)
    done: list[int] = []
    reindexer = Reindexer(runtime.store, embedder, runtime.generations, encoder=encoder)
    report = reindexer.run(full=True, progress=done.append)

    assert encoder.asked == [chunks - 300 + 1], "the shared text is asked for once"
    assert embedder.texts_embedded == chunks - 299
    assert (report.embedded, report.reused) == (reference.embedded, reference.reused)
    assert sum(done) == chunks, "progress counts every chunk once"
    got = generation_vectors(runtime)
    assert got.keys() == expected.keys()
    assert all(np.array_equal(got[i], expected[i]) for i in expected)


def test_only_what_the_cache_lacks_goes_to_the_encoder(runtime: Runtime) -> None:
    seed(runtime, actors=40)
    runtime.reindexer.run()
    runtime.store.upsert_actors(runtime.ingestor.prepare([make_actor("new", ["Hydrogen valves."])]))
    encoder = Reversed(FakeEmbedder())
    report = Reindexer(runtime.store, FakeEmbedder(), runtime.generations, encoder=encoder).run()
    assert encoder.asked == [1] and report.embedded == 1
    assert report.reused == runtime.store.counts().chunks - 1


def test_an_encoder_of_another_model_is_refused(runtime: Runtime) -> None:
    seed(runtime, actors=5)
    other = LocalEncoder(FakeEmbedder(model_id="fake/other"), 8)
    reindexer = Reindexer(runtime.store, FakeEmbedder(), runtime.generations, encoder=other)
    with pytest.raises(ModelUnavailable, match="fake/other"):
        reindexer.run()
    assert runtime.generations.current_id() is None


def test_a_missing_vector_publishes_nothing_but_keeps_the_batches_that_arrived(
    runtime: Runtime,
) -> None:
    seed(runtime, actors=120)
    encoder = Lossy(FakeEmbedder(), batch_size=50)
    reindexer = Reindexer(runtime.store, FakeEmbedder(), runtime.generations, encoder=encoder)
    with pytest.raises(CorruptArtifact, match="no vector for 1 passages"):
        reindexer.run()
    assert runtime.generations.current_id() is None
    retry = FakeEmbedder()
    report = Reindexer(runtime.store, retry, runtime.generations).run()
    assert report.embedded == 1 and retry.texts_embedded == 1, "the rest was cached"
