"""One contract, every backend: FAISS must answer exactly like the numpy oracle."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from service.embedding.base import l2_normalise
from service.index.base import ChunkSelection, VectorIndex
from service.index.exact import ExactIndex
from service.index.faiss_index import FaissIndex, Kind
from service.index.filerows import FileRows

DIM = 16
BACKENDS: dict[str, Callable[[int], VectorIndex]] = {
    "faiss": FaissIndex,
    "faiss-hnsw": lambda dim: FaissIndex(dim, kind="hnsw"),
    "faiss-hnsw-sq8": lambda dim: FaissIndex(dim, kind="hnsw-sq8"),
    "exact": ExactIndex,
}


def clustered_vectors(n: int, seed: int = 0) -> np.ndarray:
    """Clustered, not uniform: real embeddings are clustered, and ties should be rare."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, DIM))
    points = centres[rng.integers(0, 8, n)] + 0.3 * rng.normal(size=(n, DIM))
    return l2_normalise(points)


@pytest.fixture(params=sorted(BACKENDS))
def index(request: pytest.FixtureRequest) -> VectorIndex:
    built = BACKENDS[request.param](DIM)
    built.add(np.arange(1000, 1200, dtype=np.int64), clustered_vectors(200))
    return built


def test_search_matches_oracle(index: VectorIndex) -> None:
    oracle = ExactIndex(DIM)
    oracle.add(np.arange(1000, 1200, dtype=np.int64), clustered_vectors(200))
    queries = clustered_vectors(5, seed=1)
    scores, ids = index.search(queries, 10)
    want_scores, want_ids = oracle.search(queries, 10)
    assert np.array_equal(ids, want_ids)
    assert np.allclose(scores, want_scores, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all(), "best first"


def test_allow_list_fills_k(index: VectorIndex) -> None:
    allowed = np.arange(1100, 1200, 7, dtype=np.int64)
    _, ids = index.search(clustered_vectors(3, seed=2), 10, ChunkSelection(allow=allowed))
    assert set(ids.ravel()) <= set(allowed)
    assert (ids >= 0).all(), "k eligible ids exist, so every row is full"


def test_deny_list_never_returned(index: VectorIndex) -> None:
    queries = clustered_vectors(3, seed=3)
    _, top = index.search(queries, 5)
    denied = np.unique(top)
    _, ids = index.search(queries, 5, ChunkSelection(deny=denied))
    assert not set(ids.ravel()) & set(denied)
    assert (ids >= 0).all()


def test_short_result_is_padded(index: VectorIndex) -> None:
    scores, ids = index.search(clustered_vectors(1), 5, ChunkSelection(allow=np.array([1003])))
    assert ids[0, 0] == 1003
    assert (ids[0, 1:] == -1).all() and np.isneginf(scores[0, 1:]).all()


def test_remove_and_reconstruct(index: VectorIndex) -> None:
    vectors = clustered_vectors(200)
    assert np.allclose(index.reconstruct(np.array([1005, 1010])), vectors[[5, 10]], atol=1e-6)
    if "hnsw" in index.kind:
        return  # HNSW graphs cannot remove; generations are immutable and never need to
    assert index.remove(np.array([1005, 99999])) == 1
    assert len(index) == 199 and 1005 not in set(index.ids())


def test_saved_faiss_index_loads_identically(tmp_path: Path) -> None:
    built = FaissIndex(DIM)
    built.add(np.arange(50, dtype=np.int64), clustered_vectors(50))
    built.save(tmp_path / "i.faiss")
    loaded = FaissIndex.load(tmp_path / "i.faiss")
    queries = clustered_vectors(4, seed=9)
    assert np.array_equal(loaded.search(queries, 5)[1], built.search(queries, 5)[1])


@pytest.mark.parametrize("kind", ["flat", "hnsw", "hnsw-sq8"])
def test_a_loaded_index_maps_its_file_and_refuses_writes(tmp_path: Path, kind: Kind) -> None:
    built = FaissIndex(DIM, kind=kind)
    vectors = clustered_vectors(300)
    built.add(np.arange(300, dtype=np.int64), vectors)
    path = tmp_path / f"{kind}.faiss"
    built.save(path)
    loaded = FaissIndex.load(path)
    maps = Path("/proc/self/maps")
    if maps.is_file():  # Linux: the file itself is mapped, so workers share its pages
        assert str(path) in maps.read_text()
    assert np.array_equal(loaded.reconstruct(np.array([3, 299])), vectors[[3, 299]])
    assert np.array_equal(loaded.search(vectors[:2], 3)[1], built.search(vectors[:2], 3)[1])
    with pytest.raises(ValueError, match="read-only"):
        loaded.add(np.array([1000], dtype=np.int64), vectors[:1])
    with pytest.raises(ValueError, match="read-only"):
        loaded.remove(np.array([3], dtype=np.int64))
    assert len(loaded) == 300


def test_an_sq8_index_maps_its_codes_and_reads_its_float_vectors_by_rows(tmp_path: Path) -> None:
    """The graph walks over 8-bit codes (the mapped file); what a caller gets back is exact:
    scores are the float inner products, `reconstruct` the float vectors, read with `pread`
    from the file beside the index (never mapped, so they never stay resident)."""
    vectors = clustered_vectors(3000, seed=6)
    ids = np.arange(10, 30010, 10, dtype=np.int64)[::-1].copy()  # added out of order
    built = FaissIndex(DIM, kind="hnsw-sq8")
    built.add(ids, vectors)
    path = tmp_path / "index.faiss"
    built.save(path)
    loaded = FaissIndex.load(path)
    assert loaded.kind == "faiss-idmap-hnsw-sq8-ip"
    import faiss

    assert type(loaded._index) is faiss.IndexIDMap, "no reverse map: the float rows reconstruct"
    floats = FaissIndex(DIM, kind="hnsw")
    floats.add(ids, vectors)
    floats.save(tmp_path / "floats.faiss")  # the same graph with float vectors in it
    saved = (tmp_path / "floats.faiss").stat().st_size - path.stat().st_size
    # one byte per dimension instead of four (the graphs' own sizes differ by a few bytes)
    assert abs(saved - len(ids) * DIM * 3) < 0.01 * len(ids) * DIM * 3
    maps = Path("/proc/self/maps")
    if maps.is_file():
        mapped = maps.read_text()
        assert str(path) in mapped and "index.vectors.npy" not in mapped
    assert np.array_equal(loaded.reconstruct(ids[[0, 7, 2999]]), vectors[[0, 7, 2999]])
    queries = clustered_vectors(4, seed=7)
    scores, found = loaded.search(queries, 10)
    exact = np.stack([loaded.reconstruct(row) @ q for q, row in zip(queries, found, strict=True)])
    assert np.allclose(scores, exact, atol=1e-6), "exact scores, not the codes'"
    assert (np.diff(scores, axis=1) <= 0).all()
    oracle = ExactIndex(DIM)
    oracle.add(ids, vectors)
    _, want = oracle.search(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, want, strict=True)])
    assert recall >= 0.9
    with pytest.raises(KeyError):
        loaded.reconstruct(np.array([11], dtype=np.int64))
    rows = loaded._rows
    assert isinstance(rows, FileRows)
    before = rows.reads
    coded, coded_ids = loaded.search(queries, 10, exact_scores=False)
    assert rows.reads == before, "the codes' scores read no float vector"
    exact_again = np.stack(
        [loaded.reconstruct(row) @ q for q, row in zip(queries, coded_ids, strict=True)]
    )
    assert np.abs(coded - exact_again).max() < 0.02 and not np.array_equal(coded, exact_again)
    some = ids[[5, 0, 2999, 1234]]  # the ids were added in descending order
    before = rows.reads
    decoded = loaded.reconstruct(some, exact=False)
    assert rows.reads == before, "decoded from the codes, no float read"
    assert np.abs(decoded - vectors[[5, 0, 2999, 1234]]).max() < 0.02
    assert np.allclose(decoded, built.reconstruct(some, exact=False), atol=1e-6)


def test_an_sq8_index_without_its_vectors_is_corrupt(tmp_path: Path) -> None:
    from service.errors import CorruptArtifact

    built = FaissIndex(DIM, kind="hnsw-sq8")
    built.add(np.arange(100, dtype=np.int64), clustered_vectors(100))
    built.save(tmp_path / "index.faiss")
    (tmp_path / "index.vectors.npy").unlink()
    with pytest.raises(CorruptArtifact, match="vectors"):
        FaissIndex.load(tmp_path / "index.faiss")


@pytest.mark.parametrize("kind", ["hnsw", "hnsw-sq8"])
def test_hnsw_with_a_small_allow_list_still_fills_k(kind: Kind) -> None:
    index = FaissIndex(DIM, kind=kind)
    index.add(np.arange(5000, dtype=np.int64), clustered_vectors(5000, seed=4))
    allowed = np.array([7, 1234, 4999, 999_999], dtype=np.int64)  # 999_999 is not in the index
    _, ids = index.search(clustered_vectors(2, seed=5), 3, ChunkSelection(allow=allowed))
    assert set(ids.ravel()) <= {7, 1234, 4999} and (ids >= 0).all()
    assert index.params == {"M": 32, "efConstruction": 200, "efSearch": 128}


@pytest.mark.parametrize("kind", ["flat", "hnsw"])  # hnsw-sq8 reconstructs outside FAISS
def test_search_runs_with_the_configured_openmp_threads_in_any_thread(kind: Kind) -> None:
    """OpenMP's thread count belongs to the calling thread: a server's request threads never saw
    a count set at start-up, kept one OpenMP thread per core and paid for their spinning. A
    search now runs with `search_threads()` in whichever thread calls it, and leaves that
    thread's own count (which a later build uses) as it was."""
    import threading

    import faiss

    from service.index import faiss_index

    rng = np.random.default_rng(5)
    index = FaissIndex(8, kind=kind)
    index.add(np.arange(50, dtype=np.int64), l2_normalise(rng.normal(size=(50, 8))))
    seen: dict[str, int] = {}
    inner = index._index
    search, reconstruct = inner.search, inner.reconstruct_batch

    class Spy:
        def __getattr__(self, name: str) -> object:
            return getattr(inner, name)

        def search(self, *args: object, **kwargs: object) -> object:
            seen["search"] = faiss.omp_get_max_threads()
            return search(*args, **kwargs)

        def reconstruct_batch(self, *args: object) -> object:
            seen["reconstruct"] = faiss.omp_get_max_threads()
            return reconstruct(*args)

    index._index = Spy()

    def request_thread() -> None:
        faiss.omp_set_num_threads(3)  # what a new thread may start with: not the setting
        index.search(l2_normalise(rng.normal(size=(1, 8))), 5)
        index.reconstruct(np.arange(3, dtype=np.int64))
        seen["after"] = faiss.omp_get_max_threads()

    faiss_index.set_search_threads(1)
    worker = threading.Thread(target=request_thread)
    worker.start()
    worker.join()
    assert seen == {"search": 1, "reconstruct": 1, "after": 3}


def test_decoding_sq8_codes_runs_with_the_configured_openmp_threads() -> None:
    """`sa_decode` is an OpenMP loop too: outside `searching()` every decoded batch spun one
    thread per core (1 client at 100k: 11.1 against 8.9 ms of CPU per search, same latency)."""
    import threading

    import faiss

    from service.index import faiss_index

    rng = np.random.default_rng(6)
    index = FaissIndex(8, kind="hnsw-sq8")
    index.add(np.arange(50, dtype=np.int64), l2_normalise(rng.normal(size=(50, 8))))
    quantiser, codes, order = index._coded()
    seen: dict[str, int] = {}

    class Spy:
        def sa_decode(self, *args: object) -> object:
            seen["decode"] = faiss.omp_get_max_threads()
            return quantiser.sa_decode(*args)

    index._codes = (Spy(), codes, order)

    def request_thread() -> None:
        faiss.omp_set_num_threads(3)
        index.reconstruct(np.arange(5, dtype=np.int64), exact=False)
        seen["after"] = faiss.omp_get_max_threads()

    faiss_index.set_search_threads(1)
    worker = threading.Thread(target=request_thread)
    worker.start()
    worker.join()
    assert seen == {"decode": 1, "after": 3}
