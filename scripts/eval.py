#!/usr/bin/env python3
"""Evaluate clustermatch's match quality against real collaboration (held-out CORDIS projects).

For a seeded sample of organisations one project each is held out and removed from every
profile; the remaining profiles are indexed with the real model in a temporary data directory,
and each query organisation is matched. A hit is a co-participant of its held-out project. The
same run scores the baselines (random, most-connected, TF-IDF, BM25) on the same actor texts.
The protocol is written down in docs/evaluation.md.

Examples:
  .venv/bin/python scripts/eval.py --markdown
  nice -n 10 .venv/bin/python scripts/eval.py --queries 300 --seed 20260 \\
      --aggregate max coverage --cache-dir /tmp/cm-eval \\
      --out docs/evaluation-results.json --markdown
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from service.evaluation import DEMO_FILE, EvalConfig, markdown_table, run

BASELINES = ("random", "most-connected", "tf-idf", "bm25")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show defaults and keep the description's examples as written."""


def parser() -> argparse.ArgumentParser:
    defaults = EvalConfig()
    p = argparse.ArgumentParser(
        prog="scripts/eval.py",
        description=__doc__,
        epilog="Runs on the CPU; a default run (300 queries, cold cache) takes a few minutes on "
        "two cores. Use `nice -n 10` on shared machines.",
        formatter_class=_Formatter,
    )
    p.add_argument(
        "--queries", type=int, default=defaults.queries, help="query organisations to sample"
    )
    p.add_argument(
        "--seed", type=int, default=defaults.seed, help="seed of every random choice in the run"
    )
    p.add_argument(
        "--aggregate",
        nargs="+",
        choices=("max", "coverage", "topk"),
        default=list(defaults.aggregates),
        help="actor-score aggregates to evaluate (all in one run, same index)",
    )
    p.add_argument(
        "--baselines",
        nargs="*",
        choices=BASELINES,
        default=list(BASELINES),
        help="baselines to score on the same texts (none: pass the flag without values)",
    )
    p.add_argument(
        "--limit",
        type=int,
        default=defaults.limit,
        help="length of each ranked list; MRR counts a partner ranked below it as 0",
    )
    p.add_argument("--k", type=int, default=defaults.k, help="cut-off of recall@k and nDCG@k")
    p.add_argument(
        "--tolerance",
        type=float,
        default=defaults.tolerance,
        help="relative degree window of the degree-matched non-partner (0.2 = ±20%%)",
    )
    p.add_argument("--data", type=Path, default=DEMO_FILE, help="profiles (JSON lines, .gz ok)")
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="keep chunk vectors here between runs (reruns then skip embedding)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("docs/evaluation-results.json"),
        help="where to write all figures as JSON",
    )
    p.add_argument("--markdown", action="store_true", help="print the results tables (Markdown)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.queries < 1 or args.limit < args.k or args.k < 1:
        print("need --queries >= 1 and --limit >= --k >= 1", file=sys.stderr)
        return 2
    config = EvalConfig(
        queries=args.queries,
        seed=args.seed,
        aggregates=tuple(dict.fromkeys(args.aggregate)),
        baselines=tuple(dict.fromkeys(args.baselines)),
        limit=args.limit,
        k=args.k,
        tolerance=args.tolerance,
        data_file=args.data,
        cache_dir=args.cache_dir,
        progress=not args.quiet,
    )
    started = datetime.now(UTC)
    results = run(config)
    finished = datetime.now(UTC)
    document = {
        "command": shlex.join(sys.argv if argv is None else ["scripts/eval.py", *argv]),
        "python": sys.executable,
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": finished.isoformat(timespec="seconds"),
        **results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(
        f"{results['split']['queries']} queries, {results['seconds']:.0f} s; wrote {args.out}",
        file=sys.stderr,
    )
    if args.markdown:
        print(markdown_table(results, k=args.k))
    return 0


if __name__ == "__main__":
    sys.exit(main())
