#!/usr/bin/env python3
"""Cross-lingual retrieval: does a statement find its own translation among the other languages?

For each German statement of `data/crosslingual/statements.jsonl`, the statements of each other
language (it, sv, ro, en) are ranked by cosine; top-1 is right when the translation of that very
statement ranks first. The same for every ordered pair of languages ("all pairs"). Models go
through the service's own embedder, so prefixes come from the model profile.

e5 is asymmetric ("query: " / "passage: "). The headline row uses `passage:` on both sides,
because that is what clustermatch does when it matches actors with actors: both sides are indexed
chunks, embedded as passages. The e5 model card recommends `query:` on both sides for symmetric
tasks, and a free-text search embeds the query as `query:` against `passage:` chunks: both are
reported as extra rows with `--e5-modes all` (the default).

`--set hard` evaluates `data/crosslingual/hard.jsonl` instead: about 200 statements in groups of
4-5 near-topic distractors (same vocabulary, different competence). Every ordered language pair
is reported as a 5x5 table, and the misses are split into "within group" (a near-topic
distractor ranked first) and "outside group". The numbers go to `--json`
(docs/crosslingual-hard.json by default) and `--update-doc` fills the hard-set section.

Also measures texts/s of each model on this machine (short statements and 40-80-word demo
passages, batch 32) and can write everything into a marked section of docs/multilingual.md.

    .venv/bin/python scripts/eval_crosslingual.py                # both models, print markdown
    .venv/bin/python scripts/eval_crosslingual.py --update-doc docs/multilingual.md
    .venv/bin/python scripts/eval_crosslingual.py --set hard --update-doc docs/multilingual.md
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import numpy.typing as npt

from service.config import CHECKOUT_DIR, ModelProfile
from service.embedding.base import Role
from service.embedding.sentence_transformers import SentenceTransformerEmbedder

STATEMENTS = CHECKOUT_DIR / "data" / "crosslingual" / "statements.jsonl"
HARD_STATEMENTS = CHECKOUT_DIR / "data" / "crosslingual" / "hard.jsonl"
SETS = {"standard": STATEMENTS, "hard": HARD_STATEMENTS}
HARD_JSON = CHECKOUT_DIR / "docs" / "crosslingual-hard.json"
DEMO_FILE = CHECKOUT_DIR / "data" / "demo" / "actors.jsonl.gz"
LANGUAGES = ("de", "it", "sv", "ro", "en")
SOURCE = "de"
MODELS = {"minilm": "all-minilm-l6-v2", "e5": "multilingual-e5-small"}
# (label, role of the source statement, role of the candidates)
E5_MODES: dict[str, tuple[str, Role, Role]] = {
    "passage": ("passage / passage", "passage", "passage"),
    "query": ("query / query", "query", "query"),
    "search": ("query -> passage", "query", "passage"),
}
DOC_START = "<!-- crosslingual-results:start -->"
DOC_END = "<!-- crosslingual-results:end -->"
HARD_DOC_START = "<!-- crosslingual-hard-results:start -->"
HARD_DOC_END = "<!-- crosslingual-hard-results:end -->"

Matrix = npt.NDArray[np.float32]
Texts = dict[str, list[str]]
Pair = tuple[str, str]


@dataclass
class PairOutcome:
    """Top-1 of one ordered language pair, with the misses split by the group of the winner."""

    top1: float
    within_group_errors: int
    outside_group_errors: int


@dataclass
class Result:
    """Top-1 accuracies and score ranges for one model in one prefix mode."""

    label: str
    per_target: dict[str, float]
    pairs: dict[tuple[str, str], float]
    true_cosine: float
    best_wrong_cosine: float
    unrelated_cosine: float
    outcomes: dict[Pair, PairOutcome] = field(default_factory=dict)

    @property
    def within_group_errors(self) -> int:
        return sum(o.within_group_errors for o in self.outcomes.values())

    @property
    def outside_group_errors(self) -> int:
        return sum(o.outside_group_errors for o in self.outcomes.values())


@dataclass
class Speed:
    """Texts/s per text kind, one value per round (the models take turns within a round)."""

    model: str
    load_s: float = 0.0
    rounds: dict[str, list[float]] = field(default_factory=dict)

    def median(self, kind: str) -> float:
        return statistics.median(self.rounds[kind])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--model", choices=["both", *MODELS], default="both", help="which model (default both)"
    )
    parser.add_argument(
        "--e5-modes",
        choices=["passage", "all"],
        default="all",
        help="e5 prefixes: passage/passage only, or also query/query and query->passage",
    )
    parser.add_argument(
        "--set",
        choices=list(SETS),
        default="standard",
        help="standard: statements.jsonl (48); hard: hard.jsonl (near-topic distractor groups)",
    )
    parser.add_argument(
        "--statements", type=Path, help="JSONL test set (default: the file of --set)"
    )
    parser.add_argument(
        "--json", type=Path, help=f"with --set hard: write the numbers here (default {HARD_JSON})"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--batch-size", type=int, default=32, help="default 32")
    parser.add_argument(
        "--speed-texts", type=int, default=256, help="demo passages for texts/s (0: skip)"
    )
    parser.add_argument("--speed-rounds", type=int, default=3, help="timed rounds (default 3)")
    parser.add_argument(
        "--update-doc", type=Path, help="replace the marked results section of this markdown file"
    )
    return parser.parse_args(argv)


def load_statements(path: Path) -> dict[str, list[str]]:
    """Statements per language, aligned by row (row i of every language is one statement)."""
    with path.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return {lang: [row[lang] for row in rows] for lang in LANGUAGES}


def load_groups(path: Path) -> list[str]:
    """The distractor group of every row (hard set); rows without one get a group of their own."""
    with path.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return [str(row.get("group") or f"_{i}") for i, row in enumerate(rows)]


def pair_outcome(source: Matrix, target: Matrix, groups: Sequence[str]) -> PairOutcome:
    """Top-1 of source row i against all target rows (right: target row i), and how many of the
    misses picked a row of the same group (a near-topic distractor) or of another group."""
    best = np.argmax(source @ target.T, axis=1)
    wrong = [int(i) for i in np.flatnonzero(best != np.arange(len(source)))]
    within = sum(1 for i in wrong if groups[int(best[i])] == groups[i])
    return PairOutcome(
        top1=1.0 - len(wrong) / len(source),
        within_group_errors=within,
        outside_group_errors=len(wrong) - within,
    )


def top1(source: Matrix, target: Matrix) -> float:
    """Share of rows whose own counterpart (same index) is the most similar target."""
    best = np.argmax(source @ target.T, axis=1)
    return float(np.mean(best == np.arange(len(source))))


def score_ranges(source: Matrix, target: Matrix) -> tuple[float, float, float]:
    """Mean cosine of the true pair, of the best wrong candidate, and of all wrong candidates."""
    sims = source @ target.T
    true = np.diag(sims).copy()
    np.fill_diagonal(sims, -np.inf)
    best_wrong = sims.max(axis=1)
    wrong = sims[np.isfinite(sims)]
    return float(true.mean()), float(best_wrong.mean()), float(wrong.mean())


def evaluate(
    embedder: SentenceTransformerEmbedder,
    texts: dict[str, list[str]],
    label: str,
    roles: tuple[Role, Role],
    groups: Sequence[str] | None = None,
) -> Result:
    source_role, target_role = roles
    src = {lang: embedder.embed(texts[lang], role=source_role) for lang in LANGUAGES}
    tgt = (
        src
        if source_role == target_role
        else {lang: embedder.embed(texts[lang], role=target_role) for lang in LANGUAGES}
    )
    pairs = {(s, t): top1(src[s], tgt[t]) for s in LANGUAGES for t in LANGUAGES if s != t}
    outcomes = (
        {p: pair_outcome(src[p[0]], tgt[p[1]], groups) for p in pairs} if groups is not None else {}
    )
    ranges = np.array([score_ranges(src[s], tgt[t]) for (s, t) in pairs])
    true, best_wrong, unrelated = (float(x) for x in ranges.mean(axis=0))
    per_target = {t: pairs[(SOURCE, t)] for t in LANGUAGES if t != SOURCE}
    return Result(label, per_target, pairs, true, best_wrong, unrelated, outcomes)


def demo_passages(count: int, seed: int = 11) -> list[str]:
    """Demo texts cut to their first 40-80 words, the size MODELS.md measured speed on."""
    with gzip.open(DEMO_FILE, "rt", encoding="utf-8") as handle:
        texts = sorted({d["text"] for line in handle for d in json.loads(line)["documents"]})
    rng = random.Random(seed)
    return [" ".join(t.split()[: rng.randint(40, 80)]) for t in rng.sample(texts, count)]


def load_model(name: str, args: argparse.Namespace) -> tuple[SentenceTransformerEmbedder, Speed]:
    profile = ModelProfile.load(MODELS[name])
    embedder = SentenceTransformerEmbedder(
        profile, threads=args.threads, batch_size=args.batch_size
    )
    start = time.perf_counter()
    embedder.warm_up()  # for e5 this includes the one-off conversion if the cache is empty
    return embedder, Speed(profile.name, load_s=time.perf_counter() - start)


def evaluate_model(
    name: str,
    embedder: SentenceTransformerEmbedder,
    args: argparse.Namespace,
    texts: Texts,
    groups: Sequence[str] | None = None,
) -> list[Result]:
    if name == "minilm":
        return [evaluate(embedder, texts, "MiniLM-L6-v2", ("passage", "passage"), groups)]
    modes = list(E5_MODES) if args.e5_modes == "all" else ["passage"]
    return [
        evaluate(embedder, texts, f"e5-small, {label}", (source, target), groups)
        for label, source, target in (E5_MODES[m] for m in modes)
    ]


def measure_speed(
    models: list[tuple[SentenceTransformerEmbedder, Speed]],
    sets: dict[str, list[str]],
    rounds: int,
    warm_up: int = 32,
) -> None:
    """Texts/s per model and text kind. The models take turns within each round, in a rotated
    order, so load from other jobs on the shared cores hits both alike; after one warm-up batch
    each, so one-off costs are not counted."""
    for embedder, _ in models:
        for texts in sets.values():
            embedder.embed(texts[:warm_up])
    for round_no in range(rounds):
        order = models[round_no % len(models) :] + models[: round_no % len(models)]
        for kind, texts in sets.items():
            for embedder, speed in order:
                start = time.perf_counter()
                embedder.embed(texts)
                rate = len(texts) / (time.perf_counter() - start)
                speed.rounds.setdefault(kind, []).append(rate)


def headline_table(results: list[Result]) -> str:
    targets = [t for t in LANGUAGES if t != SOURCE]
    head = " | ".join(f"{SOURCE}->{t}" for t in targets)
    lines = [
        f"| model (prefixes) | {head} | {SOURCE}->all | all pairs | worst pair |",
        "|---" * (len(targets) + 4) + "|",
    ]
    for r in results:
        cells = " | ".join(f"{r.per_target[t]:.3f}" for t in targets)
        overall = float(np.mean(list(r.per_target.values())))
        worst = min(r.pairs, key=lambda p: r.pairs[p])
        lines.append(
            f"| {r.label} | {cells} | {overall:.3f} | {np.mean(list(r.pairs.values())):.3f} "
            f"| {worst[0]}->{worst[1]} {r.pairs[worst]:.3f} |"
        )
    return "\n".join(lines)


def pairs_table(result: Result) -> str:
    lines = [
        f"| {result.label}: source \\ target | " + " | ".join(LANGUAGES) + " |",
        "|---" * (len(LANGUAGES) + 1) + "|",
    ]
    for s in LANGUAGES:
        cells = [("-" if s == t else f"{result.pairs[(s, t)]:.3f}") for t in LANGUAGES]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ranges_table(results: list[Result]) -> str:
    lines = [
        "| model (prefixes) | cosine of the translation | best wrong candidate | any wrong pair |",
        "|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.label} | {r.true_cosine:.3f} | {r.best_wrong_cosine:.3f} "
            f"| {r.unrelated_cosine:.3f} |"
        )
    return "\n".join(lines)


def speed_table(speeds: list[Speed]) -> str:
    kinds = list(speeds[0].rounds) if speeds else []
    lines = [
        "| model | load (s) | " + " | ".join(f"texts/s, {k}" for k in kinds) + " |",
        "|---" * (len(kinds) + 2) + "|",
    ]
    for s in speeds:
        rates = " | ".join(
            f"{s.median(k):.0f} ({min(s.rounds[k]):.0f}-{max(s.rounds[k]):.0f})" for k in kinds
        )
        lines.append(f"| {s.model} | {s.load_s:.1f} | {rates} |")
    if len(speeds) == 2:
        ratios = " | ".join(f"{paired_ratio(speeds[0], speeds[1], k):.2f}" for k in kinds)
        lines.append(f"| ratio {speeds[0].model} / {speeds[1].model} (paired) | | {ratios} |")
    return "\n".join(lines)


def paired_ratio(a: Speed, b: Speed, kind: str) -> float:
    """Median of the per-round ratios: steadier than a ratio of medians when the load changes."""
    return statistics.median(x / y for x, y in zip(a.rounds[kind], b.rounds[kind], strict=True))


def report(
    results: list[Result], speeds: list[Speed], n: int, command: str, elapsed: float, load: float
) -> str:
    parts = [
        f"Test set: {n} statements x {len(LANGUAGES)} languages "
        f"(`data/crosslingual/statements.jsonl`). Top-1 accuracy: the share of source statements "
        f"whose own translation is the most similar of the {n} candidates in the target language.",
        f"Command: `{command}` ({elapsed:.0f} s on 2 shared cores, torch CPU, batch 32).",
        headline_table(results),
        "All pairs (row: source language, column: target language):",
        *(pairs_table(r) for r in results),
        "Mean cosines (over all ordered language pairs):",
        ranges_table(results),
    ]
    if speeds:
        parts += [
            "Speed on this machine (sentence-transformers on torch, 2 threads, batch 32; median "
            f"(min-max) over {len(next(iter(speeds[0].rounds.values())))} rounds; 1-minute load "
            f"average {load:.1f} at the start; load (s) is the model load, with the one-off e5 "
            "conversion if the cache was empty):",
            speed_table(speeds),
        ]
    return "\n\n".join(parts) + "\n"


def errors_table(results: list[Result], n: int) -> str:
    retrievals = n * len(LANGUAGES) * (len(LANGUAGES) - 1)
    lines = [
        "| model (prefixes) | mean top-1 over pairs | worst pair | misses | "
        "within group (near-topic distractor) | outside group |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        worst = min(r.pairs, key=lambda p: r.pairs[p])
        misses = r.within_group_errors + r.outside_group_errors
        share = r.within_group_errors / misses if misses else 0.0
        lines.append(
            f"| {r.label} | {np.mean(list(r.pairs.values())):.3f} "
            f"| {worst[0]}->{worst[1]} {r.pairs[worst]:.3f} | {misses} / {retrievals} "
            f"| {r.within_group_errors} ({share:.0%}) | {r.outside_group_errors} |"
        )
    return "\n".join(lines)


def hard_report(results: list[Result], n: int, n_groups: int, command: str, elapsed: float) -> str:
    parts = [
        f"Hard set: {n} statements in {n_groups} groups of 4-5 near-topic distractors x "
        f"{len(LANGUAGES)} languages (`data/crosslingual/hard.jsonl`). For every ordered language "
        f"pair each source statement ranks all {n} statements of the target language; top-1 is "
        'right when its own translation ranks first. A miss is "within group" when the '
        "statement ranked first is one of its near-topic distractors.",
        f"Command: `{command}` ({elapsed:.0f} s on 2 shared cores, torch CPU, batch 32).",
        errors_table(results, n),
        "All pairs (row: source language, column: target language):",
        *(pairs_table(r) for r in results),
        "Mean cosines (over all ordered language pairs):",
        ranges_table(results),
    ]
    return "\n\n".join(parts) + "\n"


def hard_json(
    results: list[Result], n: int, n_groups: int, command: str, elapsed: float
) -> dict[str, object]:
    return {
        "set": "data/crosslingual/hard.jsonl",
        "statements": n,
        "groups": n_groups,
        "languages": list(LANGUAGES),
        "command": command,
        "elapsed_s": round(elapsed, 1),
        "results": [
            {
                "label": r.label,
                "mean_top1": round(float(np.mean(list(r.pairs.values()))), 4),
                "within_group_errors": r.within_group_errors,
                "outside_group_errors": r.outside_group_errors,
                "pairs": {
                    f"{s}->{t}": {
                        "top1": round(o.top1, 4),
                        "within_group_errors": o.within_group_errors,
                        "outside_group_errors": o.outside_group_errors,
                    }
                    for (s, t), o in r.outcomes.items()
                },
                "true_cosine": round(r.true_cosine, 4),
                "best_wrong_cosine": round(r.best_wrong_cosine, 4),
                "unrelated_cosine": round(r.unrelated_cosine, 4),
            }
            for r in results
        ],
    }


def update_doc(path: Path, section: str, start: str = DOC_START, end: str = DOC_END) -> None:
    """Replace the text between the result markers, keeping the rest of the document."""
    text = path.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"{path} has no {start} ... {end} section")
    replacement = f"{start}\n\n{section}\n{end}"
    path.write_text(pattern.sub(lambda _: replacement, text), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    load = os.getloadavg()[0]  # other jobs on the shared cores slow everything down
    path = args.statements or SETS[args.set]
    texts = load_statements(path)
    groups = load_groups(path) if args.set == "hard" else None
    names = list(MODELS) if args.model == "both" else [args.model]
    models = [load_model(name, args) for name in names]
    results: list[Result] = []
    for name, (embedder, _) in zip(names, models, strict=True):
        results += evaluate_model(name, embedder, args, texts, groups)
    if groups is not None:
        return finish_hard(args, argv, results, len(texts[SOURCE]), len(set(groups)), started)
    sets = {"statements": [t for lang in LANGUAGES for t in texts[lang]]}
    if args.speed_texts:
        sets["demo 40-80 words"] = demo_passages(args.speed_texts)
    if args.speed_rounds:
        measure_speed(models, sets, args.speed_rounds)
    speeds = [speed for _, speed in models] if args.speed_rounds else []
    arguments = sys.argv[1:] if argv is None else list(argv)
    command = f"python scripts/eval_crosslingual.py {shlex.join(arguments)}".strip()
    elapsed = time.perf_counter() - started
    section = report(results, speeds, len(texts[SOURCE]), command, elapsed, load)
    print(section)
    if args.update_doc:
        update_doc(args.update_doc, section)
        print(f"updated {args.update_doc}")
    return 0


def finish_hard(
    args: argparse.Namespace,
    argv: Sequence[str] | None,
    results: list[Result],
    n: int,
    n_groups: int,
    started: float,
) -> int:
    """Hard set: tables and the within/outside-group split, no speed rounds (the standard set
    measures speed)."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    command = f"python scripts/eval_crosslingual.py {shlex.join(arguments)}".strip()
    elapsed = time.perf_counter() - started
    section = hard_report(results, n, n_groups, command, elapsed)
    print(section)
    json_path = args.json or HARD_JSON
    payload = hard_json(results, n, n_groups, command, elapsed)
    json_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {json_path}")
    if args.update_doc:
        update_doc(args.update_doc, section, HARD_DOC_START, HARD_DOC_END)
        print(f"updated {args.update_doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
