#!/usr/bin/env python
"""Full vs incremental index rebuild of the demo data, measured side by side in one run.

    .venv/bin/python scripts/bench_rebuild.py [--repeats 3] [--changed 0.01] [--json out.json]

A fresh store gets the bundled demo data; then, in one process with the same model:
  full         rebuild with an empty embedding cache (every chunk embedded),
  incremental  rebuild after changing `--changed` of the documents (new text for each),
  unchanged    rebuild with nothing changed.
Each is repeated; the table shows median and min-max of the wall time, and embeddings computed.
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.cli import DEMO_FILE
from service.config import Settings
from service.domain import Actor
from service.runtime import Runtime


def load_demo() -> list[Actor]:
    with gzip.open(DEMO_FILE, "rt", encoding="utf-8") as handle:
        return [Actor.parse(json.loads(line)) for line in handle]


def change_documents(
    actors: list[Actor], share: float, rng: random.Random, tag: int
) -> list[Actor]:
    """Give `share` of all documents new text; return the changed actors."""
    pairs = [(a, d.id) for a in actors for d in a.documents]
    chosen = rng.sample(pairs, max(1, round(len(pairs) * share)))
    by_actor: dict[str, set[str]] = {}
    for actor, doc_id in chosen:
        by_actor.setdefault(actor.id, set()).add(doc_id)
    changed = []
    for actor in actors:
        if actor.id in by_actor:
            documents = [
                d.model_copy(update={"text": f"{d.text} Revision {tag}: updated outcomes."})
                if d.id in by_actor[actor.id]
                else d
                for d in actor.documents
            ]
            changed.append(actor.model_copy(update={"documents": tuple(documents)}))
    return changed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per scenario (default 3)")
    parser.add_argument("--changed", type=float, default=0.01, help="share of documents changed")
    parser.add_argument("--full-repeats", type=int, default=2, help="full rebuilds (default 2)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    rng = random.Random(42)
    actors = load_demo()
    rows: dict[str, list[dict[str, Any]]] = {"full": [], "incremental": [], "unchanged": []}
    with tempfile.TemporaryDirectory() as tmp:
        runtime = Runtime(Settings(data_dir=Path(tmp)))
        runtime.ingestor.upsert(actors)  # no index is served here, so nothing is embedded yet
        runtime.embedder.embed(["warm up"])  # model load is not part of any rebuild's time

        def timed(name: str, full: bool = False) -> None:
            started = time.perf_counter()
            report = runtime.reindexer.run(full=full)
            seconds = time.perf_counter() - started
            rows[name].append(
                {"seconds": seconds, "embedded": report.embedded, "chunks": report.chunks}
            )

        for _ in range(args.full_repeats):
            timed("full", full=True)
        for repeat in range(args.repeats):
            changed = change_documents(actors, args.changed, rng, repeat)
            runtime.store.upsert_actors(runtime.ingestor.prepare(changed))
            timed("incremental")
            timed("unchanged")
        runtime.close()
    full_median = statistics.median(r["seconds"] for r in rows["full"])
    print(f"machine: {platform.machine()}, Python {platform.python_version()}, MiniLM on torch")
    print("| rebuild | runs | median s | min-max s | embeddings computed | chunks | speed-up |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, runs in rows.items():
        seconds = [r["seconds"] for r in runs]
        median = statistics.median(seconds)
        embedded = statistics.median(r["embedded"] for r in runs)
        print(
            f"| {name} | {len(runs)} | {median:.2f} | {min(seconds):.2f}-{max(seconds):.2f} | "
            f"{embedded:.0f} | {runs[0]['chunks']} | {full_median / median:.1f}x |"
        )
    if args.json:
        args.json.write_text(json.dumps({"argv": sys.argv, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
