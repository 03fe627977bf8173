"""The ONNX Runtime backend against sentence-transformers on torch, on real demo texts: slow.

One export per test session (into a temporary cache, so the build path itself is tested), shared by
every test here through session- and module-scoped fixtures.
"""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from service.cli import DEMO_FILE
from service.config import ModelProfile
from service.embedding.base import Embedder, Vectors
from service.embedding.onnx import (
    FP32_FILE,
    INT8_FILE,
    OnnxEmbedder,
    passage_sessions_for,
    usable_cores,
)
from service.embedding.parity import check_parity
from service.embedding.sentence_transformers import SentenceTransformerEmbedder

pytestmark = pytest.mark.slow

SEED = 20_240_611
N_TEXTS = 200
N_QUERIES = 50


@pytest.fixture(scope="module")
def profile() -> ModelProfile:
    return ModelProfile.load("all-minilm-l6-v2")


@pytest.fixture(scope="module")
def demo_texts() -> tuple[list[str], list[str]]:
    """200 distinct document texts and 50 queries: the title sentence of 50 other documents."""
    with gzip.open(DEMO_FILE, "rt", encoding="utf-8") as handle:
        unique = sorted({d["text"] for line in handle for d in json.loads(line)["documents"]})
    random.Random(SEED).shuffle(unique)
    texts = unique[:N_TEXTS]
    queries = [t.split(". ", 1)[0] for t in unique[N_TEXTS : N_TEXTS + N_QUERIES]]
    return texts, queries


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def torch_embedder(profile: ModelProfile) -> SentenceTransformerEmbedder:
    embedder = SentenceTransformerEmbedder(profile)
    embedder.warm_up()
    return embedder


@pytest.fixture(scope="module")
def int8(profile: ModelProfile, onnx_cache: Path) -> OnnxEmbedder:
    embedder = OnnxEmbedder(profile, cache_dir=onnx_cache)
    embedder.warm_up()
    return embedder


@pytest.fixture(scope="module")
def fp32(profile: ModelProfile, onnx_cache: Path, int8: OnnxEmbedder) -> OnnxEmbedder:
    # Depends on `int8` so the first build (both files) always happens there.
    embedder = OnnxEmbedder(profile, quantize=False, cache_dir=onnx_cache)
    embedder.warm_up()
    return embedder


def test_constructor_is_cheap(profile: ModelProfile, tmp_path: Path) -> None:
    embedder = OnnxEmbedder(profile, cache_dir=tmp_path / "never-created")
    assert isinstance(embedder, Embedder)
    assert embedder.count_tokens("offshore wind") == 4  # tokenizer only: nothing exported
    assert embedder.model_file is None and not (tmp_path / "never-created").exists()


def test_int8_matches_torch_on_demo_texts(
    torch_embedder: SentenceTransformerEmbedder,
    int8: OnnxEmbedder,
    demo_texts: tuple[list[str], list[str]],
) -> None:
    texts, queries = demo_texts
    report = check_parity(torch_embedder, int8, texts, queries, k=10)
    assert report.min_cosine >= 0.98, str(report)
    assert report.mean_overlap >= 0.90, str(report)
    assert report.passes


def test_fp32_matches_torch(
    torch_embedder: SentenceTransformerEmbedder,
    fp32: OnnxEmbedder,
    demo_texts: tuple[list[str], list[str]],
) -> None:
    texts, queries = demo_texts
    # A text far over the 256-token window checks that both truncate at the same place.
    long_text = " ".join(texts[:40])
    assert fp32.count_tokens(long_text) > 2 * 256
    sample = [*texts, *queries, long_text]
    cosines = np.einsum("ij,ij->i", torch_embedder.embed(sample), fp32.embed(sample))
    assert cosines.min() >= 0.999, f"min cosine {cosines.min():.5f}"


def test_vectors_are_normalised_and_in_input_order(
    fp32: OnnxEmbedder, demo_texts: tuple[list[str], list[str]]
) -> None:
    texts = demo_texts[0][:70]  # three batches of 32, sorted by length inside the call
    together = fp32.embed(texts)
    assert together.shape == (70, 384) and together.dtype == np.float32
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    alone = np.vstack([fp32.embed([t]) for t in texts[::10]])
    # Padding is masked out, so a text's vector does not depend on its batch mates (fp32).
    assert np.allclose(together[::10], alone, atol=1e-4)
    assert fp32.embed([]).shape == (0, 384)


def test_concurrent_embeds_agree_with_sequential(
    fp32: OnnxEmbedder, demo_texts: tuple[list[str], list[str]]
) -> None:
    chunks = [demo_texts[0][i : i + 40] for i in range(0, 160, 40)]
    expected = [fp32.embed(chunk) for chunk in chunks]
    results: dict[int, Vectors] = {}

    def work(index: int) -> None:
        results[index] = fp32.embed(chunks[index])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(chunks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, vectors in enumerate(expected):
        assert np.allclose(results[index], vectors, atol=1e-5)


def test_passages_spread_over_sessions_give_the_one_session_vectors(
    profile: ModelProfile,
    onnx_cache: Path,
    int8: OnnxEmbedder,
    fp32: OnnxEmbedder,
    demo_texts: tuple[list[str], list[str]],
) -> None:
    texts = demo_texts[0]  # 200 passages: seven model batches of 32
    for one in (int8, fp32):
        spread = OnnxEmbedder(
            profile, quantize=one.quantize, cache_dir=onnx_cache, passage_sessions=2
        )
        assert spread.passage_pool is None  # cheap until used
        together = spread.embed(texts)
        pool = spread.passage_pool
        assert pool is not None and one.passage_pool is None
        # Two sessions, each its share of the seven batches; the batches are the one session's,
        # so even int8 (whose vectors depend on their batch mates) gives the same vectors.
        assert pool.batches == [4, 3]
        assert np.abs(together - one.embed(texts)).max() <= 1e-6
        # A passage of one batch, and queries however many, stay on the one session.
        spread.embed(texts[:32])
        spread.embed(texts, role="query")
        assert pool.batches == [4, 3]


def test_passage_sessions_default_to_the_usable_cores_within_threads() -> None:
    assert passage_sessions_for(0, threads=64) == usable_cores()
    assert passage_sessions_for(0, threads=1) == 1
    assert passage_sessions_for(3, threads=1) == 3  # asked for: as asked


def test_second_construction_reuses_the_cache(
    profile: ModelProfile, onnx_cache: Path, int8: OnnxEmbedder, fp32: OnnxEmbedder
) -> None:
    assert int8.model_file is not None and fp32.model_file is not None
    folder = int8.model_file.parent
    assert folder.parent == onnx_cache and folder.name.startswith("all-minilm-l6-v2-")
    assert {p.name for p in int8.built_files} == {FP32_FILE, INT8_FILE}
    assert fp32.built_files == ()
    before = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.onnx")}
    again = OnnxEmbedder(profile, cache_dir=onnx_cache)
    again.warm_up()
    assert again.built_files == () and again.model_file == int8.model_file
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("*.onnx")} == before


def test_queries_get_their_own_one_thread_session_with_the_same_vectors(
    profile: ModelProfile,
    onnx_cache: Path,
    int8: OnnxEmbedder,
    demo_texts: tuple[list[str], list[str]],
) -> None:
    """`query_threads` 1 beside `threads` 2: queries run on a second session of the same file
    (one text split over two threads cost more CPU and more time), passages on the first; the
    vectors are the same as from one session."""
    split = OnnxEmbedder(profile, threads=2, cache_dir=onnx_cache, query_threads=1)
    texts, queries = demo_texts
    assert np.allclose(split.embed(texts[:20]), int8.embed(texts[:20]), atol=1e-6)
    assert split._query_session is None, "passages never load the query session"
    for query in queries[:10]:
        alone = split.embed([query], role="query")
        assert np.allclose(alone, int8.embed([query], role="query"), atol=1e-6)
    assert split._query_session is not None and split._query_session is not split._session
    assert split._query_session.get_session_options().intra_op_num_threads == 1


_BUILD_IN_CHILD = """
import sys
from pathlib import Path
from service.config import ModelProfile
from service.embedding.onnx import OnnxEmbedder
e = OnnxEmbedder(ModelProfile.load("all-minilm-l6-v2"), quantize=False, cache_dir=Path(sys.argv[1]))
e.warm_up()
print(",".join(p.name for p in e.built_files))
"""


def test_two_processes_export_once(tmp_path: Path) -> None:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _BUILD_IN_CHILD, str(tmp_path)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    built = sorted(child.communicate(timeout=300)[0].strip() for child in children)
    assert all(child.returncode == 0 for child in children)
    assert built == ["", FP32_FILE]  # one exported, the other waited on the lock and reused it
    (folder,) = tmp_path.iterdir()
    assert sorted(p.name for p in folder.iterdir()) == [".export.lock", FP32_FILE]


_SERVE_WITHOUT_TORCH = """
import sys
from pathlib import Path
from service.config import ModelProfile
from service.embedding.base import warm_up
from service.embedding.factory import load_embedder
from service.text import detect_language, get_pipeline
from service.text.keyterms import candidate_terms

embedder = load_embedder(
    ModelProfile.load("all-minilm-l6-v2"),
    backend="onnx-fp32",
    query_backend="onnx-int8",
    cache_dir=Path(sys.argv[1]),
)
warm_up(embedder)
embedder.embed(["offshore wind blades"], role="query")
embedder.embed(["We build rotor blades for offshore wind turbines."], role="passage")
for code in ("en", "de"):
    get_pipeline(code)
candidate_terms("Wir entwickeln Sensoren für Windkraftanlagen.", detect_language("Wir entwickeln"))
print("torch" in sys.modules)
import torch  # still importable afterwards (spaCy only hid it from itself)
"""


def test_an_onnx_server_never_imports_torch(
    onnx_cache: Path, int8: OnnxEmbedder, fp32: OnnxEmbedder
) -> None:
    # Embedding with both ONNX sessions, building spaCy pipelines and detecting languages is all
    # a serving worker does; importing torch would add ~120 MiB to its heap (thinc imports it
    # for wrappers blank pipelines never use). The fixtures exported the model already: an
    # export is the one step that needs torch.
    child = subprocess.run(
        [sys.executable, "-c", _SERVE_WITHOUT_TORCH, str(onnx_cache)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "False"
