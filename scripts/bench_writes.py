#!/usr/bin/env python
"""Write rates over HTTP with the default backend: single PUTs one after another, and bulk import.

    .venv/bin/python scripts/bench_writes.py [--puts 2000] [--bulk 2000] [--json out.json]
        [--tree OLD_CHECKOUT --tree NEW_CHECKOUT --rounds 2] [--profile DIR]

A fresh data folder gets the bundled demo data and a generation (`clustermatch demo`); a real
`clustermatch serve --workers 1` (default model and backend) then takes, from one client:
  puts   `--puts` sequential `PUT /v1/actors/{id}` of new actors: the demo's profiles under new
         ids, each document given a unique closing sentence (`--fresh-text`, the default), so
         every PUT chunks and embeds its passages as a new profile would (without it, the
         embedding cache already holds the demo texts' vectors)
  bulk   one `POST /v1/actors/bulk` of `--bulk` new actors (NDJSON), new text each; its server
         CPU per actor and the cores it kept busy (CPU over wall time) beside actors/s
Reported: PUT/s over the run, p50/p99 (also per 250 PUTs), the median latency of PUTs 11-30
against PUTs N-19..N (issue 10: >= 50 PUT/s and the 2,000th no slower than 1.5x the 20th), and
bulk actors/s (issue 10: >= 200 actors/s with the default backend).

Side by side: each `--tree` is a checkout (e.g. a `git worktree` of an older commit) whose code
serves one run; with several, the runs alternate tree by tree for `--rounds` rounds, every run on
a copy of the same demo data folder, so the trees differ only in their code.

`--profile DIR` samples the server with py-spy (requirements-dev.txt) during each phase and
prints where the server's CPU went, by stage (`STAGES`: the innermost matching frame names the
stage of a sample), with the raw stacks in DIR for a flame graph.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from scripts.bench_http import free_port, start_server
from scripts.bench_report import log, percentile, write_result
from service.cli import DEMO_FILE

ROOT = Path(__file__).resolve().parents[1]
STAGES: list[tuple[str, str]] = [
    # (stage, a regular expression on one py-spy frame "function (file:line)"); innermost wins
    ("http + validation", r"\(uvicorn/|\(h11/|\(starlette/|\(fastapi/|\(pydantic|Actor\.parse"),
    ("language detection", r"detect_language|\(lingua/"),
    ("chunking (spaCy)", r"chunk_many|Chunker\.|\(spacy/|\(thinc/"),
    ("store write", r"upsert_actors"),
    ("delta append (reads)", r"refresh_delta|DeltaLog\.append"),
    ("embedding", r"Embedder\.embed|Session\.run|_mean_pool"),
    ("matchable + pending", r"is_candidate|pending_changes"),
    ("owner check", r"_check_owner"),
    ("delta BM25", r"_build_delta_lexical|AudienceLexical\.build"),
    ("audit writer", r"AuditWriter"),
    ("alerts", r"AlertWorker|Alerts\."),
    ("watcher", r"Watcher\._loop"),
]


IDLE = r"Queue\.get|Event\.wait|Condition\.wait|Selector\.select|_write_to_self"
"""py-spy counts a thread as running while it enters or leaves a wait; those samples are no work."""


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


def stage_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for stage, pattern in STAGES:
            if re.search(pattern, frame):
                return stage
    return "other"


def stage_shares(folded: Path) -> dict[str, Any]:
    """Samples per stage (one sample = one thread seen running for 1/rate s) from py-spy's raw
    output; threads parked in a wait (idle) are left out by py-spy itself."""
    stages: Counter[str] = Counter()
    for line in folded.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if any(re.search(IDLE, f) for f in frames):
            continue  # a thread waiting (for work, a socket, a wake-up), seen as it wakes
        stages[stage_of(frames[1:])] += int(count)
    total = sum(stages.values())
    return {
        "samples": total,
        "percent": {k: round(100 * v / total, 1) for k, v in stages.most_common()} if total else {},
    }


@contextmanager
def sampled(pid: int, out: Path | None, rate: int = 100) -> Iterator[dict[str, Any]]:
    """py-spy record on `pid` for the duration of the block (when `out` is given)."""
    found: dict[str, Any] = {}
    if out is None:
        yield found
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    command = [spy, "record", "--pid", str(pid), "--rate", str(rate), "--threads"]
    process = subprocess.Popen(
        [*command, "--format", "raw", "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # py-spy attaches
    try:
        yield found
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        if out.exists():
            found.update(stage_shares(out))


def cpu_seconds(pid: int) -> float:
    """User + system CPU the process has used (Linux /proc): less sensitive to other work on
    the machine than wall time, so a shared machine's A/B compares it too."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def build_demo(env: dict[str, str]) -> None:
    log("loading the demo data and building its generation")
    subprocess.run(
        [sys.executable, "-m", "service.cli", "demo"], env=env, check=True, capture_output=True
    )


def one_run(
    tree: Path, pristine: Path, rows: list[dict[str, Any]], args: argparse.Namespace, label: str
) -> dict[str, Any]:
    """Serve a copy of the demo data folder with `tree`'s code; time the PUTs and the bulk."""
    data_dir = Path(tempfile.mkdtemp(prefix="bench-writes-run-"))
    shutil.rmtree(data_dir)
    shutil.copytree(pristine, data_dir)
    env = os.environ | {"CLUSTERMATCH_DATA_DIR": str(data_dir), "PYTHONPATH": str(tree)}
    port = free_port()
    command = [sys.executable, "-m", "service.cli", "serve", "--workers", "1", "--port", str(port)]
    log(f"{label}: serving with the code in {tree}")
    server = start_server(
        "writes", command, port, "/readyz", data_dir / "server.log", env=env, cwd=tree
    )
    pid = server.process.pid
    profile = args.profile
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            latencies: list[float] = []
            with sampled(
                pid, profile / f"{label}-puts.folded" if profile and args.puts else None
            ) as put_cpu:
                t0, cpu0 = time.perf_counter(), cpu_seconds(pid)
                for i, row in enumerate(rows[: args.puts]):
                    body = renamed(row, f"put-{i}", args.fresh_text)
                    del body["id"]
                    began = time.perf_counter()
                    response = client.put(f"/v1/actors/put-{i}", json=body)
                    latencies.append((time.perf_counter() - began) * 1000)
                    response.raise_for_status()
                    if (i + 1) % 250 == 0:
                        log(f"{i + 1} PUTs, last p50 {statistics.median(latencies[-250:]):.1f} ms")
                put_seconds, put_cpu_s = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
            lines = "\n".join(
                json.dumps(renamed(row, f"bulk-{i}", args.fresh_text))
                for i, row in enumerate(rows[args.puts :])
            )
            with sampled(pid, profile / f"{label}-bulk.folded" if profile else None) as bulk_cpu:
                began, cpu0 = time.perf_counter(), cpu_seconds(pid)
                response = client.post(
                    "/v1/actors/bulk",
                    content=lines,
                    headers={"content-type": "application/x-ndjson"},
                )
                bulk_seconds, bulk_cpu_s = time.perf_counter() - began, cpu_seconds(pid) - cpu0
            response.raise_for_status()
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    result: dict[str, Any] = {"tree": str(tree), "revision": git_revision(tree)}
    if latencies:
        result |= put_figures(latencies, put_seconds, put_cpu_s)
    result |= {
        "bulk_actors": args.bulk,
        "bulk_actors_per_s": round(args.bulk / bulk_seconds, 1),
        "bulk_server_cpu_ms_each": round(1000 * bulk_cpu_s / args.bulk, 2),
        "bulk_server_cores": round(bulk_cpu_s / bulk_seconds, 2),
        "bulk_response": {k: v for k, v in response.json().items() if not isinstance(v, list)},
        "load_average_after": os.getloadavg()[0],
    }
    if put_cpu or bulk_cpu:
        result["server_cpu_by_stage"] = {"puts": put_cpu, "bulk": bulk_cpu}
    return result


def put_figures(latencies: list[float], put_seconds: float, put_cpu_s: float) -> dict[str, Any]:
    early = statistics.median(latencies[10:30])
    late = statistics.median(latencies[-20:])
    blocks = [latencies[i : i + 250] for i in range(0, len(latencies), 250)]
    return {
        "puts": len(latencies),
        "put_per_s": round(len(latencies) / put_seconds, 1),
        "put_p50_ms": round(statistics.median(latencies), 2),
        "put_p99_ms": round(percentile(latencies, 99), 2),
        "put_p50_per_250_ms": [round(statistics.median(b), 1) for b in blocks],
        "put_p99_per_250_ms": [round(percentile(b, 99), 1) for b in blocks],
        "put_server_cpu_ms_each": round(1000 * put_cpu_s / len(latencies), 2),
        "put_early_median_ms": round(early, 2),
        "put_late_median_ms": round(late, 2),
        "late_over_early": round(late / early, 2),
    }


def git_revision(tree: Path) -> str:
    found = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return found.stdout.strip() or "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--puts", type=int, default=2000, help="sequential PUTs (2000; 0: none)")
    parser.add_argument("--bulk", type=int, default=2000, help="actors in one bulk import (2000)")
    parser.add_argument(
        "--fresh-text",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="give every written actor a unique sentence, so its passages must be embedded",
    )
    parser.add_argument(
        "--tree",
        type=Path,
        action="append",
        help="a checkout whose code serves (repeat to compare; default: this one)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="runs per tree, interleaved (1)")
    parser.add_argument("--profile", type=Path, help="sample the server with py-spy; stacks here")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    trees = [t.resolve() for t in (args.tree or [ROOT])]
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    started = time.time()
    pristine = Path(tempfile.mkdtemp(prefix="bench-writes-"))
    build_demo(os.environ | {"CLUSTERMATCH_DATA_DIR": str(pristine)})
    rows = demo_rows(args.puts + args.bulk)
    load_before = os.getloadavg()[0]
    runs = []
    try:
        for round_ in range(args.rounds):
            for n, tree in enumerate(trees):
                runs.append(one_run(tree, pristine, rows, args, f"r{round_}-t{n}"))
                log(json.dumps({k: v for k, v in runs[-1].items() if "per_250" not in k}))
    finally:
        shutil.rmtree(pristine, ignore_errors=True)
    payload: dict[str, Any] = {
        "fresh_text": args.fresh_text,
        "load_average_before": load_before,
        "load_average": os.getloadavg()[0],
        "runs": runs,
    }
    if len(runs) == 1:
        payload |= runs[0]  # one run: its figures at the top level, as before
    path = write_result("writes", payload, started)
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    print(json.dumps(payload, indent=2))
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
