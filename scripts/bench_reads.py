"""CPU per call of the store reads every search makes, hot (`service.store.hot`) against plain.

A temporary SQLite store (or, with `--url postgresql+psycopg://...`, a scratch schema in that
database, dropped after) gets `--actors`
actors with two passages each and a few feedback rows; then each read runs `--calls` times and
its process CPU per call is printed: the page (`page`, chunks with their texts and actor names)
for 10, 40 and 120 chunk ids, the tenant's dismissals (`feedback_actors`) and, for comparison,
the same reads through SQLAlchemy's `Connection` as the store made them before (the page
statement executed by SQLAlchemy; `list_feedback`). CPU time, not wall time: the figures of
BENCHMARKS.md were taken with nothing else running, and a ratio of two rows of one run is what
carries over between machines.

    .venv/bin/python scripts/bench_reads.py [--actors 2000] [--calls 2000] [--url URL]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.feedback import Feedback, Label
from service.store.pg import scratch_schema
from service.store.sql import SqlProfileStore


def cpu_us(call: Callable[[], Any], calls: int) -> float:
    call()  # warm: compiles, fills the pool
    started = time.process_time()
    for _ in range(calls):
        call()
    return (time.process_time() - started) / calls * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--actors", type=int, default=2000, help="actors stored (2000)")
    parser.add_argument("--calls", type=int, default=2000, help="calls per read (2000)")
    parser.add_argument(
        "--url", help="a PostgreSQL URL to measure there, in a scratch schema (default: SQLite)"
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    from service.store import ChunkDraft
    from tests.factories import make_actor  # the tests' actor factory: every field filled

    def drafts_for(actor: Any) -> list[ChunkDraft]:
        return [ChunkDraft(d.id, 0, d.text, f"h-{actor.id}-{d.id}", "en") for d in actor.documents]

    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-reads-"))
        url = args.url or f"sqlite:///{tmp}/store.sqlite3"
        if url.startswith("postgresql"):
            url = stack.enter_context(scratch_schema(url, "cm_bench_reads"))
        store = SqlProfileStore(url)
        actors = [
            make_actor(f"a{i}", [f"passage {i} about wind blades " * 8, f"coating {i} " * 20])
            for i in range(args.actors)
        ]
        store.upsert_actors([(a, drafts_for(a)) for a in actors])
        for i in range(0, args.actors, 50):
            store.put_feedback(
                Feedback(tenant="t", actor_id=f"a{i}", label=Label.NOT_RELEVANT, query="wind")
            )
        rng = random.Random(args.seed)
        ids = [c.id for b in store.iter_chunks() for c in b]
        page_query = store._page_query.statement  # the same SQL, through a Connection
        results: dict[str, float] = {}
        for n in (10, 40, 120):
            wanted = rng.sample(ids, n)
            results[f"page {n} chunks, hot"] = cpu_us(lambda w=wanted: store.page(w), args.calls)

            def plain(w: list[int] = wanted) -> Any:
                with store._read() as conn:
                    return conn.execute(page_query, {"ids": w}).all()

            results[f"page {n} chunks, SQLAlchemy Connection"] = cpu_us(plain, args.calls)
        context = "q:wind"
        labels = {Label.NOT_RELEVANT}
        results["dismissals, hot (feedback_actors)"] = cpu_us(
            lambda: store.feedback_actors("t", context, labels), args.calls
        )
        results["dismissals, list_feedback"] = cpu_us(
            lambda: store.list_feedback("t", context, labels), args.calls
        )
        store.close()
    for name, us in results.items():
        print(f"{name:45s} {us:8.1f} us CPU per call")
    print(json.dumps({"actors": args.actors, "calls": args.calls, "us_per_call": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
