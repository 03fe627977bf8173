#!/usr/bin/env python3
"""Embedding throughput: ONNX Runtime int8 and fp32 against sentence-transformers on torch.

All backends run in one process on the same demo texts. The repeats are interleaved (every backend
once per round, the order rotated each round), so load from other jobs on a shared machine hits all
of them alike instead of whichever happened to run at the time; the ratio to torch is taken per
round (paired) and its median reported, which is steadier than a ratio of medians when the load
changes between rounds. Prints a markdown table: median and best texts/s, the spread over the
rounds (min-max), the ratio to torch, and the p50 latency of a single query.

    .venv/bin/python scripts/bench_embedding.py --texts 1200 --repeats 5

`--passage-sessions 1 2` also compares the ONNX cases on one session of `--threads` threads
against passages spread over two single-threaded sessions (`OnnxEmbedder(passage_sessions=)`).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from service.cli import DEMO_FILE
from service.config import ModelProfile
from service.embedding.base import Embedder
from service.embedding.onnx import DEFAULT_CACHE_DIR, OnnxEmbedder
from service.embedding.sentence_transformers import SentenceTransformerEmbedder


@dataclass
class Case:
    backend: str
    batch_size: int
    embedder: Embedder
    sessions: int = 1
    rates: list[float] = field(default_factory=list)
    query_ms: float = float("nan")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--texts", type=int, default=1200, help="demo texts (default 1200)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=[16, 32, 64],
        help="ONNX batch sizes to try (default 16 32 64)",
    )
    parser.add_argument("--torch-batch-size", type=int, default=32, help="default 32")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2)")
    parser.add_argument("--queries", type=int, default=50, help="single-query timings (default 50)")
    parser.add_argument("--model", default="all-minilm-l6-v2", help="model profile name")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="ONNX cache")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--no-torch", action="store_true", help="skip the torch baseline")
    parser.add_argument(
        "--passage-sessions",
        type=int,
        nargs="+",
        default=[1],
        help="ONNX passage sessions to try (default 1: one session of --threads threads)",
    )
    return parser.parse_args(argv)


def demo_texts(count: int, seed: int) -> list[str]:
    """Distinct demo document texts ("<project title>. <topic description>"), a seeded sample."""
    with gzip.open(DEMO_FILE, "rt", encoding="utf-8") as handle:
        unique = sorted({d["text"] for line in handle for d in json.loads(line)["documents"]})
    random.Random(seed).shuffle(unique)
    if len(unique) < count:
        raise SystemExit(f"only {len(unique)} distinct demo texts, asked for {count}")
    return unique[:count]


def build_cases(args: argparse.Namespace, profile: ModelProfile) -> list[Case]:
    cases: list[Case] = []
    if not args.no_torch:
        torch_embedder = SentenceTransformerEmbedder(
            profile, threads=args.threads, batch_size=args.torch_batch_size
        )
        cases.append(Case("sentence-transformers (torch)", args.torch_batch_size, torch_embedder))
    for quantize, label in ((True, "ONNX int8"), (False, "ONNX fp32")):
        for size in args.batch_sizes:
            for sessions in args.passage_sessions:
                embedder = OnnxEmbedder(
                    profile,
                    threads=args.threads,
                    batch_size=size,
                    quantize=quantize,
                    cache_dir=args.cache_dir,
                    passage_sessions=sessions,
                )
                cases.append(Case(label, size, embedder, sessions))
    return cases


def time_query(embedder: Embedder, queries: Sequence[str]) -> float:
    """Median wall time of embedding one short text, in milliseconds."""
    times = []
    for query in queries:
        start = time.perf_counter()
        embedder.embed([query], role="query")
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    profile = ModelProfile.load(args.model)
    texts = demo_texts(args.texts + args.queries, args.seed)
    texts, queries = texts[: args.texts], [t.split(". ", 1)[0] for t in texts[args.texts :]]
    cases = build_cases(args, profile)
    load_before = os.getloadavg()[0]

    for case in cases:  # load, export on first use, and let each runtime allocate its buffers
        case.embedder.embed(texts[:64])
        case.query_ms = time_query(case.embedder, queries)
    for round_ in range(args.repeats):
        shift = round_ % len(cases)
        for case in cases[shift:] + cases[:shift]:
            start = time.perf_counter()
            case.embedder.embed(texts)
            case.rates.append(len(texts) / (time.perf_counter() - start))
        print(f"round {round_ + 1}/{args.repeats} done", file=sys.stderr, flush=True)

    count_tokens = cases[-1].embedder.count_tokens
    tokens = statistics.mean(min(count_tokens(t), profile.max_tokens) for t in texts)
    baseline = cases[0].rates if not args.no_torch else [float("nan")] * args.repeats
    print(
        f"{len(texts)} demo texts (mean {tokens:.0f} tokens), {args.repeats} rounds, "
        f"{args.threads} threads, model {profile.id}; load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after\n"
    )
    print(
        "| backend | batch | sessions | texts/s median | best | min-max over rounds "
        "| vs torch (median of per-round ratios) | one query p50 |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for case in cases:
        ratio = statistics.median(r / b for r, b in zip(case.rates, baseline, strict=True))
        print(
            f"| {case.backend} | {case.batch_size} | {case.sessions} | "
            f"{statistics.median(case.rates):.0f} | "
            f"{max(case.rates):.0f} | {min(case.rates):.0f}-{max(case.rates):.0f} | "
            f"{ratio:.2f}x | {case.query_ms:.1f} ms |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
