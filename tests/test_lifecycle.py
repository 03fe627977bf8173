"""Index life cycle: incremental rebuilds, hot swap, live delta, crash safety, the nightly job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.config import CHECKOUT_DIR, Settings
from service.embedding.fake import FakeEmbedder
from service.runtime import Runtime
from service.serving import Watcher
from tests.factories import actor_data, make_actor

WIND = "offshore wind turbine blade composite materials"


def seed(runtime: Runtime, n: int = 20) -> None:
    runtime.ingestor.upsert(
        [make_actor(f"a{i}", [f"{WIND} {i}", f"second document {i}"]) for i in range(n)]
    )


def test_incremental_rebuild_embeds_only_what_changed(runtime: Runtime) -> None:
    seed(runtime)
    first = runtime.reindexer.run()
    # The writes were embedded when stored (matchable before any build); the build reuses them.
    assert first.embedded == 0 and first.reused == first.chunks == 40
    again = runtime.reindexer.run()
    assert again.embedded == 0 and again.reused == 40, "unchanged store: nothing embedded"
    assert runtime.index.get() is not None  # this process serves, so writes feed the delta
    embedder = runtime.embedder
    assert isinstance(embedder, FakeEmbedder)
    before = embedder.texts_embedded
    changed = make_actor("a3", [f"{WIND} 3", "a rewritten second document"])
    runtime.ingestor.upsert([changed])
    assert embedder.texts_embedded - before == 1, "only the new chunk, at write time"
    third = runtime.reindexer.run()
    assert third.embedded == 0, "the write path already put the new chunk into the cache"
    assert third.chunks == 40 and third.generation != again.generation
    full = runtime.reindexer.run(full=True)
    assert full.embedded == 40


def test_only_changed_chunks_are_embedded_by_a_rebuild(settings: Settings) -> None:
    """Written by another process (no live delta): the rebuild embeds just the new text."""
    writer = Runtime(settings, embedder=FakeEmbedder())
    seed(writer)
    writer.reindexer.run()
    writer.store.upsert_actors(
        writer.ingestor.prepare([make_actor("a3", [f"{WIND} 3", "a rewritten second document"])])
    )
    report = writer.reindexer.run()
    assert (report.embedded, report.reused) == (1, 39)


def test_model_change_reembeds_everything_and_manifest_names_model(settings: Settings) -> None:
    first = Runtime(settings, embedder=FakeEmbedder(model_id="fake/one"))
    seed(first, 5)
    first.reindexer.run()
    second = Runtime(settings, embedder=FakeEmbedder(model_id="fake/two"))
    report = second.reindexer.run()
    assert report.embedded == 10 and report.model == "fake/two"
    generation = second.index.get()
    assert generation is not None and generation.manifest.model_id == "fake/two"


def test_delete_is_immediate_and_survives_the_next_rebuild(runtime: Runtime) -> None:
    seed(runtime)
    runtime.reindexer.run()
    assert "a0" in [m.actor.id for m in runtime.matcher.search(f"{WIND} 0", limit=3).matches]
    runtime.delete_actor("a0")
    assert "a0" not in [m.actor.id for m in runtime.matcher.search(f"{WIND} 0", limit=40).matches]
    runtime.reindexer.run()
    runtime.index.reload()
    assert "a0" not in [m.actor.id for m in runtime.matcher.search(f"{WIND} 0", limit=40).matches]


def test_processes_sharing_a_folder_converge(settings: Settings) -> None:
    serving = Runtime(settings, embedder=FakeEmbedder())
    seed(serving)
    serving.reindexer.run()
    assert serving.index.get() is not None
    nightly = Runtime(settings, embedder=FakeEmbedder())  # another process, same folder
    nightly.ingestor.upsert([make_actor("late", ["cryogenic magnetometers"])])
    published = nightly.reindexer.run().generation
    watcher = Watcher(serving, seconds=0.05)
    watcher.start()
    try:
        deadline = time.monotonic() + 10
        while serving.index.get().manifest.generation != published:  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the serving process never swapped"
            time.sleep(0.02)
    finally:
        watcher.stop()
    assert serving.matcher.search("cryogenic magnetometers", limit=1).matches[0].actor.id == "late"


def test_searches_across_a_swap_never_fail(runtime: Runtime) -> None:
    seed(runtime)
    runtime.reindexer.run()
    client = TestClient(create_app(runtime))
    errors: list[Any] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            response = client.get("/v1/search", params={"q": WIND, "limit": 5})
            if response.status_code != 200 or len(response.json()["results"]) != 5:
                errors.append(response.text)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    generations = set()
    for i in range(5):
        runtime.ingestor.upsert([make_actor(f"extra{i}", [f"{WIND} extra {i}"])])
        runtime.reindexer.run()
        generations.add(runtime.index.reload().manifest.generation)  # type: ignore[union-attr]
    stop.set()
    for thread in threads:
        thread.join()
    assert len(generations) == 5 and errors == []


def test_a_request_during_a_swap_never_pairs_the_new_generation_with_the_old_delta(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot taken in the middle of a swap (here: while the new delta log is built, after
    the new generation is loaded) sees the old generation with its own delta, never a mix whose
    row counts differ (a search then failed with a broadcast error)."""
    import service.serving as serving

    seed(runtime, 5)
    runtime.reindexer.run()
    old = runtime.index.reload()
    runtime.ingestor.upsert([make_actor("extra", [f"{WIND} extra"])])
    runtime.reindexer.run()
    seen: list[Any] = []

    class Watched(serving.DeltaLog):
        def __init__(self, *args: Any) -> None:
            seen.append(runtime.index.snapshot(refresh=False))  # a request arriving meanwhile
            super().__init__(*args)

    monkeypatch.setattr(serving, "DeltaLog", Watched)
    new = runtime.index.reload()
    (during,) = seen
    assert during.generation is old, "the old generation, with its own delta"
    assert len(during.delta.superseded) == len(old.readmodel) != len(new.readmodel)
    after = runtime.index.snapshot(refresh=False)
    assert after.generation is new and len(after.delta.superseded) == len(new.readmodel)


def test_a_request_during_a_delta_append_sees_only_whole_chunks(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Readers take delta views without the writer's lock. A search arriving while a write is
    appended (here: after the chunk ids are written, before their actor codes) must see the
    delta as it was; it once saw the new chunks with unwritten actor codes and failed."""
    import service.serving as serving

    seed(runtime, 3)
    runtime.reindexer.run()
    runtime.index.reload()
    seen: list[Any] = []
    extend = serving._Grow.extend

    def watched(self: Any, values: Any) -> None:
        log_ = runtime.index._log
        if log_ is not None and self is log_.actor_code:
            seen.append(runtime.index.snapshot(refresh=False))  # a request meanwhile
        extend(self, values)

    monkeypatch.setattr(serving._Grow, "extend", watched)
    runtime.ingestor.upsert([make_actor("fresh", [f"{WIND} fresh"])])
    runtime.index.refresh_delta(embed=True)
    assert seen, "the append ran"
    during = seen[0]
    assert len(during.delta) == 0 and len(during.delta.actor_code) == 0
    assert runtime.matcher.search(WIND, limit=5).matches is not None  # the reader's view is whole
    after = runtime.index.snapshot(refresh=False)
    assert len(after.delta) == len(after.delta.actor_code) > 0


def test_rollback(runtime: Runtime) -> None:
    seed(runtime, 3)
    first = runtime.reindexer.run().generation
    runtime.reindexer.run()
    assert runtime.generations.rollback() == first
    assert runtime.index.reload().manifest.generation == first  # type: ignore[union-attr]


# --- crash safety: SIGKILL a real subprocess at named points ---------------------------------


def run_cli(data_dir: Path, *args: str, failpoint: str | None = None) -> subprocess.Popen[str]:
    env = os.environ | {"CLUSTERMATCH_DATA_DIR": str(data_dir)}
    env.pop("CLUSTERMATCH_FAILPOINT", None)
    if failpoint:
        env["CLUSTERMATCH_FAILPOINT"] = failpoint
    return subprocess.Popen(
        [sys.executable, "-m", "tests.fake_cli", *args],
        cwd=CHECKOUT_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_at(process: subprocess.Popen[str], failpoint: str) -> None:
    assert process.stderr is not None
    deadline = time.monotonic() + 60
    for line in process.stderr:
        if f"FAILPOINT {failpoint}" in line:
            break
        assert time.monotonic() < deadline
    else:
        pytest.fail(f"the process ended before reaching {failpoint}")
    process.send_signal(signal.SIGKILL)
    process.wait(10)


@pytest.mark.slow
@pytest.mark.parametrize(
    "failpoint", ["reindex-embedding", "publish-index-written", "publish-before-swap"]
)
def test_killed_rebuild_leaves_the_old_generation_serving(tmp_path: Path, failpoint: str) -> None:
    data_dir = tmp_path / "data"
    first = Runtime(Settings(data_dir=data_dir), embedder=FakeEmbedder())
    seed(first)
    old = first.reindexer.run().generation
    first.store.upsert_actors(first.ingestor.prepare([make_actor("new", ["new text"])]))
    counts = first.store.counts()
    first.close()

    kill_at(run_cli(data_dir, "reindex", failpoint=failpoint), failpoint)

    survivor = Runtime(Settings(data_dir=data_dir), embedder=FakeEmbedder())
    with TestClient(create_app(survivor)) as client:
        assert client.get("/v1/index").json()["generation"] == old
        matches = client.post("/v1/match", json={"actor_id": "a1", "limit": 3}).json()
        assert len(matches["matches"]) == 3
    assert survivor.store.counts() == counts, "the store is intact"
    survivor.close()

    retry = run_cli(data_dir, "reindex", "--json")
    out, err = retry.communicate(timeout=60)
    assert retry.returncode == 0, err
    assert json.loads(out)["generation"] != old
    leftovers = [p.name for p in (data_dir / "generations").iterdir() if p.name.startswith(".")]
    assert leftovers == [], "the next run cleaned up the debris"


@pytest.mark.slow
def test_killed_write_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    profiles = tmp_path / "p.jsonl"
    profiles.write_text(
        "\n".join(json.dumps(actor_data(f"p{i}", [f"text {i}"])) for i in range(3)),
        encoding="utf-8",
    )
    kill_at(run_cli(data_dir, "ingest", str(profiles), failpoint="store-write"), "store-write")
    survivor = Runtime(Settings(data_dir=data_dir), embedder=FakeEmbedder())
    assert survivor.store.counts().actors == 0 and survivor.store.max_chunk_id() == 0
    survivor.close()


@pytest.mark.slow
def test_nightly_script(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    setup = Runtime(Settings(data_dir=data_dir), embedder=FakeEmbedder())
    seed(setup, 3)
    setup.close()
    wrapper = tmp_path / "clustermatch"
    wrapper.write_text(
        f'#!/bin/sh\ncd {CHECKOUT_DIR} && exec {sys.executable} -m tests.fake_cli "$@"\n'
    )
    wrapper.chmod(0o755)
    env = os.environ | {"CLUSTERMATCH_DATA_DIR": str(data_dir), "CLUSTERMATCH_BIN": str(wrapper)}
    script = str(CHECKOUT_DIR / "scripts" / "nightly-reindex")
    done = subprocess.run([script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {"generation", "chunks", "embedded", "reused", "seconds"} <= set(report)
    for phase in ("snapshot:", "embed:", "build:", "verify:", "publish:"):
        assert phase in done.stderr, phase

    import fcntl

    with (data_dir / "nightly.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        busy = subprocess.run([script], env=env, capture_output=True, text=True, timeout=60)
    assert busy.returncode == 75 and "holds" in busy.stderr


def test_large_generations_are_hnsw_with_params_in_the_manifest(settings: Settings) -> None:
    settings.hnsw_threshold = 10
    runtime = Runtime(settings, embedder=FakeEmbedder())
    seed(runtime)
    report = runtime.reindexer.run()
    generation = runtime.index.get()
    assert generation is not None
    manifest = generation.manifest
    assert manifest.index_kind == "faiss-idmap-hnsw-sq8-ip" and report.recall_at_10 >= 0.95
    assert manifest.index_params == {"M": 32, "efConstruction": 200, "efSearch": 128}
    found = runtime.matcher.search(f"{WIND} 3", limit=5)
    assert found.matches[0].actor.id == "a3" and len(found.matches) == 5
    runtime.close()
