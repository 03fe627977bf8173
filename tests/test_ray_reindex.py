"""`clustermatch reindex --ray`: the rebuild's embedding on a local Ray cluster (2 CPUs).

The cluster tests are `slow` (starting Ray takes several seconds); the fast ones check what the
CLI says when Ray is missing or an option is misused, without starting anything.
"""

from __future__ import annotations

import gzip
import json
import logging
import sys
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.cli import DEMO_FILE, main
from service.config import Settings
from service.domain import Actor
from service.embedding.fake import FakeEmbedder
from service.embedding.parity import MIN_COSINE, compare_vectors
from service.runtime import Runtime
from tests.factories import make_actor


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


def demo_actors(count: int) -> list[Actor]:
    with gzip.open(DEMO_FILE, "rt", encoding="utf-8") as handle:
        return [Actor.parse(json.loads(line)) for line in islice(handle, count)]


def cached(runtime: Runtime) -> dict[str, np.ndarray]:
    hashes = [c.content_hash for batch in runtime.store.iter_chunks() for c in batch]
    return runtime.store.cached_vectors(hashes, runtime.embedder.model_id)


@pytest.mark.slow
def test_ray_vectors_equal_the_local_path_within_parity(
    ray_cluster: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    actors = demo_actors(40)
    local = Runtime(Settings(data_dir=tmp_path / "local", threads=1))
    remote = Runtime(Settings(data_dir=tmp_path / "ray", threads=1))
    for runtime in (local, remote):
        runtime.store.upsert_actors(runtime.ingestor.prepare(actors))
    chunks = local.store.counts().chunks
    assert main(["reindex", "--json"], local) == 0
    capsys.readouterr()

    assert main(["reindex", "--ray", "auto", "--ray-workers", "2", "--json"], remote) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["chunks"] == chunks and report["embedded"] > 0 and report["reused"] >= 0
    assert f"reindex: {chunks}/{chunks} chunks, done in" in err, "progress for the Ray path"
    assert remote.generations.current_id() == report["generation"]

    expected, got = cached(local), cached(remote)
    assert got.keys() == expected.keys() and len(got) == report["embedded"]
    hashes = sorted(expected)
    titles = [a.name for a in actors[:20]]
    queries = local.embedder.embed(titles, role="query")
    parity = compare_vectors(
        np.stack([expected[h] for h in hashes]),
        np.stack([got[h] for h in hashes]),
        queries,
        queries,
    )
    assert parity.passes, str(parity)
    assert parity.min_cosine >= MIN_COSINE
    local.close()
    remote.close()


@pytest.mark.slow
def test_ray_embeds_only_what_changed(
    ray_cluster: None, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    runtime = Runtime(settings, embedder=FakeEmbedder())
    texts = [f"Sensor systems for offshore platform number {i}." for i in range(30)]
    items = [make_actor(f"a{i}", [t]) for i, t in enumerate(texts)]
    runtime.store.upsert_actors(runtime.ingestor.prepare(items))
    assert main(["reindex"], runtime) == 0
    changed = make_actor("a3", ["Hydrogen electrolysers for steel works."])
    runtime.store.upsert_actors(runtime.ingestor.prepare([changed]))
    capsys.readouterr()

    assert main(["reindex", "--ray", "auto", "--json"], runtime) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["embedded"], report["reused"]) == (1, 29)
    result = runtime.matcher.search("hydrogen electrolysers steel", limit=1)
    assert result.generation == report["generation"]
    assert [m.actor.id for m in result.matches] == ["a3"]
    runtime.close()


def test_without_ray_installed_the_cli_says_what_to_install(
    runtime: Runtime, monkeypatch: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    runtime.store.upsert_actors(runtime.ingestor.prepare([make_actor("a", ["wind"])]))
    assert main(["reindex", "--ray", "auto"], runtime) == 1
    assert "clustermatch[ray]" in capsys.readouterr().err
    assert runtime.generations.current_id() is None


def test_ray_workers_needs_ray_and_a_positive_count(
    runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["reindex", "--ray-workers", "2"], runtime) == 2
    assert "--ray-workers: only with --ray" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["reindex", "--ray", "auto", "--ray-workers", "0"], runtime)
    assert "whole number >= 1" in capsys.readouterr().err


def test_an_unchanged_store_never_contacts_ray(runtime: Runtime, monkeypatch: Any) -> None:
    runtime.store.upsert_actors(runtime.ingestor.prepare([make_actor("a", ["wind"])]))
    runtime.reindexer.run()
    monkeypatch.setitem(sys.modules, "ray", None)
    assert main(["reindex", "--ray", "ray://nowhere:10001"], runtime) == 0
