"""The read model: array filters agree with SQL and with the delta's predicate; the live delta
grows by the change only; deletes and rewrites by another process never reach a response."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from service.config import Settings
from service.domain import OPERATOR, Actor, ActorSummary, Owner
from service.embedding.fake import FakeEmbedder
from service.errors import NotFound
from service.index.readmodel import ReadModel
from service.matching import QueryChunk
from service.network import neighbours
from service.runtime import Runtime
from service.store import ActorFilter
from tests.factories import actor_data, make_actor

COUNTRIES = ("AT", "DE", "IT", "SE", "RO")
KINDS = ("company", "research", "university")
REGIONS = (None, "AT3", "AT31", "DE2", "ITC4")
SECTORS = ("C28", "C22.2", "M72", "D35")
CLUSTERS = ("wind", "plastics", "health")
SAME = ("sector", "region", "country", "kind", "cluster")


def random_actors(rng: random.Random, n: int) -> list[Actor]:
    out = []
    for i in range(n):
        region = rng.choice(REGIONS)
        country = region[:2] if region else rng.choice(COUNTRIES)
        data = actor_data(
            f"a{i:03d}",
            [f"offshore wind text {i}", f"second passage {i % 7}"][: rng.randint(1, 2)],
            country=country,
            kind=rng.choice(KINDS),
            region=region,
            sectors=rng.sample(SECTORS, rng.randint(0, 2)),
            clusters=rng.sample(CLUSTERS, rng.randint(0, 2)),
        )
        if rng.random() < 0.1:
            data.pop("country", None)  # unknown country, as in real data
            data.pop("region", None)
        out.append(Actor.parse(data))
    return out


def random_filter(rng: random.Random, reference: ActorSummary) -> ActorFilter:
    def some(values: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(rng.sample(values, rng.randint(1, 2))) if rng.random() < 0.35 else ()

    return ActorFilter(
        countries=some(COUNTRIES),
        regions=some(("AT3", "DE", "ITC", "AT31")),
        kinds=some(KINDS),
        sectors=some(SECTORS),
        clusters=some(CLUSTERS),
        exclude_actor_ids=frozenset(f"a{rng.randrange(60):03d}" for _ in range(rng.randint(0, 5))),
        exclude_same=frozenset(rng.sample(SAME, rng.randint(0, 2))),
        reference=reference,
    )


def test_array_filters_equal_sql_filters_and_the_delta_predicate(backend_runtime: Runtime) -> None:
    runtime = backend_runtime
    rng = random.Random(20261201)
    actors = random_actors(rng, 60)
    runtime.ingestor.upsert(actors)
    runtime.reindexer.run()
    generation = runtime.index.get()
    rm = generation.readmodel
    summaries = runtime.store.actor_summaries([a.id for a in actors])
    for trial in range(300):
        reference = summaries[f"a{rng.randrange(60):03d}"]
        f = random_filter(rng, reference)
        by_arrays = {rm.actor_ids[r] for r in np.flatnonzero(rm.mask(f)).tolist()}
        selection = runtime.store.select_chunks(f)
        if selection.allow is not None:
            allowed = set(selection.allow.tolist())
            by_sql = {c.actor_id for b in runtime.store.iter_chunks() for c in b if c.id in allowed}
        else:
            denied = set(selection.deny.tolist()) if selection.deny is not None else set()
            by_sql = {
                c.actor_id for b in runtime.store.iter_chunks() for c in b if c.id not in denied
            }
        by_predicate = {a for a, s in summaries.items() if f.admits(s)}
        assert by_arrays == by_sql == by_predicate, (trial, f)


def test_read_model_summary_and_owner_round_trip(runtime: Runtime) -> None:
    actor = make_actor("x", ["wind"], country="DE", sectors=["C28"], clusters=["wind"])
    runtime.ingestor.upsert([actor], Owner("agency-a", ("north",)))
    runtime.reindexer.run()
    rm = runtime.index.get().readmodel
    got = rm.summary(rm.rows["x"])
    assert (got.kind, got.country, got.sectors, got.clusters) == (
        "company",
        "DE",
        ("C28",),
        ("wind",),
    )
    assert got.owner == Owner("agency-a", ("north",))


def test_the_partner_graph_is_published_with_the_generation(runtime: Runtime) -> None:
    listed = make_actor("x", ["wind"]).model_dump() | {"partners": ["y", "not-stored"]}
    runtime.ingestor.upsert(
        [Actor.parse(listed), make_actor("y", ["sun"]), make_actor("z", ["sea"])]
    )
    runtime.reindexer.run()
    rm = runtime.index.get().readmodel
    partners = {
        a: [rm.actor_ids[int(p)] for p in neighbours(rm.partner_start, rm.partner_rows, r)]
        for a, r in rm.rows.items()
    }
    assert partners == {"x": ["y"], "y": ["x"], "z": []}, "undirected; only stored actors"
    generations = runtime.generations
    current = generations.current_id()
    assert current is not None
    loaded = ReadModel.load(generations.generations_dir / current)
    assert loaded.partner_rows.tolist() == rm.partner_rows.tolist()


class CountingStore:
    """The store with the chunk rows each call reads counted (work, not seconds)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.rows_read = 0

    def iter_chunks(self, *args: Any, **kwargs: Any) -> Any:
        for batch in self.inner.iter_chunks(*args, **kwargs):
            self.rows_read += len(batch)
            yield batch

    def fresh_chunks(self, *args: Any, **kwargs: Any) -> Any:
        found = self.inner.fresh_chunks(*args, **kwargs)
        self.rows_read += len(found.chunks)
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_write_costs_the_change_whatever_the_delta_holds(settings: Settings) -> None:
    runtime = Runtime(settings, embedder=FakeEmbedder())
    runtime.ingestor.upsert([make_actor("seed", ["wind"])])
    runtime.reindexer.run()
    counting = CountingStore(runtime.store)
    index = runtime.index
    index._store = counting  # type: ignore[assignment]
    embedder = runtime.embedder
    assert isinstance(embedder, FakeEmbedder)

    def write(i: int) -> tuple[int, int, int]:
        lexical = index.snapshot(refresh=False).delta.lexical
        assert lexical is not None
        rows, texts, updates = counting.rows_read, embedder.texts_embedded, lexical.updates
        runtime.ingestor.upsert([make_actor(f"w{i}", [f"passage {i} one", f"passage {i} two"])])
        return (
            counting.rows_read - rows,
            embedder.texts_embedded - texts,
            lexical.updates - updates,
        )

    early = write(0)
    for i in range(1, 300):
        write(i)
    late = write(300)
    assert index.delta_size() > 600
    assert early == late == (2, 2, late[2]), "each write reads, embeds and indexes its own chunks"
    assert late[2] > 0
    result = runtime.matcher.search("passage 300 one", limit=1)
    assert result.matches[0].actor.id == "w300", "and BM25 has it at once"
    runtime.close()


def test_a_delete_or_rewrite_by_another_process_never_reaches_a_response(
    settings: Settings,
) -> None:
    """Two serving processes on one store and index folder; B never saw A's writes."""
    a = Runtime(settings, embedder=FakeEmbedder())
    b = Runtime(settings, embedder=FakeEmbedder())
    a.ingestor.upsert(
        [make_actor(f"wind-{i}", [f"offshore wind blade {i}"]) for i in range(6)]
        + [make_actor("gone", ["offshore wind blade gone"])]
    )
    a.reindexer.run()
    assert "gone" in {m.actor.id for m in b.matcher.search("offshore wind blade gone").matches}
    assert a.delete_actor("gone")
    a.ingestor.upsert([make_actor("wind-0", ["bread and pastry"])])  # rewritten elsewhere
    snapshot = b.index.snapshot(refresh=False)  # B has not refreshed: its arrays are stale
    result = b.matcher._rank(
        b.embedder.embed(["offshore wind blade gone"], role="query"),
        [QueryChunk("q")],
        limit=10,
        actor_filter=ActorFilter(),
        viewer=OPERATOR,
        snapshot=snapshot,
    )
    ids = [m.actor.id for m in result.matches]
    assert "gone" not in ids and "wind-0" not in ids, "dropped by the page's store read"
    assert len(ids) == 5, "and the page refilled from the ranked list"
    with pytest.raises(NotFound):  # B's arrays still hold it as a query: its passages are gone
        b.matcher.match_actor("gone")
    a.close()
    b.close()


@pytest.mark.parametrize("aggregate", ["max", "coverage", "topk"])
def test_array_scores_equal_the_block_formula(runtime: Runtime, aggregate: str) -> None:
    from service.matching import aggregate_score

    runtime.ingestor.upsert(
        [
            make_actor("q", ["offshore wind blades", "composite repair"]),
            make_actor("c1", ["wind blades made of composites", "repair of blades", "bakery"]),
            make_actor("c2", ["solar panels"]),
        ]
    )
    runtime.reindexer.run()
    runtime.matcher.aggregate = aggregate  # type: ignore[assignment]
    got = {m.actor.id: m.score for m in runtime.matcher.match_actor("q").matches}
    embed = runtime.embedder.embed
    q = embed(["offshore wind blades", "composite repair"], role="passage")
    for actor, texts in {
        "c1": ["wind blades made of composites", "repair of blades", "bakery"],
        "c2": ["solar panels"],
    }.items():
        block = q @ embed(texts, role="passage").T
        assert got[actor] == pytest.approx(aggregate_score(block, aggregate), abs=1e-5)  # type: ignore[arg-type]


@pytest.mark.parametrize("probe_seconds", [0.0, 3600.0])
def test_a_ranked_response_reads_the_store_once_for_its_page(
    settings: Settings, probe_seconds: float
) -> None:
    """Counted SQL statements (work, not seconds, at the DB-API: `tests/statements.py`): a
    search and a match of a stored actor make one statement for the whole page, names
    included, and no BEGIN around it; besides it, the probe for chunks other processes wrote,
    at most once per `delta_probe_seconds` (every query at 0)."""
    from tests.statements import sqlite_statements

    settings = settings.model_copy(update={"delta_probe_seconds": probe_seconds})
    runtime = Runtime(settings, embedder=FakeEmbedder())
    runtime.ingestor.upsert(
        [make_actor(f"a{i}", [f"offshore wind blade {i}", f"rotor coating {i}"]) for i in range(30)]
    )
    runtime.reindexer.run()
    runtime.matcher.search("offshore wind blade")  # warm: first use builds lazy parts
    engine = runtime.store.engine  # type: ignore[attr-defined]
    with sqlite_statements(engine) as statements:
        found = runtime.matcher.search("offshore wind blade", limit=10)
        searched = [s for s in statements if not s.startswith("PRAGMA")]
        statements.clear()
        matched = runtime.matcher.match_actor("a3", limit=10)
        matching = [s for s in statements if not s.startswith("PRAGMA")]
    assert len(found.matches) == 10 and all(m.actor.name for m in found.matches)
    assert len(matched.matches) == 10 and "a3" not in {m.actor.id for m in matched.matches}
    # The probe (max(chunk id)) is a plain read: BEGIN, SELECT, ROLLBACK; the page is one
    # SELECT alone (a stored actor's query passages come from the generation).
    probes = 3 if probe_seconds == 0 else 0
    assert len(searched) == 1 + probes, searched
    assert searched[-1].startswith("SELECT") and "JOIN actors" in searched[-1]
    assert len(matching) == 1 + probes, matching
    runtime.close()


def test_profile_candidates_from_the_graph_equal_the_exact_scan(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A generation of more than `EXACT_ROWS` actors publishes an HNSW graph over its profile
    vectors (checksummed with the read model, loaded memory-mapped); on a catalogue this small
    the graph finds what the exact scan finds, and a filter is honoured inside the search."""
    from service.index import profiles
    from service.ranking import Ranker, Request, normalised

    rng = random.Random(5)
    actors = random_actors(rng, 120)
    runtime = Runtime(settings, embedder=FakeEmbedder())
    runtime.ingestor.upsert(actors)
    monkeypatch.setattr(profiles, "EXACT_ROWS", 40)
    runtime.reindexer.run()
    generation = runtime.index.reload()  # read back from disk: the checksum covers the graph
    rm = generation.readmodel
    assert rm.profile_index is not None and rm.profile_index.mapped
    assert len(rm.profile_index) == len(rm) == 120
    snapshot = runtime.index.snapshot()
    for i in range(10):
        query = runtime.embedder.embed([f"offshore wind text {i}"], role="passage")
        reference = rm.summary(i)
        for actor_filter in (ActorFilter(), random_filter(rng, reference)):
            request = Request(query, actor_filter, OPERATOR, wanted=10, profile_candidates=True)
            from_graph = Ranker(snapshot, request).profile_hits()
            monkeypatch.setattr(profiles, "EXACT_ROWS", 10_000)
            exact = Ranker(snapshot, request).profile_hits()
            monkeypatch.setattr(profiles, "EXACT_ROWS", 40)
            cosines = np.asarray(rm.profile) @ normalised(query.mean(axis=0))
            # the same actors, up to which of several equal profiles takes the last place
            assert np.allclose(cosines[from_graph], cosines[exact], atol=1e-6)
            unique = [r for r in exact.tolist() if np.sum(np.isclose(cosines, cosines[r])) == 1]
            assert set(unique) <= set(from_graph.tolist())
            assert rm.mask(actor_filter)[from_graph].all()
    runtime.close()


def test_per_audience_profiles_from_the_side_tables_equal_the_full_columns(
    tmp_path: Any,
) -> None:
    """The public and shared profile vectors are stored only for rows that have passages beyond
    public (resp. network); `profiles(rows, levels)` gives, bit for bit, the vector over the
    passages within each row's level, as the three full columns did, before and after a save."""
    from service.index.readmodel import profile_vectors
    from service.store import StoredChunk

    rng = np.random.default_rng(7)
    visibilities = ("public", "network", "private")
    chunks, summaries = [], {}
    for a in range(80):
        actor = f"x{a:02d}"
        summaries[actor] = ActorSummary(actor, "", "company", "AT", None, ())
        mix = rng.choice(3, size=int(rng.integers(1, 5)), p=(0.7, 0.2, 0.1))
        if a % 4 == 0:
            mix[:] = 0  # a quarter all public: no side-table row
        for n, level in enumerate(mix.tolist()):
            chunks.append(
                StoredChunk(
                    len(chunks) + 1,
                    actor,
                    f"d{n}",
                    "description",
                    visibilities[level],
                    0,
                    "t",
                    f"h{len(chunks)}",
                    "en",
                )
            )
    vectors = rng.standard_normal((len(chunks), 16)).astype(np.float32)
    rm = ReadModel.build(chunks, vectors, summaries, 16)
    assert set(rm.public_rows.tolist()) == set(np.flatnonzero(rm.row_reach >= 1).tolist())
    assert set(rm.shared_rows.tolist()) == set(np.flatnonzero(rm.row_reach >= 2).tolist())
    assert 0 < len(rm.shared_rows) < len(rm.public_rows) < len(rm)
    order = np.argsort(rm.chunk_ids)  # build's rows are in chunk order here: ids ascend by actor
    full = {
        level: profile_vectors(vectors[order], rm.actor_start, 16, rm.chunk_visibility <= level)
        for level in (0, 1, 2)
    }
    (tmp_path / "g").mkdir()
    rm.save(tmp_path / "g")
    for model in (rm, ReadModel.load(tmp_path / "g")):
        for _trial in range(20):
            levels = rng.integers(0, 3, size=len(rm)).astype(np.int64)
            rows = rng.permutation(len(rm))[: int(rng.integers(1, len(rm)))].astype(np.int64)
            want = np.stack([full[int(levels[r])][r] for r in rows.tolist()])
            assert np.array_equal(model.profiles(rows, levels), want)
        assert np.array_equal(model.profiles(rows, None), full[2][rows])
