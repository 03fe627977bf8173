#!/usr/bin/env python3
"""Interleaved A/B over HTTP: the same requests, one client, alternating between servers that
are already running (e.g. two checkouts serving one `bench_http.py --keep-data` folder).

Each request is sent to every server in a shuffled order before the next one, so load from
other jobs on a shared machine hits them alike; p50/p99 per server and the ratio to the first,
and each server's CPU per request: utime + stime of the processes listening on its port (and
their parent and children: `serve --workers N`), which moves far less with other jobs' load
than wall time does. Linux only (/proc, `ss`).

    .venv/bin/python scripts/bench_ab.py search 200 http://127.0.0.1:8701 http://127.0.0.1:8702
    .venv/bin/python scripts/bench_ab.py match-x500 150 URL_A URL_B

With `--clients N` (N > 1) the servers take turns at whole rounds instead: every round sends the
same requests to each server in a shuffled order, N clients at once (bench_http.run_load), and
the report gives the median round's throughput, p50/p99 over all rounds and CPU per request:

    .venv/bin/python scripts/bench_ab.py search 1000 URL_A URL_B --clients 16 --rounds 5
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from bench_http import Call, run_load
from bench_index import demo_vectors
from bench_report import percentile

from service.cli import DEMO_FILE

KINDS = ("search", "match", "match-x500")
TICKS = os.sysconf("SC_CLK_TCK")


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def server_processes(url: str) -> set[int]:
    """The processes listening on `url`'s port, their parent (a supervisor) and its children."""
    port = url.rsplit(":", 1)[1].split("/")[0]
    listing = subprocess.run(
        ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    listening = {int(m) for m in re.findall(r"pid=(\d+)", listing)}
    family = listening | {_parent(p) for p in listening}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if _parent(int(entry.name)) in family:
                    family.add(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
    return family


def cpu_seconds(pids: set[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def requests_for(kind: str, n: int, seed: int) -> list[tuple[str, str, Any]]:
    rng = random.Random(seed)
    queries = demo_vectors("onnx-fp32").query_texts
    with gzip.open(DEMO_FILE, "rt", encoding="utf-8") as handle:
        ids = [json.loads(line)["id"] for line in handle]
    out: list[tuple[str, str, Any]] = []
    for _ in range(n):
        if kind == "search":
            out.append(("GET", f"/v1/search?q={quote(rng.choice(queries))}&limit=10", None))
        elif kind == "match":
            out.append(("POST", "/v1/match", {"actor_id": rng.choice(ids), "limit": 10}))
        else:
            excluded = rng.sample(ids, 500)
            body = {"actor_id": rng.choice(ids), "limit": 50, "exclude_actors": excluded}
            out.append(("POST", "/v1/match", body))
    return out


def one_at_a_time(args: argparse.Namespace, rng: random.Random) -> None:
    clients = {url: httpx.Client(base_url=url, timeout=60) for url in args.urls}
    times: dict[str, list[float]] = {url: [] for url in args.urls}
    processes = {url: server_processes(url) for url in args.urls}
    cpu_at: dict[str, float] = {}
    for i, (method, path, body) in enumerate(
        requests_for(args.kind, args.requests + args.warm, args.seed)
    ):
        if i == args.warm:
            cpu_at = {url: cpu_seconds(pids) for url, pids in processes.items()}
        order = list(args.urls)
        rng.shuffle(order)
        for url in order:
            started = time.perf_counter()
            answer = clients[url].request(method, path, json=body)
            took = (time.perf_counter() - started) * 1000
            if answer.status_code != 200:
                raise SystemExit(f"{url}{path}: {answer.status_code} {answer.text[:300]}")
            if i >= args.warm:
                times[url].append(took)
    cpu = {
        url: 1000 * (cpu_seconds(pids) - cpu_at[url]) / args.requests
        for url, pids in processes.items()
    }
    first = percentile(times[args.urls[0]], 50)
    for url, values in times.items():
        p50 = percentile(values, 50)
        print(
            f"{args.kind} {url}: p50 {p50:.1f} ms, p99 {percentile(values, 99):.1f} ms, "
            f"p50 ratio to the first {p50 / first:.2f}, server CPU {cpu[url]:.2f} ms/request "
            f"(ratio {cpu[url] / cpu[args.urls[0]]:.2f})"
        )


def in_rounds(args: argparse.Namespace, rng: random.Random) -> None:
    calls = [Call(m, p, b) for m, p, b in requests_for(args.kind, args.requests, args.seed)]
    warm = calls[: args.warm * args.clients]
    processes = {url: server_processes(url) for url in args.urls}
    rates: dict[str, list[float]] = {url: [] for url in args.urls}
    times: dict[str, list[float]] = {url: [] for url in args.urls}
    cpu: dict[str, float] = {url: 0.0 for url in args.urls}
    for url in args.urls:
        run_load(url, warm, args.clients)
    for round_ in range(args.rounds):
        order = list(args.urls)
        rng.shuffle(order)
        for url in order:
            before = cpu_seconds(processes[url])
            result = run_load(url, calls, args.clients)
            cpu[url] += cpu_seconds(processes[url]) - before
            if result.errors:
                raise SystemExit(f"{url}: {result.errors} errors, e.g. {result.error_samples[:3]}")
            rates[url].append(result.throughput)
            times[url].extend(result.latencies_ms)
        print(
            f"round {round_ + 1}: "
            + ", ".join(f"{url} {rates[url][-1]:.1f} req/s" for url in args.urls),
            flush=True,
        )
    first = args.urls[0]
    rate = {url: percentile(values, 50) for url, values in rates.items()}
    per_request = {url: 1000 * spent / (args.rounds * len(calls)) for url, spent in cpu.items()}
    for url in args.urls:
        print(
            f"{args.kind} x{args.clients} clients {url}: {rate[url]:.1f} req/s (median of "
            f"{args.rounds} rounds, ratio to the first {rate[url] / rate[first]:.2f}), "
            f"p50 {percentile(times[url], 50):.1f} ms, p99 {percentile(times[url], 99):.1f} ms, "
            f"server CPU {per_request[url]:.2f} ms/request "
            f"(ratio {per_request[url] / per_request[first]:.2f})"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog="Both modes: requests are drawn from the demo data's queries and actors (seeded).",
    )
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("requests", type=int, help="requests per server (per round with --clients)")
    parser.add_argument("urls", nargs="+")
    parser.add_argument("--warm", type=int, default=10, help="unmeasured requests first (10)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--clients", type=int, default=1, help="concurrent clients; > 1 runs rounds (1)"
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds with --clients (5)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    if args.clients > 1:
        in_rounds(args, rng)
    else:
        one_at_a_time(args, rng)
    print(f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
