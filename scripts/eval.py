#!/usr/bin/env python3
"""Evaluate clustermatch's match quality against real collaboration (CORDIS). Two tasks:

temporal (the primary figure): "first-time collaborations". Profiles are the organisations of
  the FP7 projects that started in 2007 (one document per project: title and call topic); the
  truth for a query organisation is the organisations it meets in a 2014 project of at most 60
  partners and never worked with in 2007. Its 2007 partners are known to it and passed as
  `exclude_actors`. The service runs as a real `serve` process (one per model profile, temp data
  dir, free loopback port), profiles go in over `POST /v1/actors/bulk`, the index is built with
  `POST /v1/index/rebuild`, and every query is a `POST /v1/match`. The baselines (mean document
  vector with each model, TF-IDF, BM25, most-connected, random) rank the same catalogue in the
  same run. Metrics: nDCG@10, recall@50, MRR@50, a degree-controlled pairwise AUC, catalogue
  coverage and the share of top-10 slots taken by the 1% most active actors; slices overall,
  company queries, cross-country, cross-kind, industry<->academia.

held-out: one project of each sampled organisation of the demo data (2014 projects) is removed
  from every profile, the rest is indexed in process, and the project's co-participants are the
  truth (the earlier evaluation; kept as the second figure).

The protocols are written down in docs/evaluation.md.

Examples:
  nice -n 10 .venv/bin/python scripts/eval.py temporal --markdown
  nice -n 10 .venv/bin/python scripts/eval.py temporal --models all-minilm-l6-v2 \\
      --baselines mean-vector --out /tmp/temporal.json
  nice -n 10 .venv/bin/python scripts/eval.py held-out --queries 300 --seed 20260 \\
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
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from service.evaluation import DEMO_FILE, EvalConfig, markdown_table, run
from service.evaluation_temporal import ACTORS_FILE, PROJECTS_FILE
from service.evaluation_temporal_run import (
    BASELINES as TEMPORAL_BASELINES,
)
from service.evaluation_temporal_run import (
    MODELS,
    TemporalConfig,
    markdown_temporal,
    run_temporal,
)

BASELINES = ("random", "most-connected", "tf-idf", "bm25")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show defaults and keep the description's examples as written."""


def add_shared(
    p: argparse.ArgumentParser, queries: int, seed: int, tolerance: float, out: str
) -> None:
    """Options both tasks have."""
    p.add_argument("--queries", type=int, default=queries, help="query organisations to sample")
    p.add_argument("--seed", type=int, default=seed, help="seed of every random choice in the run")
    p.add_argument(
        "--tolerance",
        type=float,
        default=tolerance,
        help="relative degree window of the degree-matched non-partner (0.2 = ±20%%)",
    )
    p.add_argument("--out", type=Path, default=Path(out), help="where to write all figures (JSON)")
    p.add_argument("--markdown", action="store_true", help="print the results tables (Markdown)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_held_out(commands: Any) -> None:
    defaults = EvalConfig()
    p = commands.add_parser(
        "held-out",
        help="held-out projects of the demo data, in process (the second figure)",
        description="One project per sampled organisation of the demo data is removed from "
        "every profile; its co-participants still in the index are the truth. In process.",
        epilog="A default run (300 queries, cold cache) takes a few minutes on two cores.",
        formatter_class=_Formatter,
    )
    add_shared(
        p, defaults.queries, defaults.seed, defaults.tolerance, "docs/evaluation-results.json"
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
    p.add_argument("--data", type=Path, default=DEMO_FILE, help="profiles (JSON lines, .gz ok)")
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="keep chunk vectors here between runs (reruns then skip embedding)",
    )


def add_temporal(commands: Any) -> None:
    defaults = TemporalConfig()
    p = commands.add_parser(
        "temporal",
        help="first-time collaborations 2007 -> 2014, through a real server (the primary figure)",
        description="Profiles from 2007 projects; truth: first-time partners in 2014 projects "
        "of at most --max-partners partners; known (2007) partners excluded via exclude_actors. "
        "The service is a real `serve` subprocess per model, driven over HTTP; the baselines "
        "rank the same catalogue in the same run. CLUSTERMATCH_* settings in the environment "
        "(e.g. CLUSTERMATCH_AGGREGATE) are passed on to the servers and recorded.",
        epilog="A default run (two models, every baseline) takes a few minutes on two cores; "
        "the first use of multilingual-e5-small converts its weights once (models/cache/).",
        formatter_class=_Formatter,
    )
    add_shared(
        p, defaults.queries, defaults.seed, defaults.tolerance, "docs/evaluation-temporal.json"
    )
    p.add_argument(
        "--max-partners",
        type=int,
        default=defaults.max_partners,
        help="2014 projects with more partners do not count as collaborations",
    )
    p.add_argument(
        "--models",
        nargs="+",
        choices=MODELS,
        default=list(defaults.models),
        help="model profiles: one server each, and one mean-vector baseline each",
    )
    p.add_argument(
        "--baselines",
        nargs="*",
        choices=TEMPORAL_BASELINES,
        default=list(defaults.baselines),
        help="baselines on the same catalogue (none: the flag without values)",
    )
    p.add_argument("--actors", type=Path, default=ACTORS_FILE, help="2007 profiles (JSON lines)")
    p.add_argument("--projects", type=Path, default=PROJECTS_FILE, help="2014 projects")
    p.add_argument(
        "--top-only",
        action="store_true",
        help="do not page through the service's whole order (the AUC then sees only the top 50)",
    )
    p.add_argument(
        "--no-search",
        action="store_true",
        help="skip the free-text rows (service-search:<model>: GET /v1/search with each query "
        "actor's own texts, on its behalf, new contacts only)",
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scripts/eval.py",
        description=__doc__,
        epilog="Runs on the CPU. Use `nice -n 10` on shared machines. "
        "`scripts/eval.py TASK --help` lists a task's options.",
        formatter_class=_Formatter,
    )
    commands = p.add_subparsers(title="tasks", dest="task", required=True, metavar="TASK")
    add_temporal(commands)
    add_held_out(commands)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    started = datetime.now(UTC)
    if args.task == "temporal":
        if args.queries < 1 or args.max_partners < 2:
            print("need --queries >= 1 and --max-partners >= 2", file=sys.stderr)
            return 2
        missing = [str(p) for p in (args.actors, args.projects) if not p.is_file()]
        if missing:
            print(
                f"error: {', '.join(missing)} not found; build it with "
                "scripts/build_temporal_data.py (reads ../shared/data/cordis)",
                file=sys.stderr,
            )
            return 2
        temporal = TemporalConfig(
            queries=args.queries,
            seed=args.seed,
            max_partners=args.max_partners,
            tolerance=args.tolerance,
            models=tuple(dict.fromkeys(args.models)),
            baselines=tuple(dict.fromkeys(args.baselines)),
            actors_file=args.actors,
            projects_file=args.projects,
            complete_orders=not args.top_only,
            search=not args.no_search,
            progress=not args.quiet,
        )
        results = run_temporal(temporal)
        render = markdown_temporal
    else:
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
        results = run(config)

        def render(figures: Any) -> str:
            return markdown_table(figures, k=args.k)

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
        print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
