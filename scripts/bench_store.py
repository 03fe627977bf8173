#!/usr/bin/env python
"""The store backends side by side: SQLite (embedded) and PostgreSQL, same data, one run.

    .venv/bin/python scripts/bench_store.py [--actors 5681] [--queries 300] [--json out.json]
        [--postgres postgresql://postgres@127.0.0.1:5432/test]

For each backend, in one process, on the bundled demo data (CORDIS 2014 organisations):
  bulk ingest    `ProfileStore.upsert_actors` in batches of 100 (chunked once, before timing)
  rebuild        `clustermatch reindex` (read every chunk, build FAISS and the read model)
  single writes  sequential one-actor writes with a generation served (store + live delta)
  search         `Matcher.search` of demo sentences: ranking on the arrays, one store read
  match          `Matcher.match_actor` of stored actors
The embedder is the test FakeEmbedder (word hashing, microseconds), so the figures differ only by
the store; with a real model the embedding dominates writes and rebuilds equally on both.
PostgreSQL runs on this machine (loopback TCP); the run gets its own schema, dropped afterwards.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from scripts.bench_report import log, percentile, write_result
from service.cli import DEMO_FILE
from service.config import Settings
from service.domain import Actor
from service.embedding.fake import FakeEmbedder
from service.runtime import Runtime
from service.store.pg import scratch_schema


def load_demo(limit: int) -> list[Actor]:
    with gzip.open(DEMO_FILE, "rt", encoding="utf-8") as handle:
        lines = [line for _, line in zip(range(limit), handle, strict=False)]
    return [Actor.parse(json.loads(line)) for line in lines]


def timed(calls: list[Callable[[], object]]) -> list[float]:
    out = []
    for call in calls:
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(values), 3),
        "p99": round(percentile(values, 99), 3),
        "n": len(values),
    }


def bench(backend: str, url: str, actors: list[Actor], queries: list[str], args: Any) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        runtime = Runtime(Settings(data_dir=Path(tmp), database_url=url), FakeEmbedder())
        prepared = runtime.ingestor.prepare(actors)
        store = runtime.store
        started = time.perf_counter()
        for start in range(0, len(prepared), 100):
            store.upsert_actors(prepared[start : start + 100])
        bulk_s = time.perf_counter() - started
        log(f"{backend}: bulk ingest {len(actors) / bulk_s:.0f} actors/s")
        started = time.perf_counter()
        runtime.reindexer.run()
        rebuild_s = time.perf_counter() - started
        runtime.index.reload()
        rng = random.Random(7)
        singles = [a.model_copy(update={"id": f"single-{i}"}) for i, a in enumerate(actors[:300])]
        write_ms = timed([lambda a=a: runtime.ingestor.upsert([a]) for a in singles])
        matcher = runtime.matcher
        for q in queries[:20]:  # warm
            matcher.search(q)
        search_ms = timed([lambda q=q: matcher.search(q, limit=10) for q in queries])
        ids = [a.id for a in rng.sample(actors, min(len(queries), len(actors)))]
        match_ms = timed([lambda i=i: matcher.match_actor(i, limit=10) for i in ids])
        runtime.close()
    return {
        "backend": backend,
        "bulk_actors_per_s": round(len(actors) / bulk_s, 1),
        "rebuild_s": round(rebuild_s, 2),
        "single_writes_per_s": round(1000 / statistics.median(write_ms), 1),
        "single_write_ms": summary(write_ms),
        "search_ms": summary(search_ms),
        "match_ms": summary(match_ms),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--actors", type=int, default=5681, help="demo actors to load")
    parser.add_argument("--queries", type=int, default=300, help="searches and matches to time")
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="a PostgreSQL database the run may create a schema in",
    )
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    started = time.time()
    actors = load_demo(args.actors)
    rng = random.Random(11)
    queries = [
        d.text.split(". ")[0][:200]
        for a in rng.sample(actors, args.queries)
        for d in a.documents[:1]
    ]
    rows = [bench("sqlite", f"sqlite:///{tempfile.mkdtemp()}/store.sqlite3", actors, queries, args)]
    with scratch_schema(args.postgres, "cm_bench") as url:
        rows.append(bench("postgresql", url, actors, queries, args))
    payload = {"actors": len(actors), "queries": len(queries), "rows": rows}
    path = write_result("store", payload, started)
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    print(
        "| backend | bulk ingest actors/s | rebuild s | single writes/s | write p99 ms "
        "| search p50 / p99 ms | match p50 / p99 ms |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['backend']} | {r['bulk_actors_per_s']} | {r['rebuild_s']} | "
            f"{r['single_writes_per_s']} | {r['single_write_ms']['p99']} | "
            f"{r['search_ms']['p50']} / {r['search_ms']['p99']} | "
            f"{r['match_ms']['p50']} / {r['match_ms']['p99']} |"
        )
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
