#!/usr/bin/env python3
"""Calibrate a model's "nothing fits" floor for free-text search (`weak_below` in models/*.json).

Real queries: the held-out search task of scripts/eval_search.py (a held-out project's title;
its consortium is relevant), on one split. Junk: emoji, punctuation, random letters, and for an
English-only model the same competence statements in German, Italian, Swedish and Romanian
(data/crosslingual; the issue's "a German query on the English model"). For each query the best
passage cosine of the top result is recorded (vectors only: BM25 hits always pass the floor).

The floor is chosen on the even-numbered real queries with a relevant actor in their top 10 (the
highest value that keeps 99% of them) and reported on the odd-numbered ones, with the share of
junk it flags.

  .venv/bin/python scripts/calibrate_floor.py --model all-minilm-l6-v2 --cache-dir /tmp/cm-eval
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from service.config import CHECKOUT_DIR, Settings
from service.domain import Actor
from service.evaluation import DEMO_FILE, _build_index, load_profiles, make_split, participants
from service.runtime import Runtime


def top_cosine(runtime: Runtime, query: str) -> tuple[float, list[str]]:
    matcher = runtime.matcher
    matcher.weak_below = None
    fusion = matcher.fusion
    matcher.fusion = "vector"  # the floor is about meaning; exact terms pass it anyway
    result = matcher.search(query, limit=10)
    matcher.fusion = fusion
    if not result.matches:
        return -1.0, []
    best = max(e.score for e in result.matches[0].evidence) if result.matches[0].evidence else -1.0
    return best, [m.actor.id for m in result.matches]


def junk(english_only: bool, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = ["🚀", "🚀🚀 ✨", "???", "...", "asdf qwer zxcv", "lorem ipsum dolor"]
    letters = "abcdefghijklmnopqrstuvwxyz"
    out += ["".join(rng.choice(letters) for _ in range(rng.randint(4, 12))) for _ in range(30)]
    if english_only:
        path = CHECKOUT_DIR / "data" / "crosslingual" / "statements.jsonl"
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        out += [row[lang] for row in rows for lang in ("de", "it", "sv", "ro")]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--model", default="all-minilm-l6-v2")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cache-dir", type=Path)
    args = parser.parse_args()
    profiles = load_profiles(DEMO_FILE)
    members = participants(profiles)
    titles = {d["id"]: d["text"].split(". ")[0] for p in profiles for d in p["documents"]}
    split = make_split(profiles, args.queries, args.seed)
    present = {p["id"] for p in split.profiles}
    tasks = [(titles[q.project_id], members[q.project_id] & present) for q in split.queries]
    with tempfile.TemporaryDirectory(prefix="clustermatch-floor-") as tmp:
        runtime = Runtime(Settings(data_dir=Path(tmp), model=args.model))
        if args.cache_dir:
            args.cache_dir.mkdir(parents=True, exist_ok=True)
        _build_index(runtime, [Actor.parse(p) for p in split.profiles], args.cache_dir, True)
        real = [(top_cosine(runtime, q), relevant) for q, relevant in tasks]
        found = [(i, s) for i, ((s, ids), rel) in enumerate(real) if rel & set(ids)]
        choose = np.array([s for i, s in found if i % 2 == 0])
        report = np.array([s for i, s in found if i % 2 == 1])
        floor = float(np.floor(np.quantile(choose, 0.01) * 100) / 100)
        noise = np.array(
            [top_cosine(runtime, q)[0] for q in junk("multilingual" not in args.model, args.seed)]
        )
        runtime.close()
    result = {
        "model": args.model,
        "floor": floor,
        "real_queries_with_a_hit": {"choose": len(choose), "report": len(report)},
        "report_kept": float((report >= floor).mean()),
        "junk": len(noise),
        "junk_flagged": float((noise < floor).mean()),
        "real_top_cosine_quantiles": {q: float(np.quantile(report, q)) for q in (0.01, 0.1, 0.5)},
        "junk_top_cosine_quantiles": {q: float(np.quantile(noise, q)) for q in (0.5, 0.9, 0.99)},
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
