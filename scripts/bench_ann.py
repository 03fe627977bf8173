#!/usr/bin/env python3
"""Compressed FAISS indexes for the capacity plan (docs/scaling.md): bytes per chunk, build time,
query latency and recall@10 of HNSW with 8-bit scalar quantisation and IVF with scalar or
product quantisation, against exact search, at one size (default 1,000,000 chunks).

Vectors and queries as in bench_index.py (real demo passage vectors replicated with noise, real
title queries). Each index is built once (`faiss.index_factory`, inner product; trained on a
`--train` sample where it needs training); queries run one at a time with 1 OpenMP thread (as
the service searches), `--rounds` rounds interleaved over the indexes, medians with min-max.
Bytes: what `faiss.write_index` writes, per chunk.

    .venv/bin/python scripts/bench_ann.py --chunks 1000000 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import numpy.typing as npt
from bench_index import DEFAULT_SIGMA, demo_vectors, recall, replicate
from bench_report import BENCH_DIR, log, percentile, spread, write_result

from service.index.faiss_index import faiss

SPECS = {
    "HNSW32,SQ8": [{"efSearch": 64}, {"efSearch": 128}, {"efSearch": 256}],
    "IVF4096,SQ8": [{"nprobe": 16}, {"nprobe": 64}],
    "IVF4096,PQ48": [{"nprobe": 16}, {"nprobe": 64}, {"nprobe": 16, "refine": 4}],
}
"""Index and search parameters. `refine: r`: fetch r*k candidates from the compressed index and
re-rank them by exact inner product with their full vectors (numpy), as the service's second
stage does with every candidate's chunk vectors anyway."""


def search_params(params: dict[str, int]) -> Any:
    if "efSearch" in params:
        return faiss.SearchParametersHNSW(efSearch=params["efSearch"])
    return faiss.SearchParametersIVF(nprobe=params["nprobe"])


def timed_search(
    index: Any,
    queries: npt.NDArray[np.float32],
    k: int,
    params: dict[str, int],
    vectors: npt.NDArray[np.float32],
) -> tuple[list[float], npt.NDArray[np.int64]]:
    refine = params.get("refine", 1)
    faiss_params = search_params(params)
    times, found = [], np.empty((len(queries), k), dtype=np.int64)
    for row in range(len(queries)):
        query = queries[row : row + 1]
        started = time.perf_counter()
        _, ids = index.search(query, k * refine, params=faiss_params)
        hits = ids[0]
        if refine > 1:
            hits = hits[hits >= 0]
            hits = hits[np.argsort(-(vectors[hits] @ query[0]))[:k]]
        times.append(1000 * (time.perf_counter() - started))
        found[row] = hits[:k]
    return times, found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=1_000_000)
    parser.add_argument("--train", type=int, default=160_000, help="training sample (160000)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--specs", nargs="+", default=list(SPECS), choices=list(SPECS))
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    started = time.perf_counter()

    demo = demo_vectors("onnx-fp32")
    vectors, _ = replicate(demo.vectors, args.chunks, DEFAULT_SIGMA, args.seed)
    queries = np.ascontiguousarray(demo.query_vectors[: args.queries])
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, : args.k]
    log(f"{args.chunks:,} vectors, exact top-{args.k} of {len(queries)} queries computed")
    rng = np.random.default_rng(args.seed)
    sample = vectors[rng.choice(len(vectors), size=min(args.train, len(vectors)), replace=False)]

    built: dict[str, Any] = {}
    facts: dict[str, dict[str, Any]] = {}
    for spec in args.specs:
        index = faiss.index_factory(vectors.shape[1], spec, faiss.METRIC_INNER_PRODUCT)
        began = time.perf_counter()
        if not index.is_trained:
            index.train(sample)
        trained = time.perf_counter() - began
        index.add(vectors)
        seconds = time.perf_counter() - began
        with tempfile.TemporaryDirectory(dir=BENCH_DIR) as tmp:
            path = Path(tmp) / "index.faiss"
            faiss.write_index(index, str(path))
            size = path.stat().st_size
        built[spec] = index
        facts[spec] = {
            "train_s": round(trained, 1),
            "build_s": round(seconds, 1),
            "file_bytes": size,
            "bytes_per_chunk": round(size / args.chunks, 1),
        }
        log(f"built {spec}: {facts[spec]}")

    faiss.omp_set_num_threads(1)
    cases = [(spec, p) for spec in args.specs for p in SPECS[spec]]
    runs: dict[str, list[dict[str, float]]] = {f"{s} {p}": [] for s, p in cases}
    for round_ in range(args.rounds):
        shift = round_ % len(cases)
        for spec, params in cases[shift:] + cases[:shift]:
            times, found = timed_search(built[spec], queries, args.k, params, vectors)
            runs[f"{spec} {params}"].append(
                {
                    "p50_ms": round(percentile(times, 50), 3),
                    "p99_ms": round(percentile(times, 99), 3),
                    "recall_at_10": round(recall(found, truth), 4),
                }
            )
        log(f"round {round_ + 1}/{args.rounds} done")
    summary = {
        name: {
            **facts[name.split(" {")[0]],
            **{key: spread([r[key] for r in rows]) for key in rows[0]},
        }
        for name, rows in runs.items()
    }
    for name, row in summary.items():
        log(
            f"{name}: p50 {row['p50_ms']['median']} ms, recall {row['recall_at_10']['median']}, "
            f"{row['bytes_per_chunk']} B/chunk, build {row['build_s']} s"
        )
    write_result(
        f"ann-{args.chunks}",
        {"chunks": args.chunks, "train": args.train, "sigma": DEFAULT_SIGMA, "summary": summary},
        started,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
