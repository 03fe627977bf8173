"""The real packaged model (all-MiniLM-L6-v2) on real demo actors: slow, and part of make test."""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Iterator

import numpy as np
import pytest

from service.cli import DEMO_FILE
from service.config import Settings
from service.domain import Actor
from service.runtime import Runtime
from service.store import ActorFilter

pytestmark = pytest.mark.slow

WIND_WORDS = ("wind", "composite")


def demo_sample(size: int = 120, seed: int = 7) -> list[Actor]:
    """Every demo actor whose projects mention wind energy or composites, plus a random rest."""
    with gzip.open(DEMO_FILE, "rt", encoding="utf-8") as handle:
        actors = [Actor.parse(json.loads(line)) for line in handle]
    small = [a for a in actors if len(a.documents) <= 3]
    related = [
        a for a in small if any(w in d.text.lower() for d in a.documents for w in WIND_WORDS)
    ]
    others = [a for a in small if a not in related]
    random.Random(seed).shuffle(others)
    return related[:40] + others[: size - min(len(related), 40)]


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    runtime = Runtime(Settings(data_dir=tmp_path_factory.mktemp("real")))
    runtime.ingestor.upsert(demo_sample())
    runtime.reindexer.run()
    yield runtime
    runtime.close()


def test_model_loads_offline_and_is_normalised(real: Runtime) -> None:
    vectors = real.embedder.embed(["offshore wind", "Windenergie auf See"], role="query")
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_wind_query_finds_wind_and_composite_actors(real: Runtime) -> None:
    result = real.matcher.search("offshore wind turbine blade materials", limit=5)
    assert len(result.matches) == 5
    for match in result.matches:
        passage = match.evidence[0].text.lower()
        assert any(w in passage for w in WIND_WORDS), passage


def test_match_excludes_self_and_compatriots(real: Runtime) -> None:
    company = next(a for a in demo_sample() if a.kind == "company")
    result = real.matcher.match_actor(company.id, limit=10)
    assert len(result.matches) == 10 and company.id not in {m.actor.id for m in result.matches}
    foreign = real.matcher.match_actor(
        company.id, limit=10, filters=ActorFilter(exclude_same=frozenset({"country"}))
    )
    assert {m.actor.country for m in foreign.matches}.isdisjoint({company.country})


def test_reindex_of_unchanged_store_embeds_nothing(real: Runtime) -> None:
    report = real.reindexer.run()
    assert report.embedded == 0 and report.reused == report.chunks > 0
