#!/usr/bin/env python3
"""Whole servers on big data folders: search and match latency, CPU and memory per worker.

Issue 10's 1,000,000-chunk target ("`/v1/search` p50 <= 20 ms; resident memory per worker
stated, <= 1.5 GB") measured end to end, on the product's own server: `clustermatch serve
--workers 2` as bench_http.py starts it (variant `onnx-fp32:workers=2`, the default model and
backend), one server per data folder, all of them up at once.

`build DATA --chunks N` makes a data folder the cheap way (bench_http.build_store: the demo data
plus synthetic actors whose vectors are the demo vectors plus noise, written into the embedding
cache, so the ordinary reindex embeds nothing) and keeps it.

With `--store-only` it builds no generation; `reindex DATA` builds one (again) from the cache.
`trace DATA` serves DATA with one worker and reads, after searches and then after matches, how
much of each mapped generation file is resident (/proc/<pid>/smaps): which request kind pages
in which file.

`profiles DATA` compares the published profile graph (8-bit codes, rescored) with a float one.

`measure DATA...` starts one server per folder and, in every round and in a rotated order so
that other jobs on the shared machine hit them alike, sends from 1 client
`GET /v1/search?q=<demo project title>&limit=10` and `POST /v1/match` (a demo actor, limit 50,
500 `exclude_actors`). Per level it records wall p50/p99, the load average, and the CPU the two
worker processes spent (utime + stime from /proc/<pid>/stat) divided by the requests: on a loaded
machine CPU per request moves far less than wall time. Memory per worker (RSS, PSS, private =
Private_Clean + Private_Dirty, anonymous; /proc/<pid>/smaps_rollup) is read after the warm-up
and after all requests (then also per mapped generation file). With `--py-spy SECONDS`,
`py-spy record` samples one worker of each server while searches run (a flame graph SVG and
the raw collapsed stacks under .bench/results/).

    .venv/bin/python scripts/bench_million.py build .bench/http-data-1m --chunks 1000000
    .venv/bin/python scripts/bench_million.py measure .bench/http-data-XXXX .bench/http-data-1m

Writes .bench/results/million.json.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_http import (
    STAGES,
    Call,
    Server,
    Variant,
    build_store,
    free_port,
    load_demo_actors,
    match_excluding_calls,
    run_load,
    search_calls,
    serve_command,
    start_server,
)
from bench_index import demo_vectors
from bench_report import RESULTS_DIR, log, spread, write_result

VARIANT = Variant("onnx-fp32:workers=2")
TICKS = os.sysconf("SC_CLK_TCK")
PROFILED_STAGES = (
    *STAGES,
    ("profile candidates (match)", "service/ranking.py", "profile_hits"),
    ("  of which nearest profiles", "service/index/profiles.py", "nearest"),
    ("query actor's vectors (match)", "service/matching.py", "passage_vectors"),
)
"""bench_http's search stages plus the ones a match adds."""
MEMORY_FIELDS = ("Rss", "Pss", "Private_Clean", "Private_Dirty", "Anonymous", "Shared_Clean")


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(p) for p in text)
    return found


def worker_pids(server: Server, workers: int, timeout: float = 60.0) -> list[int]:
    """The uvicorn worker processes of a `--workers N` server: its children that run
    multiprocessing's spawn entry point (not the resource tracker)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        pids = []
        for pid in children(server.process.pid):
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            if b"spawn_main" in command:
                pids.append(pid)
        if len(pids) == workers:
            return sorted(pids)
        time.sleep(0.5)
    raise RuntimeError(f"{server.name}: expected {workers} workers, found {pids}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (its threads included), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def memory(pid: int) -> dict[str, float]:
    """MiB by kind from /proc/<pid>/smaps_rollup; `Private` = clean + dirty private pages."""
    raw: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, value = line.partition(":")
        parts = value.split()
        if parts and parts[-1] == "kB":
            raw[key.strip()] = int(parts[0])
    out = {k: round(raw.get(k, 0) / 1024, 1) for k in MEMORY_FIELDS}
    out["Private"] = round((raw.get("Private_Clean", 0) + raw.get("Private_Dirty", 0)) / 1024, 1)
    return out


def mapped_generation(pid: int) -> dict[str, dict[str, float]]:
    """MiB of Rss and Pss per mapped generation file (/proc/<pid>/smaps): which of the
    generation's files a worker has paged in."""
    out: dict[str, dict[str, float]] = {}
    name = ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        parts = line.split()
        if parts and "-" in parts[0] and len(parts) >= 5 and not parts[0].endswith(":"):
            path = parts[5] if len(parts) > 5 else ""
            name = "/".join(Path(path).parts[-2:]) if "/generations/" in path else ""
        elif name and parts and parts[0] in ("Rss:", "Pss:"):
            entry = out.setdefault(name, {"Rss": 0.0, "Pss": 0.0})
            entry[parts[0][:-1]] += round(int(parts[1]) / 1024, 1)
    return {k: v for k, v in sorted(out.items(), key=lambda kv: -kv[1]["Rss"]) if v["Rss"] >= 1}


def touched(pid: int) -> dict[str, dict[str, float]]:
    """`mapped_generation` with each file's size and the share of it paged in (Rss / size)."""
    sizes: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split()
        if len(parts) > 5 and "/generations/" in parts[5]:
            sizes["/".join(Path(parts[5]).parts[-2:])] = Path(parts[5]).stat().st_size
    out = mapped_generation(pid)
    for name, entry in out.items():
        size = sizes.get(name, 0) / 2**20
        entry["size_mib"] = round(size, 1)
        entry["share"] = round(entry["Rss"] / size, 3) if size else 0.0
    return out


def trace(args: argparse.Namespace) -> int:
    """One server with one worker on DATA: per mapped generation file, Rss, Pss and the share
    of the file paged in after the start, after searches, after one match, after more matches:
    which request kind touches how much of which file (the fraction hardly depends on scale)."""
    started = time.perf_counter()
    queries = demo_vectors("onnx-fp32").query_texts
    actor_ids = [a.id for a in load_demo_actors()]
    rng = random.Random(args.seed)
    variant = Variant("onnx-fp32:workers=1")
    port = free_port()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    log_path = RESULTS_DIR / f"million-trace-{args.data_dir.name}.log"
    server = start_server(
        args.data_dir.name, serve_command(args.data_dir, variant, port), port, "/readyz", log_path
    )
    steps: list[dict[str, Any]] = []
    pid = server.process.pid

    def snapshot(label: str) -> None:
        files = touched(pid)
        steps.append({"after": label, **memory(pid), "generation_files": files})
        shown = ", ".join(f"{k} {v['Rss']:.0f}/{v['size_mib']:.0f}" for k, v in files.items())
        log(f"after {label}: {shown}")

    try:
        snapshot("start (ready)")
        for label, calls in (
            ("1 search", search_calls(queries, 1, rng)),
            (f"{args.searches} searches", search_calls(queries, args.searches - 1, rng)),
            ("1 match x500", match_excluding_calls(actor_ids, 1, rng)),
            ("10 matches x500", match_excluding_calls(actor_ids, 9, rng)),
            (
                f"{args.matches} matches x500",
                match_excluding_calls(actor_ids, args.matches - 10, rng),
            ),
        ):
            result = run_load(server.url, calls, 1, 600)
            assert not result.summary()["errors"], result.summary()
            snapshot(label)
    finally:
        server.stop()
    write_result(f"million-trace-{args.data_dir.name}", {"steps": steps}, started)
    return 0


def level(server: Server, pids: Sequence[int], name: str, calls: Sequence[Call]) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    cpu_before = sum(cpu_seconds(p) for p in pids)
    result = run_load(server.url, calls, 1, max_seconds=600)
    cpu = sum(cpu_seconds(p) for p in pids) - cpu_before
    summary = result.summary()
    row = {
        "level": name,
        "requests": len(calls),
        "ok": summary["ok"],
        "errors": summary["errors"],
        "p50_ms": summary["p50_ms"],
        "p99_ms": summary["p99_ms"],
        "cpu_ms_per_request": round(1000 * cpu / max(1, len(calls)), 2),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    log(
        f"{server.name} {name}: p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, "
        f"CPU {row['cpu_ms_per_request']} ms/request, {row['errors']} errors, "
        f"load {row['load_average']}"
    )
    return row


def start_py_spy(pid: int, seconds: int, stem: str) -> tuple[dict[str, str], list[Any]]:
    """Sample one worker with py-spy (a flame graph and raw collapsed stacks) for `seconds`;
    the caller sends the requests meanwhile and waits for the returned processes."""
    binary = str(Path(sys.executable).with_name("py-spy"))
    paths: dict[str, str] = {}
    procs = []
    for fmt, suffix in (("flamegraph", "svg"), ("raw", "txt")):
        path = RESULTS_DIR / f"{stem}.{suffix}"
        command = [binary, "record", "--pid", str(pid), "--duration", str(seconds)]
        command += ["--rate", "200", "--format", fmt, "--output", str(path), "--nonblocking"]
        procs.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
        paths[fmt] = str(path)
    return paths, procs


def frame_matches(frame: str, path: str, name: str) -> bool:
    """A py-spy frame `Class.function (file.py:line)` is `name` in a file under `path`."""
    function, _, where = frame.partition(" (")
    return function.rsplit(".", 1)[-1] == name and path in where


def stack_shares(raw: Path, entry: str = "search") -> dict[str, Any]:
    """From py-spy's raw (collapsed) stacks: each stage's share of the samples inside
    `Matcher.<entry>` (bench_http.STAGES), and the frames most often on top of the stack."""
    stacks: list[tuple[list[str], int]] = []
    for line in raw.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        if frames:
            stacks.append((frames.split(";"), int(count)))
    total = sum(n for _, n in stacks)
    inside_entry = [
        (f, n) for f, n in stacks if any(frame_matches(x, "matching.py", entry) for x in f)
    ]
    inside = sum(n for _, n in inside_entry)
    shares = {
        label: round(
            sum(n for f, n in inside_entry if any(frame_matches(x, path, name) for x in f))
            / max(1, inside),
            3,
        )
        for label, path, name in PROFILED_STAGES
    }
    leaves: dict[str, int] = {}
    for frames, n in stacks:
        leaves[frames[-1]] = leaves.get(frames[-1], 0) + n
    top = sorted(leaves.items(), key=lambda kv: -kv[1])[:12]
    return {
        "samples": total,
        "entry": f"Matcher.{entry}",
        "in_entry": inside,
        "share_of_entry": shares,
        "top_frames": [{"frame": f, "share": round(n / max(1, total), 3)} for f, n in top],
    }


def measure(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    queries = demo_vectors("onnx-fp32").query_texts
    actor_ids = [a.id for a in load_demo_actors()]
    rng = random.Random(args.seed)
    servers: list[tuple[Server, list[int], Path]] = []
    memory_rows: list[dict[str, Any]] = []
    try:
        for data_dir in args.data_dirs:
            port = free_port()
            name = data_dir.name
            log_path = RESULTS_DIR / f"million-server-{name}.log"
            RESULTS_DIR.mkdir(parents=True, exist_ok=True)
            boot = time.perf_counter()
            server = start_server(
                name, serve_command(data_dir, VARIANT, port), port, "/readyz", log_path
            )
            pids = worker_pids(server, VARIANT.workers)
            servers.append((server, pids, data_dir))
            log(f"{name}: workers {pids}, ready after {time.perf_counter() - boot:.0f} s")
        for server, pids, _ in servers:  # warm-up: lazily built parts, caches
            run_load(server.url, search_calls(queries, 30, rng), 1, 600)
            run_load(server.url, match_excluding_calls(actor_ids, 10, rng), 1, 600)
            for pid in pids:
                memory_rows.append(
                    {"server": server.name, "pid": pid, "when": "after warm-up", **memory(pid)}
                )
        rows: list[dict[str, Any]] = []
        for round_ in range(args.rounds):
            order = servers[round_ % len(servers) :] + servers[: round_ % len(servers)]
            for server, pids, _ in order:
                for name, calls in (
                    ("search-1", search_calls(queries, args.searches, rng)),
                    ("match-x500-1", match_excluding_calls(actor_ids, args.matches, rng)),
                ):
                    row = level(server, pids, name, calls)
                    rows.append({"server": server.name, "round": round_ + 1, **row})
        for server, pids, _ in servers:
            for pid in pids:
                memory_rows.append(
                    {
                        "server": server.name,
                        "pid": pid,
                        "when": "after the requests",
                        **memory(pid),
                        "generation_files": mapped_generation(pid),
                    }
                )
        profiles: dict[str, Any] = {}
        if args.py_spy:
            for server, pids, _ in servers:
                for kind, entry, make in (
                    ("search", "search", search_calls),
                    ("match-x500", "match_actor", match_excluding_calls),
                ):
                    stem = f"million-py-spy-{server.name}-{kind}"
                    paths, procs = start_py_spy(pids[0], args.py_spy, stem)
                    deadline = time.perf_counter() + args.py_spy + 2
                    while time.perf_counter() < deadline:  # keep the sampled worker busy
                        run_load(
                            server.url,
                            make(queries if kind == "search" else actor_ids, 10, rng),
                            1,
                            60,
                        )
                    for proc in procs:
                        proc.wait(timeout=120)
                    shares = stack_shares(Path(paths["raw"]), entry)
                    profiles[f"{server.name} {kind}"] = {"pid": pids[0], **paths, **shares}
                    log(f"{server.name} {kind}: py-spy {paths}")
    finally:
        for server, _, _ in servers:
            server.stop()
    summary: dict[str, Any] = {}
    for server, _, data_dir in servers:
        mine = [r for r in rows if r["server"] == server.name]
        summary[server.name] = {"data_dir": str(data_dir)}
        for name in ("search-1", "match-x500-1"):
            these = [r for r in mine if r["level"] == name]
            summary[server.name][name] = {
                key: spread([r[key] for r in these if r[key] is not None])
                for key in ("p50_ms", "p99_ms", "cpu_ms_per_request")
            }
            summary[server.name][name]["errors"] = sum(r["errors"] for r in these)
            summary[server.name][name]["requests"] = sum(r["requests"] for r in these)
            summary[server.name][name]["load_average"] = [r["load_average"] for r in these]
    write_result(
        "million",
        {
            "variant": VARIANT.spec,
            "rounds": args.rounds,
            "searches_per_round": args.searches,
            "matches_per_round": args.matches,
            "summary": summary,
            "memory_mib": memory_rows,
            "py_spy": profiles,
            "runs": rows,
        },
        started,
    )
    return 0


def build(args: argparse.Namespace) -> int:
    import json
    import logging

    # The reindex logs its phases (read, build, verify, read model, bm25, publish) at INFO.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    report = build_store(args.data_dir, args.chunks, [VARIANT], reindex=not args.store_only)
    (args.data_dir / "build.json").write_text(json.dumps(report, indent=2))
    log(f"kept {args.data_dir}: {json.dumps(report)}")
    return 0


def reindex(args: argparse.Namespace) -> int:
    """Build a folder's generation again with other HNSW build parameters (the vectors come from
    the embedding cache): the Reindexer takes `HnswParams`, Settings only `hnsw_ef_search`."""
    import json
    import logging

    from service.index.faiss_index import HnswParams
    from service.reindex import Reindexer
    from service.runtime import Runtime

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    runtime = Runtime(VARIANT.settings(args.data_dir))
    made = runtime.reindexer
    params = HnswParams(args.m, args.ef_construction, runtime.settings.hnsw_ef_search)
    reindexer = Reindexer(
        made.store,
        made.embedder,
        made.generations,
        hnsw_threshold=made.hnsw_threshold,
        hnsw=params,
        lock=made.lock,
        encoder=made.encoder,
    )
    report = reindexer.run()
    manifest = runtime.generations.read_manifest(report.generation)
    runtime.close()
    out = {**report.__dict__, "index_params": manifest.index_params}
    (args.data_dir / "reindex.json").write_text(json.dumps(out, indent=2, default=str))
    log(f"reindex of {args.data_dir}: {json.dumps(out, default=str)}")
    return 0


def profile_graphs(args: argparse.Namespace) -> int:
    """The profile graph as published (HNSW16 over 8-bit codes, candidates rescored from the
    float vectors, service.index.profiles) against the float graph it replaced (IndexHNSWFlat,
    a second float copy), on a generation's own `profile.npy`: file bytes, build time and
    recall@k of the `k` nearest actors against exact, for queries turned from actor profiles
    (service.index.recall.probe_queries), all actors eligible and half of them. CPU per query is
    `profiles.nearest`'s alone."""
    import json
    import tempfile

    import faiss
    import numpy as np

    from service.index import profiles
    from service.index.generations import GenerationStore
    from service.index.recall import probe_queries

    begun = time.perf_counter()
    store = GenerationStore(VARIANT.settings(args.data_dir).resolved_index_dir)
    current = store.current_id()
    assert current is not None, f"{args.data_dir} has no generation"
    latest = store.generations_dir / current
    profile = np.load(latest / "readmodel" / "profile.npy")
    rng = np.random.default_rng(args.seed)
    sample = rng.choice(len(profile), size=args.queries, replace=False).astype(np.int64)
    queries = probe_queries(profile, sample, args.seed)
    denied = rng.random(len(profile)) < 0.5
    out: dict[str, Any] = {"generation": latest.name, "actors": len(profile), "k": args.k}
    with tempfile.TemporaryDirectory(dir=args.data_dir) as tmp:
        for name in ("sq8 + rescoring (published)", "flat (before)"):
            started = time.perf_counter()
            if name.startswith("sq8"):
                graph = profiles.build(profile)
                assert graph is not None
            else:
                flat = faiss.IndexHNSWFlat(profile.shape[1], profiles.M, faiss.METRIC_INNER_PRODUCT)
                flat.hnsw.efConstruction = profiles.EF_CONSTRUCTION
                flat.add(profile)
                graph = profiles.ProfileGraph(flat)
                profiles.OVERFETCH = 1  # as it was searched: k candidates, its own scores exact
            seconds = time.perf_counter() - started
            path = Path(tmp) / f"{len(out)}.faiss"
            graph.save(path)
            row: dict[str, Any] = {"file_mib": round(path.stat().st_size / 2**20, 1)}
            row["build_s"] = round(seconds, 1)
            for label, mask in (("all eligible", np.ones(len(profile), bool)), ("half", ~denied)):
                hits, cpu = 0, 0.0
                for query in queries:
                    before = time.process_time()
                    rows, _ = profiles.nearest(graph, profile, mask, query, args.k)
                    cpu += time.process_time() - before
                    kth = np.sort(profile[mask] @ query)[-args.k]
                    hits += int((profile[rows] @ query >= kth - 1e-6).sum())
                row[label] = {
                    "recall_at_k": round(hits / (len(queries) * args.k), 4),
                    "cpu_ms_per_query": round(1000 * cpu / len(queries), 3),
                }
            out[name] = row
            log(f"{name}: {json.dumps(row)}")
    write_result("million-profile-graphs", out, begun)
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog=(__doc__ or "").split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("build", help="make and keep a data folder of N chunks")
    make.add_argument("data_dir", type=Path)
    make.add_argument("--chunks", type=int, default=1_000_000)
    make.add_argument(
        "--store-only", action="store_true", help="no generation: run `reindex` on it later"
    )
    again = sub.add_parser("reindex", help="rebuild a folder's generation, other HNSW params")
    again.add_argument("data_dir", type=Path)
    again.add_argument("--m", type=int, default=32, help="HNSW M (32, the service's)")
    again.add_argument("--ef-construction", type=int, default=200, help="(200, the service's)")
    graphs = sub.add_parser("profiles", help="the profile graph: sq8 + rescoring against flat")
    graphs.add_argument("data_dir", type=Path)
    graphs.add_argument("--queries", type=int, default=300)
    graphs.add_argument("--k", type=int, default=100, help="(100: a match of limit 50 wants 100)")
    graphs.add_argument("--seed", type=int, default=3)
    follow = sub.add_parser("trace", help="per-file pages touched by searches, then matches")
    follow.add_argument("data_dir", type=Path)
    follow.add_argument("--searches", type=int, default=30)
    follow.add_argument("--matches", type=int, default=60)
    follow.add_argument("--seed", type=int, default=11)
    run = sub.add_parser("measure", help="serve each folder with 2 workers and measure")
    run.add_argument("data_dirs", type=Path, nargs="+")
    run.add_argument("--rounds", type=int, default=3)
    run.add_argument("--searches", type=int, default=150, help="searches per round (150)")
    run.add_argument("--matches", type=int, default=60, help="matches per round (60)")
    run.add_argument("--py-spy", type=int, default=0, help="py-spy record seconds (0: off)")
    run.add_argument("--seed", type=int, default=11)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    commands = {"build": build, "reindex": reindex, "measure": measure, "profiles": profile_graphs}
    commands |= {"trace": trace}
    return commands[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
