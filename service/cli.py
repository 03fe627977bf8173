"""The `clustermatch` command: ingest, reindex, search, match, demo, serve.

Each subcommand is a small function from parsed arguments to an exit code. Output is for people by
default and one JSON document with `--json`. Errors of the domain hierarchy print one clear line and
exit with code 2 (bad input) or 1 (anything else the operator must fix).
"""

from __future__ import annotations

import argparse
import gzip
import ipaddress
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from service import keys_admin
from service.audit import at_the_command_line
from service.config import CHECKOUT_DIR, LOG_LEVEL_ENV, Settings
from service.domain import PRIVATE_IN_MATCHING
from service.errors import ClusterMatchError, Conflict, FieldProblem, InvalidInput
from service.filters import Filters
from service.keys import KeyFile, check_private
from service.runtime import Runtime
from service.store import ActorFilter

DEMO_FILE = CHECKOUT_DIR / "data" / "demo" / "actors.jsonl.gz"
SAME_CHOICES = ("sector", "region", "country", "kind", "cluster")
KIND_CHOICES = ("company", "research", "university", "cluster", "public", "other")

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT = 0, 1, 2
EXIT_BUSY = 75  # EX_TEMPFAIL: another rebuild holds the lock; a scheduler may retry later


# --- helpers -------------------------------------------------------------------------------


def _out(args: argparse.Namespace, payload: Any, human: Callable[[], None]) -> None:
    if args.json:
        json.dump(payload, sys.stdout, ensure_ascii=False, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        human()


@contextmanager
def _progress(total: int | None, description: str, unit: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr when a person is watching (a TTY); in a pipe, a log or CI, one
    plain line every `PROGRESS_EVERY` seconds instead, so a long step is never silent."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        with tqdm(total=total, desc=description, unit=unit, file=sys.stderr) as bar:
            yield bar.update
        return
    import time

    done, last = 0, time.monotonic()
    started = last

    def step(n: int) -> None:
        nonlocal done, last
        done += n
        now = time.monotonic()
        if now - last >= PROGRESS_EVERY:
            last = now
            of = f"/{total}" if total else ""
            print(f"{description}: {done}{of} {unit} ({now - started:.0f} s)", file=sys.stderr)

    yield step
    of = f"/{total}" if total else ""
    print(
        f"{description}: {done}{of} {unit}, done in {time.monotonic() - started:.0f} s",
        file=sys.stderr,
    )


def _positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _open_text(path: Path) -> TextIO:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open("r", encoding="utf-8")


def _count_lines(path: Path) -> int:
    with _open_text(path) as handle:
        return sum(1 for _ in handle)


PROGRESS_EVERY = 10.0
"""Seconds between progress lines when stderr is not a terminal."""

log = logging.getLogger("clustermatch.cli")

EMPTY_STORE_HINT = (
    "the store holds no actors yet: load profiles with `clustermatch ingest FILE.jsonl`, "
    "or the bundled demo with `clustermatch demo`"
)


def _filters(args: argparse.Namespace) -> ActorFilter:
    """The same validation and normalisation as the HTTP API (service.filters)."""
    filters = Filters.parse(
        prefix="--",
        country=args.country,
        region=args.region,
        kind=args.kind,
        sector=args.sector,
        cluster=args.cluster,
    )
    return filters.to_actor_filter(getattr(args, "exclude_same", None) or ())


def _print_matches(result: Any) -> None:
    if not result.matches:
        print("no matching actors")
        return
    for rank, match in enumerate(result.matches, start=1):
        actor = match.actor
        where = (actor.country or "country unknown") + (
            f"/{actor.region}" if actor.region and actor.region != actor.country else ""
        )
        print(f"{rank:>3}. {match.score:.3f}  {actor.name}  ({actor.kind}, {where})  [{actor.id}]")
        also = getattr(match, "also", None) or getattr(match, "same_passage", None) or []
        if also:
            print(
                f"       and {len(also)} more with the same passage (e.g. partners of one "
                f"project): {', '.join(a.name for a in also[:3])}{' ...' if len(also) > 3 else ''}"
            )
        for item in match.evidence[:1]:
            text = item.text.replace("\n", " ")
            print(f"       {item.document_id} ({item.score:.3f}): {text[:160]}")
            if item.key_terms:
                print(f"       shared: {', '.join(item.key_terms)}")
    print(f"\ngeneration {result.generation}, model {result.model}")


def _result_json(result: Any, key: str) -> dict[str, Any]:
    """The JSON of a result, its list named as the HTTP endpoint names it (`results` for
    search, `matches` for match)."""
    return {
        key: [asdict(m) for m in result.matches],
        "generation": result.generation,
        "model": result.model,
    }


# --- commands ------------------------------------------------------------------------------


def cmd_ingest(runtime: Runtime, args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise InvalidInput([FieldProblem("FILE", f"{path} is not a readable file")])
    total = _count_lines(path)
    with _open_text(path) as handle, _progress(total, "ingest", "lines") as step:
        report = runtime.ingestor.ingest_lines(
            handle, on_line=lambda: step(1), who=at_the_command_line()
        )
    payload = {
        "stored": report.stored,
        "created": report.created,
        "replaced": report.replaced,
        "errors": [asdict(e) for e in report.errors],
        "warnings": [asdict(w) for w in report.warnings],
    }

    def human() -> None:
        for warning in report.warnings:
            print(f"line {warning.line}: warning: {warning.message}", file=sys.stderr)
        for error in report.errors:
            print(f"line {error.line}: {error.message}", file=sys.stderr)
        print(
            f"stored {report.stored} actors ({report.created} new, {report.replaced} replaced), "
            f"{len(report.errors)} lines rejected"
        )
        if report.stored:
            print("run `clustermatch reindex` to make them findable")

    _out(args, payload, human)
    return EXIT_BAD_INPUT if report.errors else EXIT_OK


def cmd_reindex(runtime: Runtime, args: argparse.Namespace) -> int:
    _log_to_stderr()
    if args.ray_workers is not None and args.ray is None:
        raise InvalidInput([FieldProblem("--ray-workers", "only with --ray ADDRESS")])
    total = runtime.store.counts().chunks
    reindexer = (
        runtime.reindexer if args.ray is None else runtime.ray_reindexer(args.ray, args.ray_workers)
    )
    with _progress(total, "reindex", "chunks") as step:
        report = reindexer.run(full=args.full, progress=step)
    keys_admin.record_cli(runtime.store, "index.rebuild", report.generation)
    _out(
        args,
        asdict(report),
        lambda: print(
            f"generation {report.generation}: {report.actors} actors, {report.chunks} chunks "
            f"({report.embedded} embedded, {report.reused} from cache) in {report.seconds:.1f} s"
        ),
    )
    return EXIT_OK


def _log_to_stderr() -> None:
    """One line per phase of long jobs, for people and for schedulers' logs."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def cmd_index_status(runtime: Runtime, args: argparse.Namespace) -> int:
    generations = runtime.generations
    current = generations.current_id()
    rows = []
    for generation in generations.list_ids():
        manifest = generations.read_manifest(generation)
        rows.append(asdict(manifest) | {"current": generation == current})
    payload = {"current": current, "generations": rows, "store_changes": runtime.store.changes()}

    def human() -> None:
        if not rows:
            print("no index generation yet; run `clustermatch reindex`")
        for row in rows:
            mark = "*" if row["current"] else " "
            print(
                f"{mark} {row['generation']}  {row['chunks']:>8} chunks  {row['actors']:>7} actors"
                f"  model {row['model_id']}  built {row['built_at']}"
            )

    _out(args, payload, human)
    return EXIT_OK


def cmd_index_rollback(runtime: Runtime, args: argparse.Namespace) -> int:
    previous = runtime.generations.rollback()
    keys_admin.record_cli(runtime.store, "index.rollback", previous)
    _out(args, {"current": previous}, lambda: print(f"CURRENT -> {previous}"))
    return EXIT_OK


def _filter_values(args: argparse.Namespace) -> dict[str, list[str]]:
    names = ("country", "region", "kind", "sector", "cluster")
    return {n: list(getattr(args, n)) for n in names if getattr(args, n, None)}


def _remote(args: argparse.Namespace, runtime: Runtime) -> str | None:
    from service.client import find_server

    url = find_server(args.server, runtime.settings)
    if url is None:
        print(
            "no server answers at the configured address: loading the model and the index in "
            "this process (start `clustermatch serve` for answers in milliseconds)",
            file=sys.stderr,
        )
    return url


def cmd_search(runtime: Runtime, args: argparse.Namespace) -> int:
    _filters(args)  # the same validation, with the CLI's option names, before anything else
    url = _remote(args, runtime)
    if url is not None:
        from service.client import as_result, call

        params: dict[str, Any] = {"q": args.query, "limit": args.limit, **_filter_values(args)}
        params |= {"explain": args.explain, "diversify": args.diversify}
        body = call(url, "GET", "/v1/search", params=params)
        _out(args, body, lambda: _print_matches(as_result(body, "results")))
        return EXIT_OK
    result = runtime.matcher.search(
        args.query, limit=args.limit, filters=_filters(args), diversify=args.diversify
    )
    if args.explain:
        result = runtime.matcher.explain(result)
    if not result.matches and runtime.store.counts().actors == 0:
        print(EMPTY_STORE_HINT, file=sys.stderr)
    _out(args, _result_json(result, "results"), lambda: _print_matches(result))
    return EXIT_OK


def cmd_match(runtime: Runtime, args: argparse.Namespace) -> int:
    _filters(args)
    url = _remote(args, runtime)
    if url is not None:
        from service.client import as_result, call

        request = {
            "actor_id": args.actor_id,
            "limit": args.limit,
            "filters": _filter_values(args),
            "exclude_same": list(args.exclude_same or ()),
            "mode": "complement" if args.complement else "similar",
            "diversify": args.diversify,
            "explain": args.explain,
        }
        body = call(url, "POST", "/v1/match", json=request)
        _out(args, body, lambda: _print_matches(as_result(body, "matches")))
        return EXIT_OK
    result = runtime.matcher.match_actor(
        args.actor_id,
        limit=args.limit,
        filters=_filters(args),
        mode="complement" if args.complement else "similar",
        diversify=args.diversify,
    )
    if args.explain:
        result = runtime.matcher.explain(result)
    _out(args, _result_json(result, "matches"), lambda: _print_matches(result))
    return EXIT_OK


def cmd_demo(runtime: Runtime, args: argparse.Namespace) -> int:
    counts = runtime.store.counts()
    loaded = 0
    if counts.actors and not args.if_empty:
        print(
            f"the store already holds {counts.actors} actors; `clustermatch demo` only fills an "
            f"empty store (use --if-empty to skip loading and just make sure an index exists)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    if not counts.actors:
        path = Path(args.file)
        with _open_text(path) as handle, _progress(_count_lines(path), "demo", "actors") as step:
            report = runtime.ingestor.ingest_lines(
                handle, on_line=lambda: step(1), who=at_the_command_line()
            )
        loaded = report.stored
        if report.errors:
            print(
                f"{len(report.errors)} demo lines rejected; first: {report.errors[0]}",
                file=sys.stderr,
            )
    current = runtime.generations.current_id()
    needs_index = loaded > 0 or current is None
    if not needs_index:
        manifest = runtime.generations.read_manifest(current) if current else None
        needs_index = manifest is None or manifest.model_id != runtime.embedder.model_id
    generation = current
    if needs_index:
        with _progress(runtime.store.counts().chunks, "reindex", "chunks") as step:
            generation = runtime.reindexer.run(progress=step).generation
    payload = {"loaded": loaded, "generation": generation, "actors": runtime.store.counts().actors}
    _out(
        args,
        payload,
        lambda: print(
            f"demo ready: {payload['actors']} actors, generation {generation}"
            + ("" if loaded else " (store already filled; nothing loaded)")
        ),
    )
    return EXIT_OK


def cmd_map(runtime: Runtime, args: argparse.Namespace) -> int:
    from service.errors import IndexUnavailable
    from service.mapplot import render

    current = runtime.generations.current_id()
    if current is None:
        raise IndexUnavailable("no index generation yet; run `clustermatch reindex` first")
    manifest = runtime.generations.read_manifest(current)
    projection = runtime.maps.compute(manifest)
    actors = runtime.store.actor_summaries(projection.ids)
    out = Path(args.out)
    shown = render(projection, actors, out, colour_by=args.colour_by)
    payload = {"out": str(out), "actors": shown, "generation": current, "method": projection.method}
    _out(args, payload, lambda: print(f"wrote {out}: {shown} actors, generation {current}"))
    return EXIT_OK


def cmd_need(runtime: Runtime, args: argparse.Namespace) -> int:
    from service.need_report import as_json, as_text
    from service.needs import Need

    if (args.text is None) == (args.file is None):
        raise InvalidInput([FieldProblem("--text", "give the need as --text or as --file")])
    text = args.text if args.text is not None else Path(args.file).read_text(encoding="utf-8")
    result = runtime.needs.match(
        Need(text, title=args.title or "", language=args.language),
        limit=args.limit,
        filters=_filters(args),
        team_size=args.team_size,
    )
    _out(args, as_json(result), lambda: print(as_text(result)))
    return EXIT_OK


def cmd_report_bridges(runtime: Runtime, args: argparse.Namespace) -> int:
    from service.bridge_report import write_files
    from service.bridges import parse_side

    sides = parse_side(args.source, "--from"), parse_side(args.target, "--to")
    print(f"bridge report: {sides[0].label} -> {sides[1].label} ...", file=sys.stderr)
    report = runtime.bridges.report(
        *sides, runtime.index.snapshot(), pairs=args.pairs, themes=args.themes
    )
    page, plot = write_files(report, Path(args.out), Path(args.plot) if args.plot else None)
    payload = {
        "out": str(page),
        "plot": str(plot),
        "from": sides[0].label,
        "to": sides[1].label,
        "actors": [report.a_actors, report.b_actors],
        "pairs": len(report.pairs),
        "generation": report.generation,
    }
    _out(args, payload, lambda: print(f"wrote {page} and {plot}: {len(report.pairs)} pairs"))
    return EXIT_OK


def cmd_serve(runtime: Runtime, args: argparse.Namespace) -> int:
    import uvicorn

    from service.api.app import create_app

    host = args.host or runtime.settings.host
    port = args.port or runtime.settings.port
    if runtime.settings.keys_file is not None:
        check_private(runtime.settings.keys_file)  # refuse to start on a readable keys file
    if runtime.settings.keys_file is None and not is_loopback(host):
        print(
            f"error: refusing to serve on {host} without API keys; set CLUSTERMATCH_KEYS_FILE "
            f"(create keys with `clustermatch keys create`) or bind to 127.0.0.1",
            file=sys.stderr,
        )
        return EXIT_ERROR
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    # Refuse to start on an outdated store schema, with the command that fixes it, rather than
    # answering every request with 503 (an empty store gets its schema here).
    runtime.store.changes()
    workers = args.workers or usable_cores()
    if workers == 1:
        uvicorn.run(create_app(runtime, warm=True), host=host, port=port, log_level=args.log_level)
        return EXIT_OK
    # Several processes: each builds its own runtime from the environment (service.api.server).
    os.environ[LOG_LEVEL_ENV] = args.log_level
    log.info("serving with %d worker processes", workers)
    from service.api.server import serve_workers

    serve_workers(host, port, workers, args.log_level)
    return EXIT_OK


def cmd_db(runtime: Runtime, args: argparse.Namespace) -> int:
    from service import cli_db

    if args.db_command == "upgrade":
        done = cli_db.cmd_db_upgrade(runtime, args)
        message = f"{done['database']}: schema {done['before'] or 'empty'} -> {done['after']}"
    else:
        done = cli_db.cmd_db_status(runtime, args)
        revision = done["revision"] or "empty"
        message = f"{done['database']}: schema {revision} (newest {done['head']})"
        if done["action"]:
            message += f"; {done['action']}"
    _out(args, done, lambda: print(message))
    return EXIT_OK


def usable_cores() -> int:
    """Cores this process may run on (a container's CPU set, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _keys_file(runtime: Runtime) -> KeyFile:
    path = runtime.settings.keys_file
    if path is None:
        raise InvalidInput(
            [FieldProblem("CLUSTERMATCH_KEYS_FILE", "set it to the keys file to use")]
        )
    return KeyFile(path)


def cmd_keys_create(runtime: Runtime, args: argparse.Namespace) -> int:
    keys = _keys_file(runtime)
    scopes = tuple(split_commas(args.scopes))
    networks = tuple(split_commas(args.networks))
    key = keys_admin.create(
        keys, runtime.store, scopes=scopes, tenant=args.tenant, networks=networks, name=args.name
    )
    _out(
        args,
        {"key": key, "scopes": scopes, "tenant": args.tenant, "keys_file": str(keys.path)},
        lambda: print(
            f"{key}\n\nThis key is shown once; it is stored only as a hash in {keys.path}.",
        ),
    )
    return EXIT_OK


def cmd_backup(runtime: Runtime, args: argparse.Namespace) -> int:
    from service.backup import backup

    report = backup(runtime.settings, Path(args.dir), progress=_say)
    _out(args, asdict(report), lambda: print(f"backup complete: {report.path}"))
    return EXIT_OK


def cmd_restore(runtime: Runtime, args: argparse.Namespace) -> int:
    from service.backup import restore

    report = restore(runtime.settings, Path(args.dir), force=args.force, progress=_say)
    _out(args, asdict(report), lambda: print(f"restored into {report.data_dir}"))
    return EXIT_OK


def _say(line: str) -> None:
    print(line, file=sys.stderr)


def cmd_keys_list(runtime: Runtime, args: argparse.Namespace) -> int:
    rows = keys_admin.key_rows(_keys_file(runtime))

    def human() -> None:
        for r in rows:
            networks = ",".join(r["networks"]) or "-"
            print(
                f"{r['id']}  {r['tenant']:<20} {','.join(r['scopes']):<16} networks {networks:<16} "
                f"{r['state']:<36} {r['name']}"
            )
        if not rows:
            print("no keys (create one with `clustermatch keys create`)")

    _out(args, {"keys": rows}, human)
    return EXIT_OK


def cmd_keys_revoke(runtime: Runtime, args: argparse.Namespace) -> int:
    key = keys_admin.revoke(_keys_file(runtime), runtime.store, args.key_id)
    _out(
        args,
        {"id": key.id, "revoked_at": key.revoked_at},
        lambda: print(
            f"key {key.id} ({key.tenant}) revoked at {key.revoked_at}; every worker refuses it "
            f"from its next request on"
        ),
    )
    return EXIT_OK


def cmd_keys_rotate(runtime: Runtime, args: argparse.Namespace) -> int:
    new, token = keys_admin.rotate(_keys_file(runtime), runtime.store, args.key_id, args.grace)
    until = "at once" if not args.grace else f"in {args.grace} s"
    _out(
        args,
        {"key": token, "id": new.id, "replaces": args.key_id, "old_key_stops": until},
        lambda: print(
            f"{token}\n\nThis key replaces {args.key_id} (same tenant, scopes and networks), "
            f"which stops working {until}. It is shown once; only its hash is stored."
        ),
    )
    return EXIT_OK


def cmd_keys_tenant(runtime: Runtime, args: argparse.Namespace) -> int:
    keys = _keys_file(runtime)
    keys_admin.set_tenant(keys, runtime.store, args.tenant, args.private_in_matching)
    _out(
        args,
        {"tenant": args.tenant, "private_in_matching": args.private_in_matching},
        lambda: print(f"tenant {args.tenant}: private_in_matching {args.private_in_matching}"),
    )
    return EXIT_OK


def cmd_audit(runtime: Runtime, args: argparse.Namespace) -> int:
    from service.audit import AuditQuery, parse_instant

    query = AuditQuery(
        since=parse_instant(args.since, "--since") if args.since else None,
        until=parse_instant(args.until, "--until") if args.until else None,
        tenant=args.tenant,
        key_id=args.key_id,
        action=args.action,
        limit=args.limit,
    )
    rows = keys_admin.audit_rows(runtime.store, query)

    def human() -> None:
        for r in rows:
            who = r["key_id"] or r["origin"]
            target = r["target"] or ""
            print(
                f"{r['at']}  {r['action']:<14} {who:<14} {r['tenant']:<20} x{r['count']} {target}"
            )

    _out(args, {"events": rows}, human)
    return EXIT_OK


def cmd_audit_prune(runtime: Runtime, args: argparse.Namespace) -> int:
    days = args.days or runtime.settings.audit_retention_days
    removed = keys_admin.prune(runtime.store, days)
    _out(
        args,
        {"removed": removed, "older_than_days": days},
        lambda: print(f"removed {removed} audit events older than {days} days"),
    )
    return EXIT_OK


def split_commas(values: list[str] | None) -> list[str]:
    return [v.strip() for value in values or () for v in value.split(",") if v.strip()]


# --- parser --------------------------------------------------------------------------------


def _add_filter_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("filters (repeat an option to allow several values)")
    group.add_argument("--country", action="append", metavar="CC", help="ISO 3166 code, e.g. AT")
    group.add_argument("--region", action="append", metavar="NUTS", help="NUTS code or prefix")
    group.add_argument("--kind", action="append", choices=KIND_CHOICES, help="actor kind")
    group.add_argument("--sector", action="append", metavar="NACE", help="NACE Rev.2 code")
    group.add_argument("--cluster", action="append", metavar="ID", help="cluster id")
    parser.add_argument("--limit", type=int, default=10, help="how many actors (default 10)")
    parser.add_argument(
        "--diversify", action="store_true", help="prefer variety over near-copies (MMR)"
    )
    parser.add_argument(
        "--explain", action="store_true", help="show the key terms query and evidence share"
    )
    parser.add_argument(
        "--server",
        default="auto",
        metavar="URL|auto|none",
        help="ask a running server (auto: the configured address, if one answers); none: "
        "load the model here (default: auto)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clustermatch",
        description="Match innovation-cluster actors across sectors and regions.",
        epilog="Settings come from CLUSTERMATCH_* environment variables; see README.md.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON document")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "ingest", parents=[common], help="store actor profiles from a JSON-lines file"
    )
    p.add_argument("file", metavar="FILE.jsonl", help="one profile per line (.gz accepted)")
    p.set_defaults(handler=cmd_ingest)

    p = sub.add_parser(
        "reindex",
        parents=[common],
        help="build a new index generation from the store",
        description="Embed passages not yet in the cache, build, verify and publish a new "
        "generation; a running service swaps to it within CLUSTERMATCH_WATCH_SECONDS.",
        epilog="exit codes: 0 published, 1 failed (the previous generation keeps serving), "
        "2 bad configuration, 75 another rebuild is running (retry later)",
    )
    p.add_argument("--full", action="store_true", help="re-embed everything, ignoring the cache")
    p.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="embed on a Ray cluster (needs `clustermatch[ray]` on every node): a Ray address "
        "such as host:6379 or ray://host:10001, or `auto` for the cluster this machine belongs "
        "to, else a local one for this run",
    )
    p.add_argument(
        "--ray-workers",
        type=_positive,
        metavar="N",
        help="Ray actors, one model each, of CLUSTERMATCH_THREADS CPUs (default: the cluster's "
        "CPUs / CLUSTERMATCH_THREADS)",
    )
    p.set_defaults(handler=cmd_reindex)

    p = sub.add_parser("index", help="inspect index generations or roll back")
    index = p.add_subparsers(dest="index_command", required=True, metavar="ACTION")
    p = index.add_parser("status", parents=[common], help="list generations; * marks CURRENT")
    p.set_defaults(handler=cmd_index_status)
    p = index.add_parser(
        "rollback", parents=[common], help="point CURRENT at the previous generation"
    )
    p.set_defaults(handler=cmd_index_rollback)

    p = sub.add_parser("search", parents=[common], help="free-text search for actors")
    p.add_argument("query", help='what to look for, e.g. "offshore wind turbine blades"')
    _add_filter_options(p)
    p.set_defaults(handler=cmd_search)

    p = sub.add_parser(
        "match", parents=[common], help="actors similar to a stored actor (never itself)"
    )
    p.add_argument("actor_id")
    _add_filter_options(p)
    p.add_argument(
        "--exclude-same",
        action="append",
        choices=SAME_CHOICES,
        help="drop actors sharing this attribute with the query actor (repeatable)",
    )
    p.add_argument(
        "--complement",
        action="store_true",
        help="match the actor's needs (documents with intent need) against others' offers",
    )
    p.set_defaults(handler=cmd_match)

    p = sub.add_parser(
        "demo", parents=[common], help="load the bundled CORDIS demo data and build the index"
    )
    p.add_argument("--file", default=str(DEMO_FILE), help="demo file (default: bundled)")
    p.add_argument(
        "--if-empty", action="store_true", help="do nothing if the store already holds actors"
    )
    p.set_defaults(handler=cmd_demo)

    p = sub.add_parser(
        "map",
        parents=[common],
        help="draw the competence map of the current generation (PNG, SVG or PDF)",
        description="Every actor as a point: a 2-D projection (CLUSTERMATCH_MAP_METHOD, t-SNE "
        "by default) of its profile vector, computed once per generation and cached.",
    )
    p.add_argument("--out", required=True, metavar="FILE", help="map.png, map.svg or map.pdf")
    p.add_argument(
        "--colour-by",
        "--color-by",
        dest="colour_by",
        default="kind",
        choices=("kind", "country", "sector", "cluster"),
        help="what the colours show (default: kind)",
    )
    p.set_defaults(handler=cmd_map)

    p = sub.add_parser(
        "need",
        parents=[common],
        help="suppliers and consortia for a procurement need (any language)",
        description="Split the need into its aspects (sentences), rank actors whose offers and "
        "competences answer it, and propose teams of 2 to --team-size actors that together "
        "cover the most aspects (the same as POST /v1/needs/match).",
    )
    p.add_argument("--text", help="the need's text")
    p.add_argument("--file", metavar="FILE.txt", help="or a file holding it (UTF-8)")
    p.add_argument("--title", help="a title (shown, not scored)")
    p.add_argument("--language", metavar="ISO", help="ISO 639-1 code (default: detected)")
    p.add_argument("--limit", type=int, default=10, help="how many suppliers (default 10)")
    p.add_argument("--team-size", type=int, default=3, choices=(2, 3, 4), help="largest consortium")
    group = p.add_argument_group("filters on suppliers (repeat an option for several values)")
    group.add_argument("--country", action="append", metavar="CC")
    group.add_argument("--region", action="append", metavar="NUTS")
    group.add_argument("--kind", action="append", choices=KIND_CHOICES)
    group.add_argument("--sector", action="append", metavar="NACE")
    group.add_argument("--cluster", action="append", metavar="ID")
    p.set_defaults(handler=cmd_need)

    p = sub.add_parser("report", help="reports for cluster managers (HTML, prints to PDF)")
    reports = p.add_subparsers(dest="report_command", required=True, metavar="REPORT")
    p = reports.add_parser(
        "bridges",
        parents=[common],
        help="who should meet whom between two clusters, regions or countries",
        description="The strongest cross pairs with their passages, the competence themes both "
        "sides share and those only one side has, and a plot: one self-contained HTML page "
        "(and the plot as a PNG beside it), built on the served index generation.",
        epilog="A side is country:AT, region:AT31 (NUTS, any level) or cluster:<id>; a bare "
        "value is a country when it is two letters, a region when it is a longer NUTS code, "
        "else a cluster id. Example: clustermatch report bridges --from AT --to IT --out "
        "report.html",
    )
    p.add_argument("--from", dest="source", required=True, metavar="SIDE", help="one side")
    p.add_argument("--to", dest="target", required=True, metavar="SIDE", help="the other side")
    p.add_argument("--out", required=True, metavar="FILE.html", help="where to write the page")
    p.add_argument("--plot", metavar="FILE.png", help="where to write the plot (default: beside)")
    p.add_argument("--pairs", type=int, default=12, help="how many pairs (default 12)")
    p.add_argument("--themes", type=int, default=12, help="themes per list (default 12)")
    p.set_defaults(handler=cmd_report_bridges)

    p = sub.add_parser(
        "serve", parents=[common], help="serve the HTTP API (never loads demo data by itself)"
    )
    p.add_argument("--host", help="bind address (default CLUSTERMATCH_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default CLUSTERMATCH_PORT or 8000)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="worker processes, each with its own model and delta, sharing the generation "
        "files (default: the number of usable cores)",
    )
    p.set_defaults(handler=cmd_serve)

    p = sub.add_parser(
        "backup",
        parents=[common],
        help="copy the store, the served generation and the keys file into a new folder",
        description="An online backup (the service keeps serving): the served generation, then "
        "the SQLite store through SQLite's backup API, then the keys file, with a manifest of "
        "checksums. For a PostgreSQL store it prints the pg_dump command instead.",
    )
    p.add_argument("dir", metavar="DIR", help="a new or empty folder")
    p.set_defaults(handler=cmd_backup)

    p = sub.add_parser(
        "restore",
        parents=[common],
        help="replace the data folder with a backup (stop the service first)",
        description="Verify every checksum of the backup, build the data folder beside "
        "CLUSTERMATCH_DATA_DIR and rename it into place: all or nothing. A restored service "
        "serves the same results at once.",
    )
    p.add_argument("dir", metavar="DIR", help="a folder written by `clustermatch backup`")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace a non-empty data folder (it is moved aside to <dir>.replaced-<time>, "
        "not deleted) and a different keys file",
    )
    p.set_defaults(handler=cmd_restore)

    p = sub.add_parser(
        "db",
        help="the store's schema: status, upgrade",
        description="The store's schema revision (Alembic). A new database gets the newest schema "
        "on first use; an older one is upgraded only by `clustermatch db upgrade` (take a "
        "backup first). CLUSTERMATCH_DATABASE_URL chooses the store (default: SQLite in the "
        "data directory; postgresql://... for PostgreSQL).",
    )
    db = p.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    p = db.add_parser("status", parents=[common], help="the schema revision and what to do")
    p.set_defaults(handler=cmd_db)
    p = db.add_parser("upgrade", parents=[common], help="run the pending migrations")
    p.set_defaults(handler=cmd_db)

    p = sub.add_parser(
        "keys",
        help="manage API keys and tenant settings",
        description="Changes take effect with the next request of every worker, no restart.",
    )
    keys = p.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    p = keys.add_parser(
        "create",
        parents=[common],
        help="create an API key and print it once",
        description="Create a key in CLUSTERMATCH_KEYS_FILE; only its hash is stored.",
    )
    p.add_argument(
        "--scopes", action="append", required=True, help="read, write, admin (comma list)"
    )
    p.add_argument(
        "--tenant", required=True, help="the tenant actors written with this key belong to"
    )
    p.add_argument("--networks", action="append", help="networks this key belongs to (comma list)")
    p.add_argument("--name", default="", help="a note, e.g. who holds the key")
    p.set_defaults(handler=cmd_keys_create)
    p = keys.add_parser("list", parents=[common], help="every key (never a secret) and its state")
    p.set_defaults(handler=cmd_keys_list)
    p = keys.add_parser("revoke", parents=[common], help="make a key stop working now")
    p.add_argument("key_id", help="the id of the key (`keys list`; cm_<id>_...)")
    p.set_defaults(handler=cmd_keys_revoke)
    p = keys.add_parser(
        "rotate",
        parents=[common],
        help="replace a key by a new one with the same tenant, scopes and networks",
    )
    p.add_argument("key_id", help="the id of the key to replace")
    p.add_argument(
        "--grace",
        type=int,
        default=0,
        metavar="SECONDS",
        help="keep the old key working this long, for clients to switch (default 0: at once)",
    )
    p.set_defaults(handler=cmd_keys_rotate)
    p = keys.add_parser(
        "tenant",
        parents=[common],
        help="a tenant's settings, e.g. whether its private passages count in matching",
        description="private_in_matching: own (default) - a tenant's private passages count in "
        "its own actor matches only; all - also in other tenants' matches, by vector "
        "similarity only (the texts are never shown); none - in no match. Free-text search "
        "never counts a passage the caller may not see.",
    )
    p.add_argument("tenant")
    p.add_argument(
        "--private-in-matching", required=True, choices=PRIVATE_IN_MATCHING, metavar="MODE"
    )
    p.set_defaults(handler=cmd_keys_tenant)

    p = sub.add_parser(
        "audit",
        parents=[common],
        help="the audit log: who did what and when (never any text)",
        description="Writes, deletes, key use (per key and minute), refused and rate-limited "
        "keys, rebuilds and key changes, oldest first.",
    )
    audit = p.add_subparsers(dest="audit_command", metavar="ACTION")
    p.add_argument("--since", help="ISO 8601 date or time, UTC (e.g. 2026-12-01)")
    p.add_argument("--until", help="ISO 8601 date or time, UTC (exclusive)")
    p.add_argument("--tenant")
    p.add_argument("--key-id")
    p.add_argument("--action", help="e.g. actor.delete, key.use, keys.revoke")
    p.add_argument("--limit", type=int, default=1000, help="at most this many (default 1000)")
    p.set_defaults(handler=cmd_audit)
    prune_parser = audit.add_parser(
        "prune", parents=[common], help="delete events older than the retention period"
    )
    prune_parser.add_argument(
        "--days", type=int, help="default CLUSTERMATCH_AUDIT_RETENTION_DAYS (365)"
    )
    prune_parser.set_defaults(handler=cmd_audit_prune)
    return parser
    return parser


def main(argv: Sequence[str] | None = None, runtime: Runtime | None = None) -> int:
    args = build_parser().parse_args(argv)
    runtime = runtime or Runtime(Settings())
    try:
        code: int = args.handler(runtime, args)
        return code
    except InvalidInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Conflict as exc:
        print(f"busy: {exc}", file=sys.stderr)
        return EXIT_BUSY
    except ClusterMatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        runtime.close()


if __name__ == "__main__":
    sys.exit(main())
