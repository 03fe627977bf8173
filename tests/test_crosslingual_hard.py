"""The hard cross-lingual set (data/crosslingual/hard.jsonl) and the top-1 arithmetic of
scripts/eval_crosslingual.py, on hand-made vectors: no model, well under a second."""

from __future__ import annotations

import importlib.util
import json
import sys
import unicodedata
from collections import Counter
from types import ModuleType

import numpy as np
import pytest

from service.config import CHECKOUT_DIR

HARD = CHECKOUT_DIR / "data" / "crosslingual" / "hard.jsonl"
LANGUAGES = ("en", "de", "it", "sv", "ro")
FIELDS = {"id", "topic", "group", *LANGUAGES}


@pytest.fixture(scope="module")
def script() -> ModuleType:
    """The evaluation script as a module (it imports no model at import time)."""
    path = CHECKOUT_DIR / "scripts" / "eval_crosslingual.py"
    spec = importlib.util.spec_from_file_location("eval_crosslingual", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    with HARD.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def test_hard_set_structure(rows: list[dict[str, str]]) -> None:
    assert len(rows) >= 200
    assert all(set(row) == FIELDS for row in rows)
    assert len({row["id"] for row in rows}) == len(rows)
    for row in rows:
        for lang in LANGUAGES:
            text = row[lang].strip()
            assert text and text == row[lang], (row["id"], lang)
            assert unicodedata.normalize("NFC", text) == text
        assert 10 <= len(row["en"].split()) <= 25, row["id"]
        assert not set(row["ro"]) & {"ş", "ţ", "Ş", "Ţ"}, row["id"]  # comma-below letters
    # no statement equals another one in the same language
    for lang in LANGUAGES:
        assert len({row[lang] for row in rows}) == len(rows), lang
    sizes = Counter(row["group"] for row in rows)
    assert len(sizes) >= 40
    assert min(sizes.values()) >= 4
    topics = {row["group"]: row["topic"] for row in rows}
    assert all(row["topic"] == topics[row["group"]] for row in rows)


def test_script_reads_the_hard_set(script: ModuleType, rows: list[dict[str, str]]) -> None:
    texts = script.load_statements(HARD)
    assert set(texts) == set(LANGUAGES)
    assert texts["de"][0] == rows[0]["de"]
    assert script.load_groups(HARD) == [row["group"] for row in rows]


def unit(rows: list[list[float]]) -> np.ndarray:
    matrix = np.asarray(rows, dtype=np.float32)
    normed: np.ndarray = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    return normed


def test_pair_outcome_on_hand_made_vectors(script: ModuleType) -> None:
    groups = ["a", "a", "b", "b"]
    source = unit([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    # row 0 and 2 find themselves; row 1 is closest to row 0 (same group a);
    # row 3 is closest to row 1 (group a, not its own group b)
    target = unit([[1, 0.9, 0, 0], [0, 0.2, 0, 1], [0, 0, 1, 0], [0, 0, 0.5, 0.5]])
    outcome = script.pair_outcome(source, target, groups)
    assert outcome.top1 == pytest.approx(0.5)
    assert outcome.within_group_errors == 1
    assert outcome.outside_group_errors == 1
    assert script.top1(source, target) == pytest.approx(0.5)
    perfect = script.pair_outcome(source, source, groups)
    assert (perfect.top1, perfect.within_group_errors, perfect.outside_group_errors) == (1, 0, 0)


def test_evaluate_fills_every_ordered_pair(script: ModuleType) -> None:
    class Embedder:
        """Same vector for a statement in every language, except Romanian row 1 looks like 0."""

        def embed(self, texts: list[str], role: str = "passage") -> np.ndarray:
            base: list[list[float]] = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
            if texts[0].startswith("ro"):
                base[1] = [1, 0.1, 0]
            return unit(base)

    texts = {lang: [f"{lang}{i}" for i in range(3)] for lang in script.LANGUAGES}
    result = script.evaluate(Embedder(), texts, "fake", ("passage", "passage"), ["g", "g", "h"])
    assert len(result.pairs) == len(result.outcomes) == 20
    for (s, t), score in result.pairs.items():
        expected = 2 / 3 if s == "ro" else 1.0  # the other way, Romanian row 1 stays nearest
        assert score == pytest.approx(expected), (s, t)
        assert result.outcomes[(s, t)].top1 == pytest.approx(expected)
    # 4 pairs from Romanian, one miss each, always the group neighbour (rows 0 and 1 share "g")
    assert result.within_group_errors == 4
    assert result.outside_group_errors == 0
    table = script.pairs_table(result)
    assert table.count("\n") == len(script.LANGUAGES) + 1
