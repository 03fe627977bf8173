#!/usr/bin/env python3
"""Private memory of a loaded FAISS generation index: read into the heap against memory-mapped.

Builds the service's index (`IndexIDMap2` over HNSW32 flat, inner product) of `--chunks` random
normalised vectors, saves it, and loads it in fresh processes, once with `faiss.read_index(path)`
and once with `IO_FLAG_MMAP_IFC` (as `FaissIndex.load` does now), reporting each process's
anonymous (private, per worker) memory growth from /proc/self/smaps_rollup.

    .venv/bin/python scripts/bench_mmap.py --chunks 100000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import faiss
import numpy as np


def anonymous_mib() -> float:
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("Anonymous:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load(path: str, mapped: bool) -> dict[str, float]:
    before = anonymous_mib()
    index = faiss.read_index(path, faiss.IO_FLAG_MMAP_IFC if mapped else 0)
    index.search(np.ones((1, index.d), dtype=np.float32), 10)
    return {"anonymous_growth_mib": round(anonymous_mib() - before, 1), "ntotal": index.ntotal}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--load", metavar="PATH", help=argparse.SUPPRESS)
    parser.add_argument("--mapped", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        print(json.dumps(load(args.load, args.mapped)))
        return 0
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((args.chunks, 384), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = faiss.IndexIDMap2(faiss.IndexHNSWFlat(384, 32, faiss.METRIC_INNER_PRODUCT))
    index.add_with_ids(vectors, np.arange(args.chunks, dtype=np.int64))
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "index.faiss")
        faiss.write_index(index, path)
        size = Path(path).stat().st_size / 2**20
        result: dict[str, object] = {"chunks": args.chunks, "file_mib": round(size, 1)}
        for mapped in (False, True):
            command = [sys.executable, __file__, "--load", path] + (["--mapped"] if mapped else [])
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            result["mapped" if mapped else "read into the heap"] = json.loads(out)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
