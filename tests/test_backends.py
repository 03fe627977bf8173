"""Backend choice: int8 ONNX is served only when it passes parity, else fp32 ONNX (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.config import ModelProfile
from service.embedding.factory import PARITY_FILE, load_embedder
from service.embedding.onnx import OnnxEmbedder, passage_sessions_for

pytestmark = pytest.mark.slow


def test_int8_served_when_parity_passes_else_fp32(tmp_path: Path) -> None:
    profile = ModelProfile.load("all-minilm-l6-v2")
    chosen = load_embedder(profile, backend="onnx-int8", cache_dir=tmp_path)
    assert isinstance(chosen, OnnxEmbedder) and chosen.model_file is not None
    assert chosen.passage_sessions == passage_sessions_for(0, threads=2)  # the setting's default
    verdict_file = chosen.model_file.parent / PARITY_FILE
    verdict = json.loads(verdict_file.read_text())
    assert verdict["texts"] == 200 and verdict["queries"] == 50
    if verdict["passes"]:
        assert chosen.quantize and chosen.model_id.endswith("+onnx-int8")
    else:
        assert not chosen.quantize
    verdict_file.write_text(json.dumps(verdict | {"passes": False}))
    fallback = load_embedder(profile, backend="onnx-int8", cache_dir=tmp_path)
    assert isinstance(fallback, OnnxEmbedder) and not fallback.quantize
    assert fallback.model_id == profile.id, "fp32 ONNX shares torch's model id and caches"
