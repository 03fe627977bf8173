#!/usr/bin/env python3
"""Stage analysis on the temporal task ("first-time collaborations"), in process.

Same split as `scripts/eval.py temporal` (same seed, queries, cap). For each model profile the
2007 profiles are indexed with the service's own code in a temporary data directory, and each
query is evaluated stage by stage: the service as served (two stages: FAISS candidates, then the
coverage aggregate); the first stage's candidate recall; each aggregate (max, coverage, top-3
mean) scored exactly over EVERY eligible actor; the mean-document-vector score; z-scored
combinations of mean-vector and coverage; an activity prior (log number of documents) added with
a weight; the partner network, and text x network signals (profile vectors propagated over the
partner graph) added to the service's text + network. A weight is also chosen on one random half
of the queries and read on the other.

Example:
  nice -n 10 .venv/bin/python scripts/eval_stages.py --markdown
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

from service.evaluation import library_versions, load_profiles
from service.evaluation_stages import markdown_stages, run_stages
from service.evaluation_temporal import ACTORS_FILE, PROJECTS_FILE, load_future
from service.evaluation_temporal import make_temporal_split as split_of
from service.evaluation_temporal_run import MODELS, TemporalConfig, parse_actors


def main(argv: list[str] | None = None) -> int:
    defaults = TemporalConfig()
    p = argparse.ArgumentParser(
        prog="scripts/eval_stages.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--queries", type=int, default=defaults.queries)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--max-partners", type=int, default=defaults.max_partners)
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument("--actors", type=Path, default=ACTORS_FILE)
    p.add_argument("--projects", type=Path, default=PROJECTS_FILE)
    p.add_argument("--out", type=Path, default=Path("docs/evaluation-stages.json"))
    p.add_argument("--markdown", action="store_true", help="print the tables (Markdown)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    started = datetime.now(UTC)
    actors, skipped = parse_actors(load_profiles(args.actors))
    split = split_of(actors, load_future(args.projects), args.queries, args.seed, args.max_partners)
    results = run_stages(actors, split, args.models, args.seed, progress=not args.quiet)
    document = {
        "command": shlex.join(sys.argv if argv is None else ["scripts/eval_stages.py", *argv]),
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "queries": len(split.queries),
        "skipped_profiles": skipped,
        **results,
        "versions": library_versions(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{len(split.queries)} queries; wrote {args.out}", file=sys.stderr)
    if args.markdown:
        print(markdown_stages(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
