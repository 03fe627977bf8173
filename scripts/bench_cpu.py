#!/usr/bin/env python3
"""CPU per request in process: free-text search and a match with 500 excluded actors, on a data
folder kept by `bench_http.py --keep-data` (100,000 chunks), for one or more checkouts.

CPU time (`time.process_time`) of the serving process, not wall time, so that two checkouts can
be compared on a shared machine: other jobs slow the wall clock far more than they inflate the
CPU a request needs. Each checkout runs in its own process, one after the other, `--rounds`
times in alternation; the figure is the median over rounds. FAISS and ONNX run single-threaded
as in the server (`faiss_threads` 1) so that CPU time is not spent spinning.

    .venv/bin/python scripts/bench_cpu.py .bench/http-data-XXXX --checkouts /work/old .
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]


def measure(data_dir: Path, searches: int, matches: int, seed: int) -> dict[str, float]:
    """In this process, with the checkout on sys.path: CPU ms per search and per match."""
    import faiss
    from bench_http import Variant  # type: ignore[import-not-found]
    from bench_index import demo_vectors  # type: ignore[import-not-found]

    from service.cli import DEMO_FILE
    from service.runtime import Runtime
    from service.store import ActorFilter

    faiss.omp_set_num_threads(1)
    queries = demo_vectors("onnx-fp32").query_texts
    with gzip.open(DEMO_FILE, "rt", encoding="utf-8") as handle:
        ids = [json.loads(line)["id"] for line in handle]
    runtime = Runtime(Variant("onnx-fp32").settings(data_dir))
    runtime.warm_up()
    matcher = runtime.matcher
    rng = random.Random(seed)
    asked = [rng.choice(queries) for _ in range(searches)]
    excluding = [(rng.choice(ids), frozenset(rng.sample(ids, 500))) for _ in range(matches)]
    for query in asked[:20]:  # warm: lazily built parts, caches
        matcher.search(query, limit=10)
    started = time.process_time()
    for query in asked:
        matcher.search(query, limit=10)
    search_ms = (time.process_time() - started) / len(asked) * 1000
    started = time.process_time()
    for actor, excluded in excluding:
        matcher.match_actor(actor, limit=50, filters=ActorFilter(exclude_actor_ids=excluded))
    match_ms = (time.process_time() - started) / len(excluding) * 1000
    runtime.close()
    return {"search_cpu_ms": round(search_ms, 2), "match_x500_cpu_ms": round(match_ms, 2)}


def run_checkout(checkout: Path, args: argparse.Namespace) -> dict[str, float]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        str(args.data_dir),
        "--inner",
        "--searches",
        str(args.searches),
        "--matches",
        str(args.matches),
    ]
    env = os.environ | {"PYTHONPATH": str(checkout), "BENCH_CPU_CHECKOUT": str(checkout)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{checkout}: {done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("data_dir", type=Path, help="a folder kept by bench_http.py --keep-data")
    parser.add_argument("--checkouts", type=Path, nargs="+", default=[HERE])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--matches", type=int, default=100)
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        checkout = Path(os.environ.get("BENCH_CPU_CHECKOUT", str(HERE)))
        sys.path[:0] = [str(checkout), str(checkout / "scripts")]
        print(json.dumps(measure(args.data_dir.resolve(), args.searches, args.matches, seed=3)))
        return 0
    runs: dict[str, list[dict[str, float]]] = {str(c): [] for c in args.checkouts}
    for round_ in range(args.rounds):
        for checkout in args.checkouts:
            result = run_checkout(checkout.resolve(), args)
            result["load_average"] = round(os.getloadavg()[0], 2)
            runs[str(checkout)].append(result)
            print(f"round {round_ + 1} {checkout}: {result}", file=sys.stderr)
    summary: dict[str, Any] = {
        checkout: {
            key: statistics.median(r[key] for r in rows)
            for key in ("search_cpu_ms", "match_x500_cpu_ms")
        }
        for checkout, rows in runs.items()
    }
    out = {"command": " ".join(sys.argv), "summary": summary, "runs": runs}
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
