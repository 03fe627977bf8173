#!/usr/bin/env python
"""Write rates over HTTP with the default backend: single PUTs one after another, and bulk import.

    .venv/bin/python scripts/bench_writes.py [--puts 2000] [--bulk 2000] [--json out.json]

A fresh data folder gets the bundled demo data and a generation (`clustermatch demo`); a real
`clustermatch serve --workers 1` (default model and backend) then takes, from one client:
  puts   `--puts` sequential `PUT /v1/actors/{id}` of new actors: the demo's profiles under new
         ids, each document given a unique closing sentence (`--fresh-text`, the default), so
         every PUT chunks and embeds its passages as a new profile would (without it, the
         embedding cache already holds the demo texts' vectors)
  bulk   one `POST /v1/actors/bulk` of `--bulk` new actors (NDJSON), new text each
Reported: PUT/s over the run, p50/p99, the median latency of PUTs 11-30 against PUTs
N-19..N (issue 10: >= 50 PUT/s and the 2,000th no slower than 1.5x the 20th), and bulk actors/s
(issue 10: >= 200 actors/s with the default backend).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from scripts.bench_http import free_port, start_server
from scripts.bench_report import log, percentile, write_result
from service.cli import DEMO_FILE


def demo_rows(n: int) -> list[dict[str, Any]]:
    with gzip.open(DEMO_FILE, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for _, line in zip(range(n), handle, strict=False)]
    return rows


def renamed(row: dict[str, Any], new_id: str, fresh: bool) -> dict[str, Any]:
    out = dict(row) | {"id": new_id}
    if fresh:
        out["documents"] = [
            d | {"text": f"{d['text']} Reference {new_id}-{i}."}
            for i, d in enumerate(row["documents"])
        ]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--puts", type=int, default=2000, help="sequential PUTs (2000)")
    parser.add_argument("--bulk", type=int, default=2000, help="actors in one bulk import (2000)")
    parser.add_argument(
        "--fresh-text",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="give every written actor a unique sentence, so its passages must be embedded",
    )
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    started = time.time()
    data_dir = Path(tempfile.mkdtemp(prefix="bench-writes-"))
    env = os.environ | {"CLUSTERMATCH_DATA_DIR": str(data_dir)}
    log("loading the demo data and building its generation")
    subprocess.run(
        [sys.executable, "-m", "service.cli", "demo"], env=env, check=True, capture_output=True
    )
    port = free_port()
    command = [sys.executable, "-m", "service.cli", "serve", "--workers", "1", "--port", str(port)]
    server = start_server("writes", command, port, "/readyz", data_dir / "server.log", env=env)
    rows = demo_rows(args.puts + args.bulk)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            latencies = []
            t0 = time.perf_counter()
            for i, row in enumerate(rows[: args.puts]):
                body = renamed(row, f"put-{i}", args.fresh_text)
                del body["id"]
                began = time.perf_counter()
                response = client.put(f"/v1/actors/put-{i}", json=body)
                latencies.append((time.perf_counter() - began) * 1000)
                response.raise_for_status()
                if (i + 1) % 250 == 0:
                    log(f"{i + 1} PUTs, last p50 {statistics.median(latencies[-250:]):.1f} ms")
            put_seconds = time.perf_counter() - t0
            lines = "\n".join(
                json.dumps(renamed(row, f"bulk-{i}", args.fresh_text))
                for i, row in enumerate(rows[args.puts :])
            )
            began = time.perf_counter()
            response = client.post(
                "/v1/actors/bulk", content=lines, headers={"content-type": "application/x-ndjson"}
            )
            bulk_seconds = time.perf_counter() - began
            response.raise_for_status()
    finally:
        server.stop()
    early = statistics.median(latencies[10:30])
    late = statistics.median(latencies[-20:])
    payload = {
        "puts": len(latencies),
        "put_per_s": round(len(latencies) / put_seconds, 1),
        "put_p50_ms": round(statistics.median(latencies), 2),
        "put_p99_ms": round(percentile(latencies, 99), 2),
        "put_early_median_ms": round(early, 2),
        "put_late_median_ms": round(late, 2),
        "late_over_early": round(late / early, 2),
        "bulk_actors": args.bulk,
        "bulk_actors_per_s": round(args.bulk / bulk_seconds, 1),
        "bulk_response": response.json(),
        "fresh_text": args.fresh_text,
        "load_average": os.getloadavg()[0],
    }
    payload["bulk_response"] = {
        k: v for k, v in payload["bulk_response"].items() if not isinstance(v, list)
    }
    path = write_result("writes", payload, started)
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    print(json.dumps(payload, indent=2))
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
