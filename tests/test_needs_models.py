"""Procurement needs on the real models with their calibrated coverage (slow): the English need
on MiniLM and e5, and the German need answered by English profiles on e5 (multilingual)."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.config import ModelProfile, Settings
from service.domain import Actor
from service.embedding.sentence_transformers import SentenceTransformerEmbedder
from service.needs import Need
from service.runtime import Runtime
from tests.needs_data import NEED_DE, NEED_EN, UNCOVERED, need_actors

pytestmark = pytest.mark.slow
SPECIALISTS = {"sensors": (0,), "ml-lab": (1,), "planning-software": (2,)}


@pytest.mark.parametrize(
    ("model", "text", "language"),
    [
        ("all-minilm-l6-v2", NEED_EN, "en"),
        ("multilingual-e5-small", NEED_EN, "en"),
        ("multilingual-e5-small", NEED_DE, "de"),
    ],
)
def test_each_aspect_finds_its_specialist_and_welding_stays_uncovered(
    tmp_path: Path, model: str, text: str, language: str
) -> None:
    embedder = SentenceTransformerEmbedder(ModelProfile.load(model))
    runtime = Runtime(Settings(data_dir=tmp_path / "data", model=model), embedder=embedder)
    runtime.ingestor.upsert([Actor.parse(a) for a in need_actors()])  # all in English
    runtime.reindexer.run()

    result = runtime.needs.match(Need(text, title="Tram fleet"), limit=6, team_size=3)
    assert result.coverage.above == runtime.profile.cover_above, "the model's own calibration"
    assert len(result.aspects) == 4 and detect(result.aspects[0]) == language
    covers = {s.actor.id: s.covers for s in result.suppliers if s.covers}
    assert covers == SPECIALISTS, "each specialist covers its aspect and nobody else any"
    best = result.consortia[0]
    assert {m.actor.id: m.covers for m in best.members} == SPECIALISTS
    assert best.covered == (0, 1, 2) and best.uncovered == (UNCOVERED,)
    runtime.close()


def detect(text: str) -> str:
    from service.text import detect_language

    return detect_language(text)
