#!/usr/bin/env python3
"""HTTP load benchmark of the real service on the demo data grown to ~100,000 chunks.

The store gets the bundled demo data (5,681 real actors, 12,272 chunks) plus synthetic actors made
from it: each copies a demo actor's attributes (kind, country, region, sectors) and gets 1-4
documents, each the text of a random distinct demo passage with a reference suffix. Their vectors
are not computed: the real model's vectors of the demo passages are cached once under
`.bench/cache/` (see bench_index.py), and each synthetic passage gets its source passage's vector
plus Gaussian noise (`--sigma`, re-normalised), written into the store's embedding cache, so the
ordinary `reindex` builds the generation without embedding anything. Queries are embedded live.

One uvicorn process per variant (an embedding backend, optionally with `Settings` overrides such
as `index=flat`; `create_app(Runtime(Settings(...)))`, one worker, 127.0.0.1, a free port, log
level warning) serves the same store from its own index folder. A bounded load generator (a
thread per client on a keep-alive `http.client` connection, a fixed number of requests per level,
a wall-clock cap per level) sends
`GET /v1/search?q=<project title>&limit=10` at 1, 4 and 16 concurrent clients and
`POST /v1/match {"actor_id"}` at 4 clients. All servers and levels are measured in every round, in
a rotated order, so load from other jobs on the shared machine hits them alike; figures are the
median over rounds with the min-max spread. The load generator runs on the same two cores as the
server. Finally each variant's `Matcher.search` is timed and profiled in process on the same data
(where a search's time goes).

    .venv/bin/python scripts/bench_http.py --chunks 100000 --variants torch onnx-int8 --rounds 3
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
import numpy as np
from bench_index import DEFAULT_SIGMA, demo_vectors, replicate
from bench_report import BENCH_DIR, log, percentile, spread, write_result

HOST = "127.0.0.1"
BACKENDS = ("torch", "onnx-fp32", "onnx-int8")

# --------------------------------------------------------------------------------------------
# the load generator (bench_txtai.py uses it too)


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: dict[str, Any] | None = None


@dataclass
class LoadResult:
    concurrency: int
    planned: int
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    seconds: float = 0.0
    capped: bool = False
    """The wall-clock cap ended the level before every planned request was sent."""

    @property
    def ok(self) -> int:
        return len(self.latencies_ms)

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "planned": self.planned,
            "ok": self.ok,
            "errors": self.errors,
            "error_samples": self.error_samples[:3],
            "capped": self.capped,
            "seconds": round(self.seconds, 3),
            "throughput_rps": round(self.throughput, 2),
            "p50_ms": round(percentile(self.latencies_ms, 50), 3) if self.ok else None,
            "p99_ms": round(percentile(self.latencies_ms, 99), 3) if self.ok else None,
        }


def _load(base_url: str, calls: Sequence[Call], concurrency: int, max_seconds: float) -> LoadResult:
    """One thread per client, each on its own keep-alive `http.client` connection. The load
    generator shares the two cores with the servers, so it must cost little: this one spends
    about 0.2 ms of CPU per request, where asyncio + httpx spent 1.2 ms (measured side by side
    on the same server, BENCHMARKS.md), which the faster server paid most for."""
    result = LoadResult(concurrency, len(calls))
    target = urlsplit(base_url)
    lock = threading.Lock()
    position = 0
    started = time.perf_counter()
    deadline = started + max_seconds

    def next_call() -> Call | None:
        nonlocal position
        with lock:
            if position >= len(calls):
                return None
            if time.perf_counter() > deadline:
                result.capped = True
                return None
            position += 1
            return calls[position - 1]

    def client_loop() -> None:
        connection = http.client.HTTPConnection(target.hostname or HOST, target.port, timeout=30.0)
        try:
            while (call := next_call()) is not None:
                body = None if call.body is None else json.dumps(call.body).encode()
                headers = {} if body is None else {"Content-Type": "application/json"}
                sent = time.perf_counter()
                try:
                    connection.request(call.method, call.path, body=body, headers=headers)
                    response = connection.getresponse()
                    response.read()
                    took = 1000 * (time.perf_counter() - sent)
                except (OSError, http.client.HTTPException) as exc:
                    connection.close()  # reconnects on the next request
                    with lock:
                        result.errors += 1
                        result.error_samples.append(f"{type(exc).__name__} {call.path[:60]}")
                    continue
                with lock:
                    if response.status == 200:
                        result.latencies_ms.append(took)
                    else:
                        result.errors += 1
                        result.error_samples.append(f"{response.status} {call.path[:60]}")
        finally:
            connection.close()

    threads = [threading.Thread(target=client_loop) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - started
    return result


def run_load(
    base_url: str, calls: Sequence[Call], concurrency: int, max_seconds: float = 120.0
) -> LoadResult:
    """Send `calls` with `concurrency` clients, each waiting for its answer before the next
    request; stop sending after `max_seconds`. Non-200 answers and transport errors are errors."""
    return _load(base_url, calls, concurrency, max_seconds)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(
    name: str,
    command: Sequence[str],
    port: int,
    ready_path: str,
    log_path: Path,
    env: dict[str, str] | None = None,
    timeout: float = 600.0,
    cwd: Path | None = None,
) -> Server:
    """Start a server process (in `cwd`, when given) and wait until `ready_path` answers 200."""
    url = f"http://{HOST}:{port}"
    handle = log_path.open("wb")
    process = subprocess.Popen(
        list(command),
        stdout=handle,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )
    server = Server(name, url, process, log_path)
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}; see {log_path}")
        try:
            answer = httpx.get(url + ready_path, timeout=5)
            # Measured only once warm: the language detector loads in the background after
            # start-up and would take the CPU from the first requests.
            warming = answer.status_code == 200 and '"warming":true' in answer.text
            if answer.status_code == 200 and not warming:
                log(f"{name} ready on {url} after {time.perf_counter() - started:.0f} s")
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"{name} not ready after {timeout:.0f} s; see {log_path}")


# --------------------------------------------------------------------------------------------
# the data


def model_vectors_backend(backend: str) -> str:
    """Which cached demo vectors serve a backend: torch and fp32 ONNX share vectors (and ids)."""
    return "onnx-int8" if backend == "onnx-int8" else "onnx-fp32"


@dataclass(frozen=True)
class Variant:
    """One server: an embedding backend plus `Settings` overrides, written `backend[:k=v,...]`,
    e.g. `onnx-int8`, `onnx-int8:index=flat` (exact index whatever the size; `index=hnsw` the
    opposite) or `torch:faiss_threads=2`. Without overrides it is the service's configuration."""

    spec: str

    @property
    def backend(self) -> str:
        return self.spec.split(":", 1)[0]

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9]+", "-", self.spec).strip("-")

    @property
    def workers(self) -> int:
        """`workers=N`: that many server processes (`clustermatch serve --workers N`)."""
        return int(self._items().get("workers", 1))

    def _items(self) -> dict[str, str]:
        if ":" not in self.spec:
            return {}
        return dict(item.partition("=")[::2] for item in self.spec.split(":", 1)[1].split(","))

    def overrides(self) -> dict[str, Any]:
        out: dict[str, Any] = {"backend": self.backend}
        if ":" in self.spec:
            for item in self.spec.split(":", 1)[1].split(","):
                key, _, value = item.partition("=")
                if key == "workers":
                    continue
                if key == "index":
                    out["hnsw_threshold"] = {"flat": 10**12, "hnsw": 1}[value]
                else:
                    out[key] = _value(value)
        return out

    def settings(self, data_dir: Path) -> Any:
        from service.config import Settings

        # The index folder ignores how it is served (workers, turns, threads, batching): such
        # variants must serve the one generation the benchmark built, not each build their own
        # at start-up (then a setting's A/B would compare two generations).
        items = [f"{k}={v}" for k, v in self._items().items() if k not in SERVING_ONLY]
        spec = self.backend + (":" + ",".join(items) if items else "")
        index = re.sub(r"[^A-Za-z0-9]+", "-", spec).strip("-")
        return Settings(
            data_dir=data_dir, index_dir=data_dir / f"index-{index}", **self.overrides()
        )


SERVING_ONLY = frozenset(
    {
        "workers",
        "ranking_turns",
        "micro_batch_ms",
        "faiss_threads",
        "query_threads",
        "query_backend",
        "delta_probe_seconds",
    }
)
"""Variant keys that change how a generation is served, not what it holds."""


def _value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def variant(text: str) -> Variant:
    """argparse type: a valid variant spec."""
    parsed = Variant(text)
    if parsed.backend not in BACKENDS:
        raise argparse.ArgumentTypeError(f"unknown backend in {text!r}; one of {BACKENDS}")
    try:
        parsed.overrides()
    except (KeyError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"bad variant {text!r}: {exc}") from exc
    return parsed


def load_demo_actors() -> list[Any]:
    from service.cli import DEMO_FILE
    from service.domain import Actor

    with gzip.open(DEMO_FILE, "rt", encoding="utf-8") as handle:
        return [Actor.parse(json.loads(line)) for line in handle]


def build_store(
    data_dir: Path,
    chunks: int,
    variants: Sequence[Variant],
    sigma: float = DEFAULT_SIGMA,
    seed: int = 5,
    reindex: bool = True,
) -> dict[str, Any]:
    """Demo data plus synthetic actors up to `chunks` chunks in `data_dir`, with every chunk's
    vector in the store's embedding cache for each backend, and one generation per variant in
    `data_dir/index-<variant>`, built by the ordinary reindex (unless not `reindex`: then the
    store and cache only, for a later `bench_million.py reindex`). Returns counts and timings."""
    from service.config import Settings
    from service.domain import Document
    from service.ingest import content_hash
    from service.runtime import Runtime
    from service.store import ChunkDraft

    started = time.perf_counter()
    actors = load_demo_actors()
    backends = list(dict.fromkeys(v.backend for v in variants))
    runtime = Runtime(Settings(data_dir=data_dir, backend=backends[0]))  # type: ignore[arg-type]
    log(f"ingesting {len(actors)} demo actors (real ingest: language, sentences, chunks)")
    # Straight to the store: the vectors come from the cache below, so the write path's
    # embedding into a live delta would be wasted work here.
    runtime.store.upsert_actors(runtime.ingestor.prepare(actors))
    store = runtime.store
    demo_chunks = store.counts().chunks
    cached = {b: demo_vectors(model_vectors_backend(b)) for b in backends}
    for demo in {d.model_id: d for d in cached.values()}.values():
        store.put_vectors(demo.model_id, dict(zip(demo.hashes, demo.vectors, strict=True)))
    reference = next(iter(cached.values()))

    rng = random.Random(seed)
    docs_per_actor = [len(a.documents) for a in actors]
    wanted = max(0, chunks - demo_chunks)
    sources: list[int] = []
    hashes: list[str] = []
    items = []
    made = 0
    serial = 0
    log(f"making synthetic actors for {wanted:,} more chunks (sigma {sigma})")
    while made < wanted:
        serial += 1
        template = rng.choice(actors)
        count = min(rng.choice(docs_per_actor), 4, wanted - made)
        documents = []
        drafts = []
        for number in range(count):
            source = rng.randrange(len(reference.texts))
            text = f"{reference.texts[source]} (ref S{serial}-{number})"
            doc_id = f"doc-{number}"
            documents.append(Document(id=doc_id, kind="description", text=text, language="en"))
            drafts.append(ChunkDraft(doc_id, 0, text, content_hash(text), "en"))
            sources.append(source)
            hashes.append(drafts[-1].content_hash)
        actor = template.model_copy(
            update={
                "id": f"synthetic:{serial}",
                "name": f"{template.name} (synthetic {serial})",
                "documents": tuple(documents),
            }
        )
        items.append((actor, drafts))
        made += count
        if len(items) == 2_000 or made >= wanted:
            store.upsert_actors(items)
            items = []
            log(f"  stored {made:,}/{wanted:,} synthetic chunks")
    source_rows = np.array(sources, dtype=np.int64)
    for demo in {d.model_id: d for d in cached.values()}.values():
        vectors, _ = replicate(demo.vectors, len(sources), sigma, seed, sources=source_rows)
        for start in range(0, len(hashes), 20_000):
            part = zip(hashes[start : start + 20_000], vectors[start : start + 20_000], strict=True)
            store.put_vectors(demo.model_id, dict(part))
        log(f"  cached {len(hashes):,} synthetic vectors for {demo.model_id}")
    runtime.close()

    reports: dict[str, Any] = {}
    built_dirs: dict[Path, str] = {}
    for item in variants if reindex else ():
        settings = item.settings(data_dir)
        if settings.index_dir in built_dirs:  # a serving-only variant of one already built
            reports[item.spec] = reports[built_dirs[settings.index_dir]]
            continue
        built_dirs[settings.index_dir] = item.spec
        indexer = Runtime(settings)
        built = time.perf_counter()
        report = indexer.reindexer.run()
        manifest = indexer.generations.read_manifest(report.generation)
        indexer.close()
        if report.embedded:
            log(f"warning: reindex for {item.spec} embedded {report.embedded} chunks (cache miss)")
        log(
            f"reindex {item.spec}: {report.chunks:,} chunks, {report.actors:,} actors, "
            f"{report.embedded} embedded, {manifest.index_kind} {manifest.index_params}, "
            f"{time.perf_counter() - built:.0f} s"
        )
        reports[item.spec] = {
            "generation": report.generation,
            "model": report.model,
            "chunks": report.chunks,
            "actors": report.actors,
            "embedded": report.embedded,
            "seconds": report.seconds,
            "index_kind": manifest.index_kind,
            "index_params": manifest.index_params,
            "recall_at_10": report.recall_at_10,
        }
    return {
        "demo_chunks": demo_chunks,
        "synthetic_chunks": made,
        "synthetic_actors": serial,
        "sigma": sigma,
        "reindex": reports,
        "seconds": round(time.perf_counter() - started, 1),
    }


STAGES = (
    ("embed the query", "service/embedding/", "embed"),
    ("detect the query's language", "service/text/language.py", "detect_language"),
    ("eligibility masks (read model)", "service/ranking.py", "__init__"),
    ("chunk candidates (FAISS + grouping)", "service/ranking.py", "chunk_hits"),
    ("  of which FAISS search", "service/index/faiss_index.py", "search"),
    ("BM25 candidates", "service/ranking.py", "lexical_hits"),
    ("exact scores of the candidates", "service/ranking.py", "score"),
    ("  of which vectors from FAISS", "service/index/faiss_index.py", "reconstruct"),
    ("the page: one store read + evidence", "service/matching.py", "_page"),
    ("  of which SQLite", "service/store/sql.py", "page"),
)


def stage_profile(
    data_dir: Path, item: Variant, queries: Sequence[str], count: int = 100
) -> dict[str, Any]:
    """Where one search's time goes, in process on the same data: wall-clock p50 of
    `Matcher.search` without a profiler, then each stage's share of it under cProfile."""
    import cProfile
    import pstats

    from service.runtime import Runtime

    runtime = Runtime(item.settings(data_dir))
    runtime.warm_up()
    matcher = runtime.matcher
    picked = list(queries[:count])
    for query in picked[:10]:
        matcher.search(query, limit=10)
    times = []
    for query in picked:
        started = time.perf_counter()
        matcher.search(query, limit=10)
        times.append(1000 * (time.perf_counter() - started))
    profiler = cProfile.Profile()
    profiler.enable()
    for query in picked:
        matcher.search(query, limit=10)
    profiler.disable()
    runtime.close()
    stats: dict[tuple[str, int, str], tuple[Any, ...]] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]

    def cumulative(path: str, name: str) -> float:
        return max(
            (v[3] for (f, _, fn), v in stats.items() if path in f and fn == name), default=0.0
        )

    total = cumulative("service/matching.py", "search")
    shares = {label: cumulative(path, name) / total for label, path, name in STAGES}
    return {
        "variant": item.spec,
        "searches": len(picked),
        "p50_ms": percentile(times, 50),
        "share": {k: round(v, 3) for k, v in shares.items()},
    }


def serve_command(data_dir: Path, item: Variant, port: int) -> list[str]:
    here = str(Path(__file__).resolve())
    return [sys.executable, here, "serve", str(data_dir), item.spec, "--port", str(port)]


def serve(args: argparse.Namespace) -> int:
    """The server process: the real app on loopback, as `clustermatch serve` builds it."""
    import uvicorn

    from service.api.app import create_app
    from service.runtime import Runtime

    settings = args.variant.settings(args.data_dir)
    if args.variant.workers == 1:
        app = create_app(Runtime(settings), warm=True)
        uvicorn.run(app, host=HOST, port=args.port, log_level="warning")
        return 0
    # As `clustermatch serve --workers N` does: every worker builds its runtime from the env.
    for name, value in settings.model_dump().items():
        if value is not None:
            os.environ[f"CLUSTERMATCH_{name.upper()}"] = str(value)
    from service.api.server import serve_workers

    serve_workers(HOST, args.port, args.variant.workers, "warning")
    return 0


# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Level:
    name: str
    concurrency: int
    requests: int


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog="Writes .bench/results/http.json; `serve` is the server process it starts.",
    )
    sub = parser.add_subparsers(dest="command")
    server = sub.add_parser("serve", help="run one server (started by the benchmark)")
    server.add_argument("data_dir", type=Path)
    server.add_argument("variant", type=variant)
    server.add_argument("--port", type=int, required=True)

    parser.add_argument("--chunks", type=int, default=100_000, help="total chunks (100000)")
    parser.add_argument(
        "--variants",
        nargs="+",
        type=variant,
        default=[Variant("torch"), Variant("onnx-int8")],
        metavar="BACKEND[:KEY=VALUE,...]",
        help="servers measured side by side: an embedding backend (torch, onnx-fp32, "
        "onnx-int8) with optional Settings overrides, e.g. onnx-int8:index=flat or "
        "torch:faiss_threads=2 (default: torch onnx-int8, the service's configuration)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--search-1", type=int, default=150, help="requests at 1 client (150)")
    parser.add_argument("--search-4", type=int, default=240, help="requests at 4 clients (240)")
    parser.add_argument("--search-16", type=int, default=400, help="requests at 16 clients (400)")
    parser.add_argument("--match-4", type=int, default=160, help="match requests, 4 clients")
    parser.add_argument(
        "--match-x500",
        type=int,
        default=100,
        help="match requests with limit 50 and 500 exclude_actors, 1 client (100)",
    )
    parser.add_argument(
        "--max-seconds", type=float, default=90.0, help="wall-clock cap per level (90)"
    )
    parser.add_argument("--sigma", type=float, default=DEFAULT_SIGMA, help="synthetic noise")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--keep-data", action="store_true", help="keep the data folder")
    args = parser.parse_args(argv)
    return args


def search_calls(queries: Sequence[str], count: int, rng: random.Random) -> list[Call]:
    return [Call("GET", f"/v1/search?q={quote(q)}&limit=10") for q in rng.choices(queries, k=count)]


def match_calls(actor_ids: Sequence[str], count: int, rng: random.Random) -> list[Call]:
    return [
        Call("POST", "/v1/match", {"actor_id": a, "limit": 10})
        for a in rng.choices(actor_ids, k=count)
    ]


def match_excluding_calls(
    actor_ids: Sequence[str], count: int, rng: random.Random, excluded: int = 500
) -> list[Call]:
    """A stored actor's 50 best matches with `excluded` known partners left out (issue 10's
    match target: p50 <= 20 ms at 100,000 chunks)."""
    return [
        Call(
            "POST",
            "/v1/match",
            {"actor_id": a, "limit": 50, "exclude_actors": rng.sample(actor_ids, excluded)},
        )
        for a in rng.choices(actor_ids, k=count)
    ]


def calls_for(
    level: Level, queries: Sequence[str], actor_ids: Sequence[str], rng: random.Random
) -> list[Call]:
    if level.name.startswith("match-x500"):
        return match_excluding_calls(actor_ids, level.requests, rng)
    if level.name.startswith("match"):
        return match_calls(actor_ids, level.requests, rng)
    return search_calls(queries, level.requests, rng)


def measure(
    servers: Sequence[Server],
    levels: Sequence[Level],
    queries: Sequence[str],
    actor_ids: Sequence[str],
    rounds: int,
    max_seconds: float,
    seed: int,
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Every (server, level) once per round, in a rotated order; per-round summaries."""
    rng = random.Random(seed)
    for server in servers:  # warm-up: first requests load lazily built parts
        run_load(server.url, search_calls(queries, 20, rng), 1, max_seconds)
        if any(level.name.startswith("match") for level in levels):
            run_load(server.url, match_calls(actor_ids, 10, rng), 1, max_seconds)
    cases = [(s, level) for s in servers for level in levels]
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        s.name: {level.name: [] for level in levels} for s in servers
    }
    for round_ in range(rounds):
        shift = round_ % len(cases)
        for server, level in cases[shift:] + cases[:shift]:
            calls = calls_for(level, queries, actor_ids, rng)
            result = run_load(server.url, calls, level.concurrency, max_seconds).summary()
            result["load_average"] = round(os.getloadavg()[0], 2)
            runs[server.name][level.name].append(result)
            log(
                f"round {round_ + 1}/{rounds} {server.name} {level.name}: "
                f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
                f"{result['throughput_rps']} req/s, {result['errors']} errors"
            )
    return runs


def summarise(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for server, levels in runs.items():
        out[server] = {}
        for level, rows in levels.items():
            out[server][level] = {
                "p50_ms": spread([r["p50_ms"] for r in rows if r["p50_ms"] is not None]),
                "p99_ms": spread([r["p99_ms"] for r in rows if r["p99_ms"] is not None]),
                "throughput_rps": spread([r["throughput_rps"] for r in rows]),
                "errors": sum(r["errors"] for r in rows),
                "requests": sum(r["ok"] + r["errors"] for r in rows),
                "capped_rounds": sum(1 for r in rows if r["capped"]),
            }
    return out


def targets(summary: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, per server: sequential search p50 <= 15 ms and p99 <= 40 ms;
    16 clients without errors and p99 <= 100 ms."""
    verdicts: dict[str, Any] = {}
    for server, levels in summary.items():
        one, sixteen = levels.get("search-1"), levels.get("search-16")
        verdicts[server] = {
            "search_p50_le_15ms": one is not None and one["p50_ms"]["median"] <= 15,
            "search_p99_le_40ms": one is not None and one["p99_ms"]["median"] <= 40,
            "c16_no_errors": sixteen is not None and sixteen["errors"] == 0,
            "c16_p99_le_100ms": sixteen is not None and sixteen["p99_ms"]["median"] <= 100,
            "match_x500_p50_le_20ms": (x500 := levels.get("match-x500-1")) is not None
            and x500["p50_ms"]["median"] <= 20,
        }
    return verdicts


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "serve":
        return serve(args)
    started = time.perf_counter()
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="http-data-", dir=BENCH_DIR))
    servers: list[Server] = []
    try:
        data = build_store(data_dir, args.chunks, args.variants, args.sigma)
        for item in args.variants:
            port = free_port()
            log_path = data_dir / f"server-{item.slug}.log"
            command = serve_command(data_dir, item, port)
            servers.append(start_server(item.spec, command, port, "/readyz", log_path))
        queries = demo_vectors("onnx-fp32").query_texts
        actor_ids = [a.id for a in load_demo_actors()]
        levels = [
            Level("search-1", 1, args.search_1),
            Level("search-4", 4, args.search_4),
            Level("search-16", 16, args.search_16),
            Level("match-4", 4, args.match_4),
            Level("match-x500-1", 1, args.match_x500),
        ]
        runs = measure(
            servers, levels, queries, actor_ids, args.rounds, args.max_seconds, args.seed
        )
        for server in servers:
            server.stop()
        log("in-process stage profile of Matcher.search")
        stages = [stage_profile(data_dir, item, queries) for item in args.variants]
    finally:
        for server in servers:
            server.stop()
        if not args.keep_data:
            shutil.rmtree(data_dir, ignore_errors=True)
    summary = summarise(runs)
    write_result(
        "http",
        {
            "data": data,
            "levels": [level.__dict__ for level in levels],
            "rounds": args.rounds,
            "max_seconds_per_level": args.max_seconds,
            "queries": len(queries),
            "servers": [s.name for s in servers],
            "summary": summary,
            "targets": targets(summary),
            "stages": stages,
            "runs": runs,
        },
        started,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
