#!/usr/bin/env python3
"""Heap of a serving worker: what each part of the service adds to a process's private memory.

Two measurements, both read from /proc/<pid>/smaps_rollup (`Anonymous` is the heap: malloc'd,
Python and native; memory-mapped generation files are file-backed and shared between workers, so
they show in `Rss` but not in `Anonymous`):

- `steps` (default): builds `Runtime(Settings(data_dir, index_dir, backend))` in this process and
  records memory after each step a serving worker takes: import the app, load the embedder, warm
  it, load the served generation, load the language detector, build the spaCy pipelines of the
  five product languages, one search, one match, then 30 searches and 30 matches, then one
  write's batch of 32 long passages through the passage model (and, with
  `--explain`, the key terms of one explained match, which reads every public passage once).
  `--tracemalloc` adds the Python-level share of each step (native allocations - ONNX Runtime,
  lingua, FAISS - are invisible to it, which is the point of comparing). Each step also records
  which heavy libraries are imported by then (torch, spacy, lingua, ...).
- `serve`: starts `python -m service.cli serve --workers 1` on the folder (nice 10, loopback, a
  free port), waits until it is ready and no longer warming, sends 30 searches and 30 matches one
  at a time, then reads the server process's smaps_rollup.

The data folder is only read by `steps`; `serve` writes the store (query-vector cache, audit),
so point it at a copy.

    nice -n 10 .venv/bin/python scripts/bench_memory.py steps DATA --index-dir DATA/index-onnx-fp32
    nice -n 10 .venv/bin/python scripts/bench_memory.py serve DATA --index-dir DATA/index-onnx-fp32
    .venv/bin/python scripts/bench_memory.py both DATA --index-dir ... --out docs/bench/heap.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_report import command_line, log, machine, revision, versions  # noqa: E402

FIELDS = ("Rss", "Pss", "Anonymous", "Private_Dirty", "Private_Clean", "Shared_Clean")
WATCHED_MODULES = (
    "torch",
    "transformers",
    "sentence_transformers",
    "spacy",
    "thinc",
    "lingua",
    "onnxruntime",
    "faiss",
    "tokenizers",
    "sqlalchemy",
)
LANGUAGES = ("en", "de", "it", "sv", "ro")
"""The languages the product's actors write in: the spaCy pipelines a worker builds."""

REQUESTS = 30


def memory(pid: int | str = "self") -> dict[str, float]:
    """MiB of each smaps_rollup field in FIELDS for `pid`."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in FIELDS:
            out[name] = round(int(rest.split()[0]) / 1024, 1)
    return out


def demo_queries_and_actors(count: int, seed: int) -> tuple[list[str], list[str]]:
    """`count` project titles of the demo data (as bench_http's queries) and demo actor ids."""
    from bench_index import project_title

    from service.cli import DEMO_FILE

    titles: list[str] = []
    actors: list[str] = []
    with gzip.open(DEMO_FILE, "rt", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            actors.append(row["id"])
            titles.extend(project_title(d["text"]) for d in row["documents"])
    rng = random.Random(seed)
    titles = sorted({t for t in titles if t})
    return rng.sample(titles, count), rng.sample(actors, count)


def demo_passages(count: int) -> list[str]:
    """The `count` longest distinct demo document texts (a write's worst batch)."""
    from service.cli import DEMO_FILE

    with gzip.open(DEMO_FILE, "rt", encoding="utf-8") as handle:
        texts = {d["text"] for line in handle for d in json.loads(line)["documents"]}
    return sorted(texts, key=lambda t: (-len(t), t))[:count]


# --------------------------------------------------------------------------------------------
# steps: in process


class Recorder:
    def __init__(self, tracemalloc: bool) -> None:
        self.tracemalloc = tracemalloc
        self.steps: list[dict[str, Any]] = []
        self._last = memory()
        self.steps.append({"step": "interpreter", "seconds": 0.0, **self._last, "delta": {}})

    def step(self, name: str, action: Callable[[], object]) -> None:
        started = time.perf_counter()
        action()
        seconds = time.perf_counter() - started
        now = memory()
        row: dict[str, Any] = {"step": name, "seconds": round(seconds, 2), **now}
        row["delta"] = {k: round(now[k] - self._last.get(k, 0.0), 1) for k in now}
        row["imported"] = [m for m in WATCHED_MODULES if m in sys.modules]
        if self.tracemalloc:
            import tracemalloc

            row["python_traced_mib"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 1)
        self._last = now
        self.steps.append(row)
        log(
            f"{name:<28} anon {now['Anonymous']:7.1f} MiB ({row['delta']['Anonymous']:+7.1f})"
            f"  rss {now['Rss']:7.1f}  {seconds:5.1f} s"
        )


def run_steps(args: argparse.Namespace) -> dict[str, Any]:
    if args.tracemalloc:
        import tracemalloc

        tracemalloc.start()
    rec = Recorder(args.tracemalloc)
    holder: dict[str, Any] = {}

    def import_app() -> None:
        import service.api.app  # noqa: F401
        from service.config import Settings
        from service.runtime import Runtime

        settings = Settings(data_dir=args.data_dir, index_dir=args.index_dir, backend=args.backend)
        holder["runtime"] = Runtime(settings)

    rec.step("import service.api.app", import_app)
    runtime = holder["runtime"]
    rec.step("store opened", lambda: runtime.store.changes())
    rec.step("embedder loaded", lambda: runtime.embedder)

    def warm() -> None:
        from service.embedding.base import warm_up

        warm_up(runtime.embedder)

    rec.step("embedder warmed", warm)
    rec.step("generation loaded", lambda: runtime.index.get())
    rec.step("matcher built", lambda: runtime.matcher)

    queries, actors = demo_queries_and_actors(REQUESTS, args.seed)
    rec.step("1 search", lambda: runtime.matcher.search(queries[0], limit=10))
    rec.step("1 match", lambda: runtime.matcher.match_actor(actors[0], limit=10))

    def language_detector() -> None:
        from service.text import load_language_detector

        load_language_detector()

    rec.step("language detector", language_detector)

    def pipelines() -> None:
        from service.text import get_pipeline

        for code in LANGUAGES:
            get_pipeline(code)

    rec.step("spaCy pipelines (5)", pipelines)

    def requests() -> None:
        for query, actor in zip(queries, actors, strict=True):
            runtime.matcher.search(query, limit=10)
            runtime.matcher.match_actor(actor, limit=10)

    rec.step(f"{REQUESTS} searches + {REQUESTS} matches", requests)

    def write_batch() -> None:
        # What a write (or a profile match) embeds: one batch of long passages, through the
        # passage session, whose ONNX Runtime arena keeps the largest activations it has seen.
        texts = demo_passages(32)
        runtime.embedder.embed(texts, role="passage")

    rec.step("embed 32 passages (a write)", write_batch)
    if args.explain:
        rec.step(
            "explain (key terms)",
            lambda: runtime.matcher.explain(runtime.matcher.match_actor(actors[0], limit=10)),
        )
    out: dict[str, Any] = {"steps": rec.steps}
    if args.tracemalloc:
        import tracemalloc

        snapshot = tracemalloc.take_snapshot()
        top = snapshot.statistics("filename")[:15]
        out["python_top_files"] = [
            {"file": str(s.traceback[0].filename), "mib": round(s.size / 2**20, 1)} for s in top
        ]
    return out


# --------------------------------------------------------------------------------------------
# serve: a real worker


def mapped_libraries(pid: int) -> list[str]:
    """Which heavy native libraries the process has mapped (a server's sys.modules, seen from
    outside: libtorch is mapped iff torch was imported)."""
    names = {
        Path(line.split()[-1]).name
        for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
        if line.count("/")
    }
    wanted = ("libtorch", "onnxruntime", "lingua", "faiss", "spacy", "tokenizers")
    return sorted(n for n in names if any(w in n for w in wanted))


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_serve(args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CLUSTERMATCH_DATA_DIR": str(args.data_dir),
        "CLUSTERMATCH_BACKEND": args.backend,
    }
    if args.index_dir is not None:
        env["CLUSTERMATCH_INDEX_DIR"] = str(args.index_dir)
    command = ["nice", "-n", "10", sys.executable, "-m", "service.cli", "serve"]
    command += ["--workers", "1", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--log-level", "warning"]
    log_path = Path(args.server_log)
    with log_path.open("wb") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}; see {log_path}")
            if time.perf_counter() - started > 600:
                raise RuntimeError(f"server not ready after 600 s; see {log_path}")
            try:
                answer = httpx.get(url + "/readyz", timeout=5)
                if answer.status_code == 200 and '"warming":true' not in answer.text:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        ready = memory(process.pid)
        log(f"ready after {time.perf_counter() - started:.0f} s: {ready}")
        queries, actors = demo_queries_and_actors(REQUESTS, args.seed)
        with httpx.Client(base_url=url, timeout=60) as client:
            for query, actor in zip(queries, actors, strict=True):
                client.get("/v1/search", params={"q": query, "limit": 10}).raise_for_status()
                client.post("/v1/match", json={"actor_id": actor, "limit": 10}).raise_for_status()
        after = memory(process.pid)
        imported = mapped_libraries(process.pid)
        log(f"after {REQUESTS} searches + {REQUESTS} matches: {after}")
        return {
            "command": " ".join(command),
            "ready": ready,
            "after_requests": after,
            "imported": imported,
        }
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog=(__doc__ or "").split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("mode", choices=("steps", "serve", "both"), help="what to measure")
    parser.add_argument("data_dir", type=Path, help="data folder (store.sqlite3)")
    parser.add_argument("--index-dir", type=Path, help="generations folder (default: data_dir)")
    parser.add_argument("--backend", default="onnx-fp32", help="embedding backend (onnx-fp32)")
    parser.add_argument("--tracemalloc", action="store_true", help="Python-level share per step")
    parser.add_argument("--explain", action="store_true", help="also build the key-term IDF")
    parser.add_argument("--seed", type=int, default=3, help="picks the queries and actors")
    parser.add_argument("--server-log", default="/tmp/bench-memory-server.log")
    parser.add_argument("--out", type=Path, help="write the JSON here (else stdout)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    result: dict[str, Any] = {
        "command": command_line(argv),
        "machine": machine(),
        "versions": versions(),
        "revision": revision(),
        "backend": args.backend,
    }
    # Steps first: their first row is this interpreter before it imported anything of ours.
    if args.mode in ("steps", "both"):
        result["steps"] = run_steps(args)
    if args.mode in ("serve", "both"):
        result["serve"] = run_serve(args)
    text = json.dumps(result, indent=2)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
