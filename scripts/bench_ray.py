#!/usr/bin/env python3
"""Re-embedding throughput: the rebuild's local encoder against Ray Data on a local cluster.

The same passages go through `LocalEncoder` (the service's embedder in this process, the default
backend onnx-fp32, `--threads` threads) and `RayEncoder` on a local Ray cluster of this machine's
CPUs (`ray.init(num_cpus=...)`, once), as W actors of T threads each (`--ray-shapes 2x1 1x2`).
Every case runs twice per round, on `--small` and on `--texts` passages, so its fixed cost (for
Ray: starting the actor pool and loading one model per actor) and its marginal rate are separated:
rate = (texts - small) / (t_texts - t_small), fixed = t_small - small / rate. Rounds are
interleaved with the order rotated (the machine is shared); figures are medians with min-max.

Passages: `short` are distinct demo document texts (mean ~28 tokens); `long` join four of them
(~110 tokens, near the 128-token chunk size of MiniLM's profile), closer to a real passage.

    .venv/bin/python scripts/bench_ray.py --texts 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_embedding import demo_texts
from bench_report import log, spread, write_result

from service.config import ModelProfile
from service.embedding.bulk import LocalEncoder, PassageEncoder
from service.embedding.factory import load_embedder
from service.embedding.ray_batch import RayEncoder
from service.reindex import EMBED_BATCH


def passages(kind: str, count: int, seed: int) -> list[tuple[str, str]]:
    texts = demo_texts(3000 if kind == "long" else count, seed)
    if kind == "long":
        rng = random.Random(seed)
        texts = [" ".join(rng.sample(texts, 4)) for _ in range(count)]
    return [(f"{kind}-{i}", text) for i, text in enumerate(texts[:count])]


def run(encoder: PassageEncoder, items: Sequence[tuple[str, str]]) -> float:
    started = time.perf_counter()
    done = sum(len(hashes) for hashes, _ in encoder.encode(items))
    assert done == len(items)
    return time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=2000, help="passages per timed run (2000)")
    parser.add_argument("--small", type=int, default=64, help="passages of the fixed-cost run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="local encoder threads (2)")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="Ray CPUs")
    parser.add_argument("--ray-shapes", nargs="+", default=["2x1", "1x2"], help="WORKERSxTHREADS")
    parser.add_argument("--kinds", nargs="+", default=["short", "long"], choices=["short", "long"])
    parser.add_argument("--backend", default="onnx-fp32", help="embedding backend (onnx-fp32)")
    parser.add_argument("--model", default="all-minilm-l6-v2", help="model profile name")
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args(argv)
    started = time.perf_counter()

    import ray

    profile = ModelProfile.load(args.model)
    began = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level=logging.WARNING)
    ray_init_s = time.perf_counter() - began
    local = load_embedder(profile, threads=args.threads, backend=args.backend)  # type: ignore[arg-type]
    local_encoder = LocalEncoder(local, EMBED_BATCH)
    run(local_encoder, passages("short", 16, args.seed))  # load and warm the local model
    cases: dict[str, PassageEncoder] = {f"local, {args.threads} threads": local_encoder}
    for shape in args.ray_shapes:
        workers, threads = (int(x) for x in shape.split("x"))
        make = partial(load_embedder, profile, threads=threads, backend=args.backend)
        cases[f"Ray, {workers} actors x {threads} threads"] = RayEncoder(
            "auto", make, local.model_id, workers=workers, threads=threads, batch_size=EMBED_BATCH
        )
    data = {
        k: (passages(k, args.small, args.seed), passages(k, args.texts, args.seed))
        for k in args.kinds
    }
    runs: dict[str, dict[str, list[dict[str, float]]]] = {
        name: {kind: [] for kind in args.kinds} for name in cases
    }
    order = [(name, kind) for name in cases for kind in args.kinds]
    for round_ in range(args.rounds):
        shift = round_ % len(order)
        for name, kind in order[shift:] + order[:shift]:
            small, big = data[kind]
            t_small, t_big = run(cases[name], small), run(cases[name], big)
            rate = (len(big) - len(small)) / max(t_big - t_small, 1e-9)
            row = {
                "small_s": round(t_small, 3),
                "texts_s": round(t_big, 3),
                "texts_per_s": round(len(big) / t_big, 1),
                "marginal_texts_per_s": round(rate, 1),
                "fixed_s": round(t_small - len(small) / rate, 2),
                "load_average": round(os.getloadavg()[0], 2),
            }
            runs[name][kind].append(row)
            log(f"round {round_ + 1}/{args.rounds} {name} {kind}: {row}")
    ray.shutdown()

    def summary(rows: list[dict[str, float]]) -> dict[str, Any]:
        return {key: spread([r[key] for r in rows]) for key in rows[0]}

    local_name = next(iter(cases))
    ratios = {
        name: {
            kind: spread(
                [
                    r["marginal_texts_per_s"] / base["marginal_texts_per_s"]
                    for r, base in zip(runs[name][kind], runs[local_name][kind], strict=True)
                ]
            )
            for kind in args.kinds
        }
        for name in cases
    }
    write_result(
        "ray",
        {
            "backend": args.backend,
            "model": profile.id,
            "texts": args.texts,
            "small": args.small,
            "cpus": args.cpus,
            "ray_init_s": round(ray_init_s, 2),
            "summary": {
                n: {k: summary(rows) for k, rows in kinds.items()} for n, kinds in runs.items()
            },
            "marginal_rate_vs_local": ratios,
            "runs": runs,
        },
        started,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
