#!/usr/bin/env python3
"""A whole generation at scale: build time per phase, files, load time, memory per serving worker
and in-process search latency, at `--chunks` chunks (docs/scaling.md uses 100k and 1M).

The store is grown exactly as bench_http.py grows it (the demo data plus synthetic actors whose
passages are demo passages with a reference suffix, their vectors the real model's vectors of
the source passage plus Gaussian noise, written into the embedding cache), so the ordinary
`Reindexer.run()` builds the generation without embedding anything: what is timed is reading the
store, the FAISS build, the recall check, the read model and publishing, phase by phase (from the
reindex's own one-line-per-phase log).

Then `--rounds` fresh serving processes (`measure`, one after the other) each load the
generation the way a worker does (`Runtime.warm_up()`: model, FAISS index, memory-mapped read
model, memory-mapped read model and BM25 postings), with the FAISS load and the BM25 step timed
separately (a generation published before BM25 files existed has them built from the store), and
run `--queries` searches (`Matcher.search`, limit 10, one at a time, demo project titles), timed
in wall-clock and in the process's CPU time (robust to other jobs on a shared machine). Memory
is read from /proc/self/smaps_rollup: `anonymous` is private to each worker (FAISS index, BM25,
model, Python); `file-backed` is mostly the memory-mapped read model, whose pages every worker on
a host shares through the page cache. Figures are medians over the rounds with min-max.

    .venv/bin/python scripts/bench_generation.py --chunks 1000000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_http import Variant, build_store, variant
from bench_index import DEFAULT_SIGMA, demo_vectors
from bench_report import BENCH_DIR, log, percentile, rss_bytes, spread, write_result

MiB = 1 << 20
BM25_STEP = "BM25 postings (opened, or built from the store)"


class PhaseClock(logging.Handler):
    """Times the reindex phases from its log: each phase line closes the phase before it."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((time.perf_counter(), record.getMessage()))

    def phases(self, started: float) -> list[dict[str, Any]]:
        out, previous = [], started
        for moment, message in self.lines:
            out.append({"phase": message.split(":", 1)[0], "seconds": round(moment - previous, 2)})
            previous = moment
        return out


def smaps() -> dict[str, int]:
    """This process's memory by kind, bytes (Linux smaps_rollup)."""
    fields: dict[str, int] = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        key, _, value = line.partition(":")
        parts = value.split()
        if parts and parts[-1] == "kB":
            fields[key.strip()] = int(parts[0]) * 1024
    return fields


def folder_bytes(folder: Path) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for path in folder.rglob("*"):
        if path.is_file():
            part = path.relative_to(folder).parts[0]
            sizes[part] = sizes.get(part, 0) + path.stat().st_size
    return sizes


def measure(data_dir: Path, item: Variant, queries: int) -> dict[str, Any]:
    """One serving worker: load the generation as `Runtime.warm_up()` does, then search."""
    from service.index.generations import GenerationStore
    from service.runtime import Runtime
    from service.serving import ServedIndex

    timings: dict[str, float] = {}
    rss: dict[str, int] = {"start": rss_bytes()}

    def timed(owner: Any, name: str, label: str) -> None:
        inner = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            before, started = rss_bytes(), time.perf_counter()
            result = inner(*args, **kwargs)
            timings[label] = round(time.perf_counter() - started, 3)
            rss[f"{label} growth"] = rss_bytes() - before
            return result

        setattr(owner, name, wrapper)

    timed(GenerationStore, "load", "load generation (FAISS + read model + BM25 files)")
    timed(ServedIndex, "_lexical", BM25_STEP)
    from service.embedding.base import warm_up
    from service.text import load_language_detector

    runtime = Runtime(item.settings(data_dir))
    started = time.perf_counter()
    warm_up(runtime.embedder)
    rss["after the model"] = rss_bytes()
    load_language_detector()
    rss["after the language detector"] = rss_bytes()
    runtime.warm_up()
    timings["warm-up in all"] = round(time.perf_counter() - started, 3)
    rss["after load"] = rss_bytes()
    matcher = runtime.matcher
    texts = demo_vectors("onnx-fp32").query_texts
    picked = [texts[i % len(texts)] for i in range(queries)]
    for query in picked[:20]:
        matcher.search(query, limit=10)
    latencies, cpu = [], []
    for query in picked:
        began, began_cpu = time.perf_counter(), time.process_time()
        matcher.search(query, limit=10)
        latencies.append(1000 * (time.perf_counter() - began))
        # CPU time of the whole process (all threads): on a shared machine wall-clock time also
        # counts waiting for a core; CPU time is what a search costs on an idle one (or more,
        # where threads run in parallel).
        cpu.append(1000 * (time.process_time() - began_cpu))
    memory = smaps()
    generation = runtime.index.get().manifest
    runtime.close()
    # What the FAISS index costs each worker when read into the heap (as before it was mapped).
    import gc

    from service.index.faiss_index import faiss
    from service.index.generations import INDEX_FILE

    gc.collect()
    before = smaps().get("Anonymous", 0)
    path = runtime.generations.generations_dir / generation.generation / INDEX_FILE
    copied = faiss.read_index(str(path))
    faiss_copy_anonymous = smaps().get("Anonymous", 0) - before
    del copied
    return {
        "generation": generation.generation,
        "chunks": generation.chunks,
        "timings_s": timings,
        "rss": rss,
        "smaps_after_searches": {
            k: memory.get(k, 0)
            for k in ("Rss", "Pss", "Anonymous", "Shared_Clean", "Private_Clean", "Private_Dirty")
        },
        "file_backed": memory.get("Rss", 0) - memory.get("Anonymous", 0),
        "faiss_read_into_heap_anonymous": faiss_copy_anonymous,
        "searches": len(latencies),
        "search_p50_ms": round(percentile(latencies, 50), 2),
        "search_p99_ms": round(percentile(latencies, 99), 2),
        "search_cpu_p50_ms": round(percentile(cpu, 50), 2),
        "search_cpu_p99_ms": round(percentile(cpu, 99), 2),
    }


def parts(chunks: int, rounds: int, queries: int, sigma: float, seed: int = 5) -> dict[str, Any]:
    """The parts of a generation that grow with it, built straight from synthetic chunks (no
    store): the read model (build, files, masks) and BM25 (build, memory, queries). The FAISS
    HNSW index of the same vectors is bench_index.py's (its 1M build is the long pole)."""
    import gc
    import random

    import numpy as np
    from bench_http import load_demo_actors
    from bench_index import replicate

    from service.domain import OPERATOR, ActorSummary, Owner
    from service.index.readmodel import ReadModel
    from service.lexical import GenerationLexical
    from service.store import ActorFilter, StoredChunk

    demo = demo_vectors("onnx-fp32")
    templates = load_demo_actors()
    rng = random.Random(seed)
    sizes = [min(len(a.documents), 4) for a in templates]
    snapshot: list[StoredChunk] = []
    summaries: dict[str, ActorSummary] = {}
    sources: list[int] = []
    serial = 0
    while len(snapshot) < chunks:
        serial += 1
        template = rng.choice(templates)
        actor_id = f"synthetic:{serial}"
        summaries[actor_id] = ActorSummary(
            actor_id,
            f"{template.name} (synthetic {serial})",
            template.kind,
            template.country,
            template.region,
            tuple(template.sectors),
        )
        for number in range(min(rng.choice(sizes), chunks - len(snapshot))):
            source = rng.randrange(len(demo.texts))
            text = f"{demo.texts[source]} (ref S{serial}-{number})"
            snapshot.append(
                StoredChunk(
                    len(snapshot) + 1,
                    actor_id,
                    f"doc-{number}",
                    "description",
                    "public",
                    0,
                    text,
                    f"h{len(snapshot)}",
                    "en",
                )
            )
            sources.append(source)
    vectors, _ = replicate(demo.vectors, len(sources), sigma, seed, np.array(sources))
    log(f"parts: {len(snapshot):,} synthetic chunks of {len(summaries):,} actors")
    out: dict[str, Any] = {"chunks": len(snapshot), "actors": len(summaries)}

    began = time.perf_counter()
    readmodel = ReadModel.build(snapshot, vectors, summaries, vectors.shape[1])
    out["readmodel_build_s"] = round(time.perf_counter() - began, 2)
    with tempfile.TemporaryDirectory(dir=BENCH_DIR) as tmp:
        readmodel.save(Path(tmp))
        out["readmodel_files_bytes"] = folder_bytes(Path(tmp))
    del vectors
    gc.collect()

    ids = np.array([c.id for c in snapshot], dtype=np.int64)
    texts = [c.text for c in snapshot]
    del snapshot
    size = len(ids)
    public = np.zeros(size, np.int8)
    GenerationLexical.build(10, np.arange(10), texts[:10], public[:10], [Owner()] * 10)  # imports
    gc.collect()
    before_anon, before_rss = smaps().get("Anonymous", 0), rss_bytes()
    began = time.perf_counter()
    lexical = GenerationLexical.build(size, np.arange(size), texts, public, [Owner()] * size)
    out["bm25_build_s"] = round(time.perf_counter() - began, 2)
    gc.collect()
    out["bm25_anonymous_growth_bytes"] = smaps().get("Anonymous", 0) - before_anon
    out["bm25_rss_growth_bytes"] = rss_bytes() - before_rss
    out["bm25_postings_bytes"] = int(lexical.positions.nbytes + lexical.weights.nbytes)
    del texts
    log(f"parts: {out}")

    titles = demo.query_texts[:queries]
    germany = ActorFilter(countries=("DE",))
    timings: dict[str, list[dict[str, float]]] = {"bm25 top-200": [], "read model mask": []}
    for _ in range(rounds):
        for name, call in (
            ("bm25 top-200", lambda q: lexical.search(q, 200, OPERATOR)),
            ("read model mask", lambda q: readmodel.mask(germany)),
        ):
            wall, cpu = [], []
            for query in titles:
                began, began_cpu = time.perf_counter(), time.process_time()
                call(query)
                wall.append(1000 * (time.perf_counter() - began))
                cpu.append(1000 * (time.process_time() - began_cpu))
            timings[name].append(
                {"p50_ms": percentile(wall, 50), "cpu_p50_ms": percentile(cpu, 50)}
            )
    out["timings"] = {
        name: {key: spread([r[key] for r in rows]) for key in rows[0]}
        for name, rows in timings.items()
    }
    out["load_average"] = round(os.getloadavg()[0], 2)
    log(f"parts timings: {out['timings']}")
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog="Writes .bench/results/generation-<chunks>.json.",
    )
    sub = parser.add_subparsers(dest="command")
    one = sub.add_parser("measure", help="one serving worker (started by the benchmark)")
    one.add_argument("data_dir", type=Path)
    one.add_argument("variant", type=variant)
    one.add_argument("--queries", type=int, default=200)
    grow = sub.add_parser("parts", help="read model and BM25 at --chunks, without a store")
    grow.add_argument("--chunks", type=int, default=1_000_000)
    grow.add_argument("--rounds", type=int, default=3)
    grow.add_argument("--queries", type=int, default=200)
    parser.add_argument("--chunks", type=int, default=1_000_000, help="total chunks (1000000)")
    parser.add_argument(
        "--variant", type=variant, default=Variant("onnx-fp32"), help="default onnx-fp32"
    )
    parser.add_argument("--rounds", type=int, default=3, help="serving processes (default 3)")
    parser.add_argument("--queries", type=int, default=200, help="searches per round (200)")
    parser.add_argument("--sigma", type=float, default=DEFAULT_SIGMA, help="synthetic noise")
    parser.add_argument("--keep-data", action="store_true", help="keep the data folder")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "measure":
        print(json.dumps(measure(args.data_dir, args.variant, args.queries)))
        return 0
    if args.command == "parts":
        started = time.perf_counter()
        result = parts(args.chunks, args.rounds, args.queries, DEFAULT_SIGMA)
        write_result(f"generation-parts-{args.chunks}", result, started)
        return 0
    started = time.perf_counter()
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="generation-data-", dir=BENCH_DIR))
    clock = PhaseClock()
    logging.getLogger("clustermatch.reindex").addHandler(clock)
    logging.getLogger("clustermatch.reindex").setLevel(logging.INFO)
    try:
        build_started = time.perf_counter()
        data = build_store(data_dir, args.chunks, [args.variant], args.sigma)
        reindex = data["reindex"][args.variant.spec]
        reindex_started = build_started + data["seconds"] - reindex["seconds"]
        phases = clock.phases(reindex_started)
        folder = args.variant.settings(data_dir).resolved_index_dir
        files = folder_bytes(folder / "generations" / reindex["generation"])
        store_bytes = sum(p.stat().st_size for p in data_dir.glob("store.sqlite3*"))
        log(f"reindex phases: {phases}; generation files {files}")
        rounds = []
        for round_ in range(args.rounds):
            command = [
                sys.executable,
                str(Path(__file__).resolve()),
                "measure",
                str(data_dir),
                args.variant.spec,
                "--queries",
                str(args.queries),
            ]
            out = subprocess.run(command, check=True, capture_output=True, text=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            result["load_average"] = round(os.getloadavg()[0], 2)
            rounds.append(result)
            log(
                f"round {round_ + 1}/{args.rounds}: p50 {result['search_p50_ms']} ms, "
                f"RSS {result['rss']['after load'] / MiB:.0f} MiB, anonymous "
                f"{result['smaps_after_searches']['Anonymous'] / MiB:.0f} MiB, load "
                f"{result['timings_s']}"
            )
    finally:
        if not args.keep_data:
            shutil.rmtree(data_dir, ignore_errors=True)

    def over(pick: Any) -> dict[str, float]:
        return spread([float(pick(r)) for r in rounds])

    summary = {
        "search_p50_ms": over(lambda r: r["search_p50_ms"]),
        "search_p99_ms": over(lambda r: r["search_p99_ms"]),
        "search_cpu_p50_ms": over(lambda r: r["search_cpu_p50_ms"]),
        "rss_mib": over(lambda r: r["smaps_after_searches"]["Rss"] / MiB),
        "anonymous_mib": over(lambda r: r["smaps_after_searches"]["Anonymous"] / MiB),
        "file_backed_mib": over(lambda r: r["file_backed"] / MiB),
        "warm_up_s": over(lambda r: r["timings_s"]["warm-up in all"]),
        "faiss_and_readmodel_load_s": over(
            lambda r: r["timings_s"]["load generation (FAISS + read model + BM25 files)"]
        ),
        "bm25_load_s": over(lambda r: r["timings_s"][BM25_STEP]),
        "bm25_growth_mib": over(lambda r: r["rss"][f"{BM25_STEP} growth"] / MiB),
        "faiss_read_into_heap_mib": over(lambda r: r["faiss_read_into_heap_anonymous"] / MiB),
        "faiss_and_readmodel_growth_mib": over(
            lambda r: r["rss"]["load generation (FAISS + read model + BM25 files) growth"] / MiB
        ),
    }
    write_result(
        f"generation-{args.chunks}",
        {
            "variant": args.variant.spec,
            "data": data,
            "reindex_phases": phases,
            "generation_files_bytes": files,
            "store_bytes": store_bytes,
            "rounds": rounds,
            "summary": summary,
        },
        started,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
