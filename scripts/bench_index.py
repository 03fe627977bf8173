#!/usr/bin/env python3
"""FAISS index benchmark: exact FlatIP against HNSW on real demo vectors replicated with noise.

Vectors are never uniform random (HNSW recall on random vectors says nothing about real data).
The distinct demo passages are embedded once with the real model and cached under
`.bench/cache/`; N vectors are made by sampling those passage vectors, adding Gaussian noise of
`--sigma` per dimension and re-normalising. Queries are real project titles from the demo data,
embedded as queries by the same model. For each size (default 10k, 100k, 1M) the script measures,
in one process and interleaved round by round (the machine is shared):

- build time (median and min-max over `--build-repeats`; one build where it takes long),
- one query at a time (k=10, sequential) p50/p99 latency, per round, median and min-max,
- recall@10 against exact search (FlatIP at the same size is the ground truth),
- memory: bytes of the written index file and the process RSS growth during the build.

HNSW uses the service's parameters (M=32, efConstruction=200) at efSearch 64/128/256, passed per
call as the service does. An HNSW build is added in slices of 50k and, from the second slice on,
abandoned when its projection (n log n) exceeds `--max-build-seconds`; the full build time is
then extrapolated (and said to be). A FlatIP-only sweep over more sizes finds where the exact
search's p50 crosses `--latency-budget-ms`, which is what `HNSW_THRESHOLD` in
service/reindex.py should follow.

    .venv/bin/python scripts/bench_index.py --sizes 10000 100000 1000000 --rounds 3
"""

from __future__ import annotations

import argparse
import gc
import gzip
import hashlib
import json
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import numpy.typing as npt
from bench_report import (
    BENCH_DIR,
    CACHE_DIR,
    log,
    percentile,
    rss_bytes,
    spread,
    write_result,
)

from service.index.faiss_index import FaissIndex, HnswParams, faiss

Matrix = npt.NDArray[np.float32]

DEFAULT_SIGMA = 0.04
"""Per-dimension noise. Two copies of one passage then sit at cosine ~0.62 (1 / (1 + 384 sigma^2)),
about as close as a real demo passage and its nearest real neighbour (median 0.59), and a copy
keeps cosine ~0.79 to its source. With 3,320 distinct passages, 100k vectors hold ~30 copies of
each, so a query's top 10 is mostly copies of one passage: `neighbour_profile` reports it."""
EF_SEARCHES = (64, 128, 256)
MAX_THREADS = int(faiss.omp_get_max_threads())
"""FAISS's default OpenMP threads (one per core): what the service runs with; builds use it."""


# --------------------------------------------------------------------------------------------
# the demo passages, embedded once


@dataclass(frozen=True)
class DemoVectors:
    model_id: str
    backend: str
    texts: list[str]
    """Distinct chunk texts of the demo data, as the service's ingest chunks them."""
    hashes: list[str]
    vectors: Matrix
    query_texts: list[str]
    """Distinct project titles (first sentence of a demo document)."""
    query_vectors: Matrix


def _demo_file() -> Path:
    from service.cli import DEMO_FILE

    return Path(DEMO_FILE)


def demo_vectors(backend: str = "onnx-fp32", queries: int = 1000) -> DemoVectors:
    """The distinct demo passages and some title queries, embedded by the real model; cached.

    `onnx-fp32` gives the vectors of the reference (torch) model, to ~3e-6, and shares its model
    id; `onnx-int8` gives the int8 model's own vectors (its own model id).
    """
    demo = _demo_file()
    key = hashlib.sha256(demo.read_bytes() + f"{backend}:{queries}:v1".encode()).hexdigest()[:12]
    path = CACHE_DIR / f"demo-vectors-{backend}-{key}.npz"
    meta_path = path.with_suffix(".json")
    if path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        arrays = np.load(path)
        return DemoVectors(
            meta["model_id"],
            backend,
            meta["texts"],
            meta["hashes"],
            arrays["vectors"].astype(np.float32),
            meta["query_texts"],
            arrays["query_vectors"].astype(np.float32),
        )

    from service.config import Settings
    from service.domain import Actor
    from service.runtime import Runtime

    log(f"embedding cache {path.name} missing: ingesting the demo data and embedding it once")
    with gzip.open(demo, "rt", encoding="utf-8") as handle:
        actors = [Actor.parse(json.loads(line)) for line in handle]
    with tempfile.TemporaryDirectory(dir=_tmp_root()) as tmp:
        runtime = Runtime(Settings(data_dir=Path(tmp), backend=backend))  # type: ignore[arg-type]
        runtime.ingestor.upsert(actors)
        distinct: dict[str, str] = {}
        for batch in runtime.store.iter_chunks():
            for chunk in batch:
                distinct.setdefault(chunk.content_hash, chunk.text)
        hashes = sorted(distinct)
        texts = [distinct[h] for h in hashes]
        embedder = runtime.embedder
        model_id = embedder.model_id
        parts = []
        started = time.perf_counter()
        for start in range(0, len(texts), 512):
            parts.append(embedder.embed(texts[start : start + 512], role="passage"))
            done = min(start + 512, len(texts))
            rate = done / (time.perf_counter() - started)
            log(f"  embedded {done}/{len(texts)} passages ({rate:.0f}/s, {backend})")
        vectors = np.vstack(parts).astype(np.float32)
        titles = sorted({project_title(t) for t in texts})
        random.Random(7).shuffle(titles)
        titles = titles[:queries]
        query_vectors = embedder.embed(titles, role="query").astype(np.float32)
        runtime.close()
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    np.savez(path, vectors=vectors, query_vectors=query_vectors)
    meta_path.write_text(
        json.dumps(
            {
                "model_id": model_id,
                "texts": texts,
                "hashes": hashes,
                "query_texts": titles,
            }
        )
    )
    return DemoVectors(model_id, backend, texts, hashes, vectors, titles, query_vectors)


def project_title(passage: str) -> str:
    """A demo passage is "<acronym>\n<project title>. <topic>": the title is the query."""
    return passage.split("\n", 1)[-1].split(". ", 1)[0].strip()


def _tmp_root() -> Path:
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    return BENCH_DIR


def normalise(matrix: Matrix) -> Matrix:
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix


def replicate(
    base: Matrix, n: int, sigma: float, seed: int, sources: npt.NDArray[np.int64] | None = None
) -> tuple[Matrix, npt.NDArray[np.int64]]:
    """`n` vectors: random rows of `base` (or the rows `sources`) plus N(0, sigma^2) noise per
    dimension, re-normalised. Returns the vectors and the base row each came from."""
    rng = np.random.default_rng(seed)
    if sources is None:
        sources = rng.integers(0, len(base), size=n, dtype=np.int64)
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    step = 100_000
    for start in range(0, n, step):
        rows = sources[start : start + step]
        block = base[rows] + sigma * rng.standard_normal((len(rows), base.shape[1]), np.float32)
        out[start : start + len(rows)] = normalise(block)
    return out, sources


# --------------------------------------------------------------------------------------------
# measurements


def sequential_latencies(
    index: FaissIndex, queries: Matrix, k: int, ef: int | None = None
) -> tuple[list[float], npt.NDArray[np.int64]]:
    """Milliseconds of each query searched alone, one after the other, and the ids found."""
    params = faiss.SearchParametersHNSW(efSearch=max(ef, k)) if ef is not None else None
    inner = index._index
    times: list[float] = []
    found = np.empty((len(queries), k), dtype=np.int64)
    for row in range(len(queries)):
        query = queries[row : row + 1]
        start = time.perf_counter()
        _, ids = inner.search(query, k, params=params)
        times.append(1000 * (time.perf_counter() - start))
        found[row] = ids[0]
    return times, found


def recall(found: npt.NDArray[np.int64], truth: npt.NDArray[np.int64]) -> float:
    hits = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(found, truth, strict=True))
    return hits / truth.size


def file_bytes(index: FaissIndex) -> int:
    with tempfile.TemporaryDirectory(dir=_tmp_root()) as tmp:
        path = Path(tmp) / "index.faiss"
        index.save(path)
        return path.stat().st_size


@dataclass
class Built:
    index: FaissIndex | None
    seconds: float
    """Measured build seconds (of the whole build, or of the part done before the cap)."""
    complete: bool
    added: int
    rss_delta: int
    estimated_seconds: float | None = None


def build(
    kind: str,
    vectors: Matrix,
    ids: npt.NDArray[np.int64],
    max_seconds: float,
    slice_size: int = 50_000,
) -> Built:
    """Build one index; HNSW in slices, giving up (and extrapolating) past `max_seconds`."""
    gc.collect()
    rss_before = rss_bytes()
    started = time.perf_counter()
    index = FaissIndex(vectors.shape[1], kind="hnsw-sq8" if kind == "hnsw" else "flat")
    added = 0
    elapsed = 0.0
    while added < len(vectors):
        end = min(added + slice_size, len(vectors))
        index.add(ids[added:end], vectors[added:end])
        added = end
        elapsed = time.perf_counter() - started
        if kind == "hnsw" and len(vectors) > slice_size:
            log(f"    hnsw build {added}/{len(vectors)} after {elapsed:.0f} s")
        if kind == "hnsw" and added < len(vectors) and added >= 2 * slice_size:
            # HNSW insertion cost grows about with log(n): extrapolate from the rate so far.
            scale = (len(vectors) * math.log(len(vectors))) / (added * math.log(max(added, 2)))
            estimate = elapsed * scale
            if estimate > max_seconds:
                log(f"    hnsw build would take ~{estimate:.0f} s > cap {max_seconds:.0f} s: stop")
                rss_delta = rss_bytes() - rss_before
                del index
                gc.collect()
                return Built(None, elapsed, False, added, rss_delta, estimate)
    seconds = time.perf_counter() - started
    return Built(index, seconds, True, added, rss_bytes() - rss_before)


def neighbour_profile(vectors: Matrix, queries: Matrix, k: int = 10) -> dict[str, float]:
    """Median cosine of a query's 1st and k-th nearest vector: how dense the neighbourhood is."""
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    scores, _ = index.search(queries, k)
    return {
        "top1_cosine_median": round(float(np.median(scores[:, 0])), 3),
        f"top{k}_cosine_median": round(float(np.median(scores[:, k - 1])), 3),
    }


# --------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog="Writes .bench/results/index.json; `scripts/bench_report.py render` shows it.",
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[10_000, 100_000, 1_000_000],
        help="chunk counts compared FlatIP vs HNSW (default 10000 100000 1000000)",
    )
    parser.add_argument(
        "--flat-sweep",
        type=int,
        nargs="*",
        default=[25_000, 50_000, 200_000, 300_000, 500_000],
        help="extra FlatIP-only sizes for the latency threshold (default 25k 50k 200k 300k 500k)",
    )
    parser.add_argument(
        "--sweep-queries", type=int, default=100, help="queries per round in the sweep (100)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="timed query rounds (default 3)")
    parser.add_argument("--queries", type=int, default=200, help="queries per round (default 200)")
    parser.add_argument("--k", type=int, default=10, help="neighbours per query (default 10)")
    parser.add_argument(
        "--sigma", type=float, default=DEFAULT_SIGMA, help=f"noise (default {DEFAULT_SIGMA})"
    )
    parser.add_argument(
        "--build-repeats", type=int, default=3, help="builds per index when quick (default 3)"
    )
    parser.add_argument(
        "--max-build-seconds",
        type=float,
        default=600,
        help="give up an HNSW build projected to take longer; extrapolate (default 600)",
    )
    parser.add_argument(
        "--latency-budget-ms",
        type=float,
        default=10.0,
        help="FlatIP p50 that calls for HNSW (default 10 ms)",
    )
    parser.add_argument(
        "--omp-threads",
        type=int,
        nargs="+",
        default=[1, MAX_THREADS],
        help=f"FAISS OpenMP threads for the timed queries; the first is the headline and the "
        f"recall run (default 1 {MAX_THREADS}: single-threaded, and the service's default)",
    )
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--embed-backend",
        default="onnx-fp32",
        choices=["torch", "onnx-fp32"],
        help="how the demo passages are embedded once (both give the reference model's vectors)",
    )
    parser.add_argument("--no-write", action="store_true", help="print only, write no result")
    return parser.parse_args(argv)


def measure_size(
    n: int,
    base: Matrix,
    queries: Matrix,
    args: argparse.Namespace,
    hnsw: bool,
) -> dict[str, Any]:
    """Flat (and HNSW) at one size: build, latency rounds, recall, memory."""
    log(f"size {n:,}: making vectors (sigma {args.sigma})")
    vectors, _ = replicate(base, n, args.sigma, seed=args.seed + n)
    ids = np.arange(n, dtype=np.int64)
    result: dict[str, Any] = {"n": n, "profile": neighbour_profile(vectors, queries, args.k)}
    log(f"size {n:,}: neighbourhood {result['profile']}")

    flats = []
    for _ in range(args.build_repeats):  # keep only the last index alive
        flats.append(build("flat", vectors, ids, args.max_build_seconds))
        if len(flats) > 1:
            flats[-2].index = None
    flat = flats[-1]
    assert flat.index is not None
    configs: dict[str, Any] = {
        "flat": {
            "build_seconds": spread([b.seconds for b in flats]),
            "file_bytes": file_bytes(flat.index),
            "rss_delta_bytes": max(b.rss_delta for b in flats),
        }
    }
    indexes: dict[str, tuple[FaissIndex, int | None]] = {"flat": (flat.index, None)}
    if hnsw:
        log(f"size {n:,}: building HNSW (M=32, efConstruction=200)")
        first = build("hnsw", vectors, ids, args.max_build_seconds)
        builds = [first]
        while first.complete and first.seconds * 2 < 60 and len(builds) < args.build_repeats:
            builds[-1].index = None
            builds.append(build("hnsw", vectors, ids, args.max_build_seconds))
        last = builds[-1]
        entry: dict[str, Any] = {
            "build_seconds": spread([b.seconds for b in builds]),
            "complete": last.complete,
            "added_before_cap": last.added,
            "rss_delta_bytes": max(b.rss_delta for b in builds),
        }
        if last.complete:
            assert last.index is not None
            entry["file_bytes"] = file_bytes(last.index)
            for ef in EF_SEARCHES:
                indexes[f"hnsw-ef{ef}"] = (last.index, ef)
        else:
            entry["estimated_build_seconds"] = last.estimated_seconds
            entry["measured_seconds_before_cap"] = last.seconds
        configs["hnsw"] = entry

    rng = np.random.default_rng(args.seed)
    # Every (index, OMP threads) pair is timed in each round, in a rotated order.
    cases = [(name, t) for name in indexes for t in args.omp_threads]
    per_round: dict[tuple[str, int], dict[str, list[float]]] = {
        c: {"p50": [], "p99": []} for c in cases
    }
    found: dict[str, list[npt.NDArray[np.int64]]] = {name: [] for name in indexes}
    for round_ in range(args.rounds):
        picked = rng.choice(len(queries), size=min(args.queries, len(queries)), replace=False)
        batch = np.ascontiguousarray(queries[picked])
        shift = round_ % len(cases)
        for name, threads in cases[shift:] + cases[:shift]:
            index, ef = indexes[name]
            faiss.omp_set_num_threads(threads)
            times, got = sequential_latencies(index, batch, args.k, ef)
            per_round[name, threads]["p50"].append(percentile(times, 50))
            per_round[name, threads]["p99"].append(percentile(times, 99))
            if threads == args.omp_threads[0]:
                found[name].append(got)
        faiss.omp_set_num_threads(MAX_THREADS)
        summary = ", ".join(f"{m}/{t}t {per_round[m, t]['p50'][-1]:.2f}" for m, t in cases)
        log(f"size {n:,} round {round_ + 1}/{args.rounds} p50 ms: {summary}")
    truth = np.vstack(found["flat"])
    for name in indexes:
        latency: dict[str, Any] = {
            "recall_at_10": recall(np.vstack(found[name]), truth),
            "by_threads": {
                str(t): {
                    "p50_ms": spread(per_round[name, t]["p50"]),
                    "p99_ms": spread(per_round[name, t]["p99"]),
                }
                for t in args.omp_threads
            },
        }
        if name == "flat":
            configs["flat"].update(latency)
        else:
            configs.setdefault("hnsw_search", {})[name] = latency
    result["configs"] = configs
    del indexes, flat, flats, vectors
    gc.collect()
    return result


def flat_sweep(
    sizes: Sequence[int], base: Matrix, queries: Matrix, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """FlatIP p50/p99 at more sizes, all built up front and timed interleaved per round."""
    if not sizes:
        return []
    largest = max(sizes)
    log(f"flat sweep: {len(sizes)} sizes up to {largest:,}")
    vectors, _ = replicate(base, largest, args.sigma, seed=args.seed + 1)
    indexes = {}
    for n in sorted(sizes):  # prefixes of one random sample are random samples too
        index = FaissIndex(vectors.shape[1])
        index.add(np.arange(n, dtype=np.int64), vectors[:n])
        indexes[n] = index
    del vectors
    rng = np.random.default_rng(args.seed + 2)
    cases = [(n, t) for n in indexes for t in args.omp_threads]
    p50: dict[tuple[int, int], list[float]] = {c: [] for c in cases}
    p99: dict[tuple[int, int], list[float]] = {c: [] for c in cases}
    for round_ in range(args.rounds):
        size = min(args.sweep_queries, len(queries))
        batch = np.ascontiguousarray(queries[rng.choice(len(queries), size=size, replace=False)])
        shift = round_ % len(cases)
        for n, threads in cases[shift:] + cases[:shift]:
            faiss.omp_set_num_threads(threads)
            times, _ = sequential_latencies(indexes[n], batch, args.k)
            p50[n, threads].append(percentile(times, 50))
            p99[n, threads].append(percentile(times, 99))
        faiss.omp_set_num_threads(MAX_THREADS)
        log(f"flat sweep round {round_ + 1}/{args.rounds} done")
    rows = [
        {
            "n": n,
            "by_threads": {
                str(t): {"p50_ms": spread(p50[n, t]), "p99_ms": spread(p99[n, t])}
                for t in args.omp_threads
            },
        }
        for n in indexes
    ]
    del indexes
    gc.collect()
    return rows


def crossing(points: Sequence[tuple[int, float]], budget: float) -> dict[str, Any]:
    """Where p50(n), linear in n for exact search, reaches `budget` (least-squares fit), and the
    smallest measured size already over it."""
    points = sorted(points)
    xs = np.array([p[0] for p in points], dtype=np.float64)
    ys = np.array([p[1] for p in points], dtype=np.float64)
    slope, intercept = np.polyfit(xs, ys, 1)
    at = (budget - intercept) / slope if slope > 0 else float("inf")
    over = [n for n, p50 in points if p50 > budget]
    return {
        "ms_per_100k": round(float(slope) * 100_000, 3),
        "intercept_ms": round(float(intercept), 3),
        "budget_ms": budget,
        "chunks_at_budget": int(at) if at > 0 and math.isfinite(at) else None,
        "first_measured_over": over[0] if over else None,
        "last_measured_under": max((n for n, p50 in points if p50 <= budget), default=None),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    demo = demo_vectors(args.embed_backend)
    base = demo.vectors
    queries = np.ascontiguousarray(demo.query_vectors)
    log(
        f"{len(base)} distinct demo passage vectors, {len(queries)} title queries "
        f"({demo.model_id}); faiss {faiss.__version__}, {MAX_THREADS} OMP threads by default"
    )
    real_profile = neighbour_profile(base, queries, args.k)
    sizes = sorted(args.sizes)
    results = []
    for n in sizes:
        results.append(measure_size(n, base, queries, args, hnsw=True))
        _write(args, demo, real_profile, results, [], None, started)
    sweep = flat_sweep(sorted(set(args.flat_sweep) - set(sizes)), base, queries, args)
    threshold = {}
    for t in args.omp_threads:
        rows = [*sweep, *({"n": r["n"], **r["configs"]["flat"]} for r in results)]
        points = [(row["n"], row["by_threads"][str(t)]["p50_ms"]["median"]) for row in rows]
        threshold[str(t)] = crossing(points, args.latency_budget_ms)
        log(f"FlatIP p50 ({t} OMP threads) vs {args.latency_budget_ms} ms: {threshold[str(t)]}")
    _write(args, demo, real_profile, results, sweep, threshold, started)
    return 0


def _write(
    args: argparse.Namespace,
    demo: DemoVectors,
    real_profile: dict[str, float],
    results: list[dict[str, Any]],
    sweep: list[dict[str, Any]],
    threshold: dict[str, Any] | None,
    started: float,
) -> None:
    payload = {
        "model_id": demo.model_id,
        "distinct_passages": len(demo.vectors),
        "queries": {"pool": len(demo.query_vectors), "per_round": args.queries},
        "rounds": args.rounds,
        "k": args.k,
        "sigma": args.sigma,
        "hnsw": {"M": HnswParams().m, "efConstruction": HnswParams().ef_construction},
        "omp_threads": args.omp_threads,
        "omp_threads_default": MAX_THREADS,
        "max_build_seconds": args.max_build_seconds,
        "real_profile": real_profile,
        "sizes": results,
        "flat_sweep": sweep,
        "threshold": threshold,
        "complete": threshold is not None,
    }
    if args.no_write:
        print(json.dumps(payload, indent=2, default=float))
    else:
        write_result("index", payload, started)


if __name__ == "__main__":
    raise SystemExit(main())
