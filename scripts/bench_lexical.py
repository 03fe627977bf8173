#!/usr/bin/env python3
"""BM25 as postings against the BM25 it replaced, side by side in one process per corpus size.

For each `--sizes` (chunks) one fresh process (`one`) makes the synthetic corpus of
bench_generation.py's `parts` (demo passages with a reference suffix, all public), then:

- **new** (service.lexical.GenerationLexical): built as a publish builds it, saved into a
  folder, and loaded as a worker loads it (memory-mapped, with the manifest's checksum over its
  files computed as `GenerationStore.load` does);
- **old** (service/lexical.py as of `--old-revision`, read from git): bm25s built in memory from
  the texts, as every worker built it when it loaded a generation.

Then `--rounds` interleaved rounds run the same `--queries` demo project titles through both
(top-200, the operator's view, no filter: what `Ranker.lexical_hits` asks for), timed in the
process's CPU time (robust to other jobs) and wall-clock. Memory is read from
/proc/self/smaps_rollup around each load: `anonymous` is private to the worker, `file-backed` is
page cache every worker on the host shares.

    .venv/bin/python scripts/bench_lexical.py --sizes 10000 100000 1000000
    .venv/bin/python scripts/bench_lexical.py --delta 10 2000 20000
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_generation import smaps
from bench_index import demo_vectors
from bench_report import BENCH_DIR, ROOT, log, percentile, spread, write_result

MiB = 1 << 20


def corpus(chunks: int, seed: int = 5) -> list[str]:
    """bench_generation.py `parts`' passages: demo passages, each with a reference suffix."""
    demo = demo_vectors("onnx-fp32")
    rng = random.Random(seed)
    return [f"{rng.choice(demo.texts)} (ref S{i // 3}-{i % 3})" for i in range(chunks)]


def old_module(revision: str) -> Any:
    """service/lexical.py as it was at `revision`, imported under another name."""
    source = subprocess.run(
        ["git", "show", f"{revision}:service/lexical.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = BENCH_DIR / "old_lexical.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_lexical", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_lexical"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def memory() -> tuple[int, int]:
    """(anonymous, file-backed resident) bytes of this process."""
    fields = smaps()
    anonymous = fields.get("Anonymous", 0)
    return anonymous, fields.get("Rss", 0) - anonymous


def growth_after_queries(index: Any, queries: Sequence[str], before: tuple[int, int]) -> Any:
    """Memory grown since `before` once `index` answered a few queries."""
    from service.domain import OPERATOR

    for query in queries:
        index.search(query, 200, OPERATOR)
    gc.collect()
    anonymous, file_backed = memory()
    return {"anonymous": anonymous - before[0], "file_backed": file_backed - before[1]}


def one(chunks: int, rounds: int, queries: int, revision: str) -> dict[str, Any]:
    import numpy as np

    from service.domain import OPERATOR, Owner
    from service.index.generations import readmodel_checksum
    from service.lexical import FOLDER, GenerationLexical, tokenize

    old = old_module(revision)
    texts = corpus(chunks)
    titles = demo_vectors("onnx-fp32").query_texts[:queries]
    out: dict[str, Any] = {"chunks": chunks, "queries": len(titles)}
    tokenize(texts[:10])  # spaCy's stop words, outside every count
    old.AudienceLexical.build(  # bm25s' import, outside every count
        np.arange(10), texts[:10], np.zeros(10, np.int8), np.zeros(10, np.int64), [Owner()]
    )

    with tempfile.TemporaryDirectory(dir=BENCH_DIR) as folder:
        began = time.perf_counter()
        built = GenerationLexical.build(
            chunks, np.arange(chunks), texts, np.zeros(chunks, np.int8), [Owner()] * chunks
        )
        out["new_build_at_publish_s"] = round(time.perf_counter() - began, 2)
        built.save(Path(folder))
        files = {p.name: p.stat().st_size for p in (Path(folder) / FOLDER).iterdir()}
        out["new_files_bytes"] = sum(files.values())
        out["new_postings"] = len(built.positions)
        out["new_terms"] = len(built.terms)
        del built
        gc.collect()

        before = memory()
        began = time.perf_counter()
        readmodel_checksum(Path(folder), FOLDER)  # what GenerationStore.load checks first
        checked = time.perf_counter()
        new = GenerationLexical.load(Path(folder))
        out["new_load_s"] = {
            "checksum": round(checked - began, 3),
            "open": round(time.perf_counter() - checked, 4),
        }
        out["new_after_warm_queries_bytes"] = growth_after_queries(new, titles[:20], before)

        gc.collect()
        before = memory()
        began = time.perf_counter()
        old_index = old.AudienceLexical.build(
            np.arange(chunks),
            texts,
            np.zeros(chunks, np.int8),
            np.zeros(chunks, np.int64),
            [Owner()],
        )
        out["old_build_at_load_s"] = round(time.perf_counter() - began, 2)
        out["old_after_warm_queries_bytes"] = growth_after_queries(old_index, titles[:20], before)
        del texts
        gc.collect()

        # The corpus repeats demo passages, so equal scores are common: the top-10 scores must
        # agree; the ids may differ among ties (bm25s breaks them its own way).
        same_scores = same_ids = 0
        for query in titles:
            a, b = new.search(query, 10, OPERATOR), old_index.search(query, 10, OPERATOR)
            same_scores += len(a[0]) == len(b[0]) and bool(np.allclose(a[0], b[0], rtol=1e-5))
            same_ids += a[1].tolist() == b[1].tolist()
        out["top10_same_scores"] = f"{same_scores}/{len(titles)}"
        out["top10_same_ids"] = f"{same_ids}/{len(titles)}"

        per_round: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
        touched = new.postings_touched
        for round_ in range(rounds):
            order = [("old", old_index), ("new", new)]
            for name, index in order if round_ % 2 == 0 else reversed(order):
                wall, cpu = [], []
                for query in titles:
                    began, began_cpu = time.perf_counter(), time.process_time()
                    index.search(query, 200, OPERATOR)
                    wall.append(1000 * (time.perf_counter() - began))
                    cpu.append(1000 * (time.process_time() - began_cpu))
                per_round[name].append(
                    {
                        "cpu_p50_ms": percentile(cpu, 50),
                        "cpu_mean_ms": sum(cpu) / len(cpu),
                        "p50_ms": percentile(wall, 50),
                        "p99_ms": percentile(wall, 99),
                    }
                )
        out["new_postings_touched_per_query"] = (new.postings_touched - touched) / (
            rounds * len(titles)
        )
        out["timings"] = {
            name: {key: spread([r[key] for r in rows]) for key in rows[0]}
            for name, rows in per_round.items()
        }
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return out


def delta(sizes: Sequence[int], writes: int, revision: str) -> dict[str, Any]:
    """What one write costs the delta's BM25 at each size: new, appending the written passages
    (CPU time per write, and the counters and postings it wrote); old, the rebuild over the
    whole live delta that a write triggered (by the write itself up to 256 chunks, beyond in a
    background timer every 0.25 s: the CPU is spent either way)."""
    import numpy as np

    from service.domain import OPERATOR, Owner
    from service.lexical import DeltaLexical, GenerationLexical

    old = old_module(revision)
    texts = corpus(max(sizes) + 2 * writes, seed=11)
    generation = GenerationLexical.build(
        1000, np.arange(1000), corpus(1000), np.zeros(1000, np.int8), [Owner()] * 1000
    )
    out: dict[str, Any] = {}
    for size in sizes:
        index = DeltaLexical(generation)
        for position in range(size):
            index.append(position, texts[position], 0, Owner())
        cpu, updates = [], []
        for write in range(writes):  # one actor of two passages per write
            began, before = time.process_time(), index.updates
            for position in (size + 2 * write, size + 2 * write + 1):
                index.append(position, texts[position], 0, Owner())
            cpu.append(1000 * (time.process_time() - began))
            updates.append(index.updates - before)
        query_cpu = []
        for query in demo_vectors("onnx-fp32").query_texts[:50]:
            began = time.process_time()
            index.search(query, 200, OPERATOR)
            query_cpu.append(1000 * (time.process_time() - began))
        rebuild = []
        for _ in range(3):
            began = time.process_time()
            old.AudienceLexical.build(
                np.arange(size),
                texts[:size],
                np.zeros(size, np.int8),
                np.zeros(size, np.int64),
                [Owner()],
                alongside=old.CorpusStats(1000, 1000 * 40, {}),
            )
            rebuild.append(1000 * (time.process_time() - began))
        out[str(size)] = {
            "new_write_cpu_p50_ms": percentile(cpu, 50),
            "new_write_updates": spread([float(u) for u in updates]),
            "new_query_cpu_p50_ms": percentile(query_cpu, 50),
            "old_rebuild_cpu_p50_ms": percentile(rebuild, 50),
        }
        log(f"delta {size:,}: {out[str(size)]}")
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--old-revision", default="f95b797", help="where the old BM25 is read")
    parser.add_argument("--delta", type=int, nargs="*", help="delta sizes: one write's cost")
    parser.add_argument("--writes", type=int, default=200, help="writes timed per delta size")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one, args.rounds, args.queries, args.old_revision)))
        return 0
    started = time.perf_counter()
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    if args.delta:
        write_result("lexical-delta", delta(args.delta, args.writes, args.old_revision), started)
        return 0
    results = []
    for size in args.sizes:
        command = [sys.executable, str(Path(__file__).resolve()), "--one", str(size)]
        command += ["--rounds", str(args.rounds), "--queries", str(args.queries)]
        command += ["--old-revision", args.old_revision]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        log(f"{size:,} chunks: {json.dumps(result)}")
        results.append(result)
    write_result("lexical-postings", {"sizes": results}, started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
