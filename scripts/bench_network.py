#!/usr/bin/env python
"""The partner-network signal at scale, on a synthetic CORDIS-like graph.

    nice -n 10 .venv/bin/python scripts/bench_network.py [--actors 100000] [--projects 25000]

Projects of 3-11 members are drawn with a popularity skew (weight ~ rank^-0.6), every member
lists every other as a partner; then the graph is built as a rebuild builds it
(`service.network.partner_graph`) and the four-step walk runs from `--queries` random actors as
actor matching runs it. Prints the graph's size, the build time, and per-query walk times with
the share of actors the walk reaches, for the walk as served (at most `WALK_EDGES` edges per step)
and uncapped, side by side: their time, and how many of the uncapped walk's 100 best actors the
capped one also ranks in its 100 best. Timings are wall clock on a shared machine: state the load.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from service.network import WALK_EDGES, partner_graph, personalised_pagerank


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--actors", type=int, default=100_000)
    p.add_argument("--projects", type=int, default=25_000)
    p.add_argument("--queries", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    n = args.actors
    ids = [f"a{i}" for i in range(n)]
    weights = 1 / np.arange(1, n + 1) ** 0.6
    weights /= weights.sum()
    partners: dict[str, set[str]] = {}
    for _ in range(args.projects):
        members = rng.choice(n, size=int(rng.integers(3, 12)), replace=False, p=weights)
        for a in members.tolist():
            partners.setdefault(ids[a], set()).update(ids[b] for b in members.tolist() if b != a)
    started = time.perf_counter()
    start, rows = partner_graph(ids, partners)
    build = time.perf_counter() - started
    degree = np.diff(start)
    print(f"load average {os.getloadavg()[0]:.2f}")
    print(
        f"graph: {n} actors, {len(rows)} directed edges, mean degree {degree.mean():.1f}, "
        f"largest {degree.max()}; built in {build:.2f} s"
    )
    seconds: dict[str, list[float]] = {"capped": [], "uncapped": []}
    reached: dict[str, list[float]] = {"capped": [], "uncapped": []}
    overlap = []
    for source in rng.choice(n, size=args.queries, replace=False).tolist():
        walks = {}
        for name, budget in (("capped", WALK_EDGES), ("uncapped", 10**12)):
            started = time.perf_counter()
            walks[name] = personalised_pagerank(start, rows, int(source), max_edges=budget)
            seconds[name].append(time.perf_counter() - started)
            reached[name].append(float((walks[name] > 0).mean()))
        best = [set(np.argsort(-w, kind="stable")[:100].tolist()) for w in walks.values()]
        overlap.append(len(best[0] & best[1]) / 100)
    for name in ("capped", "uncapped"):
        print(
            f"walk per query, {name}: median {np.median(seconds[name]) * 1000:.1f} ms, "
            f"p90 {np.percentile(seconds[name], 90) * 1000:.1f} ms; "
            f"reaches a median {np.median(reached[name]):.0%} of the actors"
        )
    print(
        f"capped at {WALK_EDGES:,} edges per step: median {np.median(overlap):.0%} of the uncapped "
        f"walk's 100 best actors are among its 100 best (min {min(overlap):.0%})"
    )


if __name__ == "__main__":
    main()
