"""The big, cold arrays of a loaded read model are read by rows, never mapped: a match reads the
rows it scores and the partner walk the edges of its frontier, and nothing of either file stays
resident in the worker (service.index.filerows says why mapping them did)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.domain import Actor
from service.index.filerows import MERGE_GAP, FileRows
from service.index.readmodel import ReadModel
from service.network import partner_graph, personalised_pagerank
from service.runtime import Runtime
from tests.factories import actor_data


def test_rows_read_from_the_file_equal_the_array(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    matrix = rng.random((700, 5)).astype(np.float32)
    items = rng.integers(0, 10**9, 9_000)
    np.save(tmp_path / "m.npy", matrix)
    np.save(tmp_path / "i.npy", items)
    rows, flat = FileRows(tmp_path / "m.npy"), FileRows(tmp_path / "i.npy")
    assert rows.shape == matrix.shape and len(flat) == len(items)
    for _ in range(40):
        picked = rng.integers(0, len(matrix), int(rng.integers(0, 60)))  # repeats, any order
        assert np.array_equal(rows[picked], matrix[picked])
        a, b = sorted(rng.integers(0, len(items), 2).tolist())
        assert np.array_equal(flat[a:b], items[a:b])
        starts = rng.integers(0, len(items), int(rng.integers(1, 30)))
        ends = np.minimum(starts + rng.integers(0, 400, len(starts)), len(items))
        wanted = np.concatenate([items[s:e] for s, e in zip(starts, ends, strict=True)])
        assert np.array_equal(flat.spans(starts, ends), wanted)
    assert np.array_equal(rows[3], matrix[3]) and np.array_equal(np.asarray(rows), matrix)
    many = rng.integers(0, len(matrix), 5_000)  # beyond MAPPED_ROWS: mapped for the call only
    assert np.array_equal(rows[many], matrix[many])
    if Path("/proc/self/maps").is_file():
        assert str(tmp_path / "m.npy") not in Path("/proc/self/maps").read_text()
    with pytest.raises(IndexError):
        rows[np.array([len(matrix)])]


def test_the_walk_reads_the_edges_it_follows_and_no_more(tmp_path: Path) -> None:
    """A ring of 100,000 actors with chords: a 4-step walk follows a few hundred edges of the
    3 MiB file, and reads only those (plus the merged gaps between nearby ranges)."""
    n = 100_000
    ids = [f"a{i:06d}" for i in range(n)]
    partners = {ids[i]: [ids[(i + 1) % n], ids[(i * 7919) % n]] for i in range(n)}
    start, rows = partner_graph(ids, partners)
    np.save(tmp_path / "rows.npy", rows)
    from_file = FileRows(tmp_path / "rows.npy")
    followed: list[int] = []
    walked = personalised_pagerank(start, from_file, 1234, followed=followed)
    assert np.array_equal(walked, personalised_pagerank(start, rows, 1234))
    ranges = 1 + sum(followed) // 2  # nodes whose lists were read, at most (degree >= 2)
    assert from_file.bytes_read <= 8 * sum(followed) + ranges * MERGE_GAP
    assert from_file.bytes_read < rows.nbytes / 10, "a walk is not a pass over the graph"
    assert from_file.reads <= ranges


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="reads /proc/self/maps")
def test_a_match_on_a_loaded_generation_maps_neither_profiles_nor_partners(
    runtime: Runtime,
) -> None:
    wind = "offshore wind turbine blade composite materials"
    actors = [
        Actor.parse({**actor_data(f"a{i}", [f"{wind} {i}"]), "partners": [f"a{(i + 1) % 30}"]})
        for i in range(30)
    ]
    runtime.ingestor.upsert(actors)
    runtime.reindexer.run()
    runtime.matcher.network_weight = 1.0
    current = runtime.generations.current_id()
    assert current is not None
    loaded = ReadModel.load(runtime.generations.generations_dir / current)
    assert isinstance(loaded.profile, FileRows) and isinstance(loaded.partner_rows, FileRows)
    result = runtime.matcher.match_actor("a0", limit=5)
    assert result.matches and result.matches[0].shared_partners is not None
    served = runtime.index.get().readmodel
    assert isinstance(served.profile, FileRows), "the served generation reads by rows too"
    assert served.profile.reads and served.partner_rows.reads  # type: ignore[union-attr]
    mapped = Path("/proc/self/maps").read_text()
    assert "/profile.npy" not in mapped and "/partner_rows.npy" not in mapped
    assert "chunk_actor.npy" in mapped, "the hot small arrays stay mapped"
