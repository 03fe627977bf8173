"""Queries through int8 weights, passages through the model's own (service.embedding.queries)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from service.embedding.base import Role, Vectors, l2_normalise
from service.embedding.fake import FakeEmbedder
from service.embedding.queries import QUERY_PARITY_FILE, Int8QueryEmbedder, int8_queries_pass


class Noisy(FakeEmbedder):
    """The fake model's vectors plus noise of a given size: a stand-in for a quantised copy."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = sigma
        self.rng = np.random.default_rng(0)

    def embed(self, texts: Sequence[str], role: Role = "passage") -> Vectors:
        clean = super().embed(texts, role)
        return l2_normalise(clean + self.rng.normal(scale=self.sigma, size=clean.shape))


def test_queries_go_to_the_query_encoder_and_everything_else_to_the_passages() -> None:
    passages, queries = FakeEmbedder(model_id="m"), FakeEmbedder(model_id="m+onnx-int8")
    made: list[FakeEmbedder] = []
    mixed = Int8QueryEmbedder(passages, lambda: made.append(queries) or queries)
    mixed.embed(["a passage", "another"])
    assert not made, "the query encoder is made on the first query, not before"
    mixed.embed(["a query"], role="query")
    mixed.embed(["another query"], role="query")
    assert (passages.texts_embedded, queries.texts_embedded) == (2, 2)
    assert len(made) == 1
    assert mixed.model_id == "m", "the index holds the passages' vectors: their model id"
    assert mixed.dim == passages.dim


def test_a_refused_query_encoder_leaves_queries_to_the_passages_embedder() -> None:
    passages = FakeEmbedder()
    mixed = Int8QueryEmbedder(passages, lambda: None)
    mixed.embed(["a query"], role="query")
    assert passages.texts_embedded == 1 and mixed.queries is passages


def test_dimensions_must_agree() -> None:
    with pytest.raises(ValueError, match="dimensions"):
        Int8QueryEmbedder(FakeEmbedder(dim=64), lambda: FakeEmbedder(dim=32)).embed(
            ["q"], role="query"
        )


def test_the_gate_accepts_a_close_query_encoder_and_refuses_a_far_one(tmp_path: Path) -> None:
    (tmp_path / "close").mkdir()
    (tmp_path / "far").mkdir()
    assert int8_queries_pass(FakeEmbedder(), Noisy(0.002), tmp_path / "close")
    assert not int8_queries_pass(FakeEmbedder(), Noisy(0.5), tmp_path / "far")
    verdict = json.loads((tmp_path / "far" / QUERY_PARITY_FILE).read_text())
    assert verdict["passes"] is False and verdict["min_query_cosine"] < 0.98
    assert verdict["texts"] == 200 and verdict["queries"] == 50


def test_the_verdict_is_cached(tmp_path: Path) -> None:
    (tmp_path / QUERY_PARITY_FILE).write_text(json.dumps({"passes": False}))
    assert not int8_queries_pass(FakeEmbedder(), FakeEmbedder(), tmp_path)


@pytest.mark.slow
def test_real_int8_queries_against_fp32_passages() -> None:
    from service.config import ModelProfile
    from service.embedding.factory import load_embedder
    from service.embedding.onnx import OnnxEmbedder

    profile = ModelProfile.load("all-minilm-l6-v2")
    mixed = load_embedder(profile, backend="onnx-fp32", query_backend="onnx-int8")
    assert isinstance(mixed, Int8QueryEmbedder)
    fp32, int8 = mixed.passages, mixed.queries
    assert isinstance(fp32, OnnxEmbedder) and not fp32.quantize
    assert isinstance(int8, OnnxEmbedder) and int8.quantize, "MiniLM's int8 queries pass the gate"
    assert mixed.model_id == profile.id
    texts = ["offshore wind turbine blade materials", "Batteriespeicher für Stromnetze"]
    assert np.array_equal(mixed.embed(texts), fp32.embed(texts)), "passages are untouched"
    cosines = np.einsum(
        "ij,ij->i", mixed.embed(texts[:1], role="query"), fp32.embed(texts[:1], role="query")
    )
    assert 0.98 <= float(cosines[0]) < 1.0, "the query went through the int8 weights"
