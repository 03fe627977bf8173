"""Load and faults against a real server on loopback: nothing acknowledged is lost, nothing deleted
comes back, and no request fails outside the one planned restart.

What runs (all on 127.0.0.1, in a fresh data folder):

1. `<module> serve` (one worker process; `ServerProcess` of service.evaluation_server), seeded
   with demo profiles through `POST /v1/actors/bulk` and a first rebuild;
2. for `--seconds`, `--clients` threads mix searches, matches, reads of their own actors,
   single PUTs (new actors and rewrites), bulk imports and deletes, each thread on actors of its
   own, so it knows what every acknowledged write left behind;
3. meanwhile, rebuilds are published by `<module> reindex` in other processes, one of them is
   SIGKILLed at a failpoint (`CLUSTERMATCH_FAILPOINT`, service.failpoints), and the server is
   SIGKILLed once and started again on the same port (the restart window: from the kill until
   `/healthz` answers again); the load goes on for `(1 - --restart-at) * --seconds` after the
   restarted server answers;
4. checks: 0 5xx and 0 failed connections outside the restart window; every acknowledged write
   is in the store afterwards (GET shows its last acknowledged text) and matchable (a search for
   its text returns it), before and after one more rebuild; every acknowledged delete is gone;
   no response that STARTED after a DELETE returned carries the deleted actor.

It prints progress to stderr, one JSON document to stdout (and to `--out`), and exits 0 only when
every check holds. `--module tests.fake_cli` runs the same on the tests' fake embedder (no model:
the `make test` variant, tests/test_load_fault.py).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import numpy as np

from service.config import CHECKOUT_DIR
from service.evaluation_server import ServerProcess

DEMO_FILE = CHECKOUT_DIR / "data" / "demo" / "actors.jsonl.gz"
OPS = ("search", "match", "get", "put", "bulk", "delete")
WEIGHTS = (35, 20, 10, 17, 6, 12)
SEARCH_DEPTH = 100
"""How deep the final check looks for an actor in a search for its own text."""
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
EXCEPTION_LINE = re.compile(r"[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b")
"""The line of a traceback that names the exception, e.g. `sqlite3.IntegrityError: ...`."""
SEARCH_WORDS = (
    "hydrogen electrolyser",
    "wind turbine blades",
    "machine learning for medical imaging",
    "battery recycling",
    "precision agriculture sensors",
    "composite materials for aircraft",
    "water treatment membranes",
    "quantum computing",
    "smart grid software",
    "biodegradable packaging",
)


# --- what happened ---------------------------------------------------------------------------


@dataclass
class Call:
    op: str
    start: float
    end: float
    status: int | None
    """HTTP status; None when the connection failed or timed out."""
    returned: tuple[str, ...] = ()
    """Actor ids a search or match returned."""
    problem: str = ""


@dataclass
class Owned:
    """What one client thread knows about its own actors from the answers it got."""

    present: dict[str, str] = field(default_factory=dict)
    """Acknowledged and not deleted: id -> the text of the last acknowledged write."""
    deleted: dict[str, float] = field(default_factory=dict)
    """id -> when its DELETE returned (204)."""
    unknown: set[str] = field(default_factory=set)
    """The last write or delete got no clear answer (the restart): no claim either way."""


@dataclass
class Window:
    start: float
    end: float | None = None

    def overlaps(self, call: Call) -> bool:
        return call.start <= (self.end or float("inf")) and call.end >= self.start


# --- the clients ------------------------------------------------------------------------------


class Client:
    """One client thread's loop; it backs off briefly when the server does not answer, as a
    real client would (and so that a restart is not slowed by a storm of refused connects)."""

    def __init__(
        self,
        number: int,
        base_url: str,
        passages: list[str],
        seed_ids: list[str],
        stop: threading.Event,
        seed: int,
    ) -> None:
        self.thread = threading.Thread(target=self.run, name=f"client-{number}", daemon=True)
        self.number = number
        self.http = httpx.Client(base_url=base_url, timeout=60)
        self.passages = passages
        self.seed_ids = seed_ids
        self.stop = stop
        self.rng = random.Random(seed * 1000 + number)
        self.calls: list[Call] = []
        self.owned = Owned()
        self.serial = 0

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                op = self.rng.choices(OPS, WEIGHTS)[0]
                if op in ("get", "delete") and not self.owned.present:
                    op = "put"
                call = getattr(self, f"op_{op}")()
                if call.status is None:
                    time.sleep(0.2)
        finally:
            self.http.close()

    def _call(self, op: str, method: str, path: str, **kwargs: Any) -> tuple[Call, Any]:
        start = time.monotonic()
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            call = Call(op, start, time.monotonic(), None, problem=type(exc).__name__)
            self.calls.append(call)
            return call, None
        call = Call(op, start, time.monotonic(), response.status_code)
        body: Any = None
        if response.headers.get("content-type", "").endswith("json"):
            body = response.json()
        if response.status_code >= 400:
            call.problem = str(body.get("detail", ""))[:200] if isinstance(body, dict) else ""
        self.calls.append(call)
        return call, body

    def _profile(self, actor_id: str) -> tuple[dict[str, Any], str]:
        self.serial += 1
        marker = f"lfm{self.number}x{self.serial}"
        text = f"{self.rng.choice(self.passages)} Reference {marker}."
        profile = {
            "id": actor_id,
            "name": f"Load actor {actor_id}",
            "kind": "company",
            "country": "AT",
            "documents": [{"id": "d0", "kind": "description", "text": text, "language": "en"}],
        }
        return profile, text

    def _new_id(self) -> str:
        self.serial += 1
        return f"lf-{self.number}-{self.serial}"

    def op_search(self) -> Call:
        query = self.rng.choice(SEARCH_WORDS)
        call, body = self._call("search", "GET", "/v1/search", params={"q": query, "limit": 10})
        if call.status == 200:
            call.returned = _ids(body["results"])
        return call

    def op_match(self) -> Call:
        pool = self.seed_ids + list(self.owned.present)
        actor_id = self.rng.choice(pool)
        call, body = self._call(
            "match", "POST", "/v1/match", json={"actor_id": actor_id, "limit": 10}
        )
        if call.status == 200:
            call.returned = _ids(body["matches"])
        return call

    def op_get(self) -> Call:
        actor_id = self.rng.choice(sorted(self.owned.present))
        call, body = self._call("get", "GET", f"/v1/actors/{actor_id}")
        if call.status == 200 and body["documents"][0]["text"] != self.owned.present[actor_id]:
            call.problem = "stale text: not the last acknowledged write"
        elif call.status == 404:
            call.problem = "acknowledged actor missing"
        return call

    def op_put(self) -> Call:
        rewrite = self.owned.present and self.rng.random() < 0.3
        actor_id = self.rng.choice(sorted(self.owned.present)) if rewrite else self._new_id()
        profile, text = self._profile(actor_id)
        call, _ = self._call("put", "PUT", f"/v1/actors/{actor_id}", json=profile)
        self._settle(actor_id, text, call.status in (200, 201), call.status)
        return call

    def op_bulk(self) -> Call:
        items = [self._profile(self._new_id()) for _ in range(self.rng.randint(3, 10))]
        lines = "\n".join(json.dumps(p) for p, _ in items)
        call, body = self._call(
            "bulk",
            "POST",
            "/v1/actors/bulk",
            content=lines.encode(),
            headers={"content-type": "application/x-ndjson"},
        )
        results = body["results"] if call.status == 200 else []
        stored = {r["id"] for r in results if r["status"] != "rejected"}
        for profile, text in items:
            self._settle(profile["id"], text, profile["id"] in stored, call.status)
        return call

    def op_delete(self) -> Call:
        actor_id = self.rng.choice(sorted(self.owned.present))
        call, _ = self._call("delete", "DELETE", f"/v1/actors/{actor_id}")
        if call.status == 204:
            del self.owned.present[actor_id]
            self.owned.deleted[actor_id] = call.end
        else:
            self._lost_track(actor_id)
        return call

    def _settle(self, actor_id: str, text: str, acknowledged: bool, status: int | None) -> None:
        if acknowledged:
            self.owned.present[actor_id] = text
        elif status is None or status >= 500:
            self._lost_track(actor_id)
        # a 4xx leaves the earlier state as it was (and is reported as unexpected)

    def _lost_track(self, actor_id: str) -> None:
        self.owned.present.pop(actor_id, None)
        self.owned.unknown.add(actor_id)


def _ids(results: list[dict[str, Any]]) -> tuple[str, ...]:
    ids = []
    for result in results:
        ids.append(result["actor"]["id"])
        ids.extend(a["id"] for a in result.get("same_passage", []))
    return tuple(ids)


# --- the faults -------------------------------------------------------------------------------


class Faults:
    """Rebuilds in other processes (one SIGKILLed at a failpoint) and one server restart."""

    def __init__(self, server: ServerProcess, args: argparse.Namespace, log: Any) -> None:
        self.server = server
        self.args = args
        self.log = log
        self.rebuilds: list[dict[str, Any]] = []
        self.restart: Window | None = None
        self.restart_done = threading.Event()
        self.stop = threading.Event()

    def rebuild_loop(self) -> None:
        number = 0
        while not self.stop.wait(self.args.rebuild_gap):
            number += 1
            if number == self.args.kill_rebuild:
                self.rebuilds.append(self._killed_rebuild())
            else:
                self.rebuilds.append(self._rebuild())

    def _command(self) -> list[str]:
        return [sys.executable, "-m", self.args.module, "reindex", "--json"]

    def _rebuild(self) -> dict[str, Any]:
        started = time.monotonic()
        done = subprocess.run(
            self._command(), env=self.server.env(), capture_output=True, text=True, timeout=600
        )
        outcome = {0: "published", 75: "busy"}.get(done.returncode, "failed")
        record: dict[str, Any] = {
            "outcome": outcome,
            "seconds": round(time.monotonic() - started, 2),
        }
        if outcome == "published":
            record["generation"] = json.loads(done.stdout)["generation"]
        elif outcome == "failed":
            record["error"] = done.stderr.strip().splitlines()[-3:]
        self.log(f"rebuild: {outcome} in {record['seconds']} s")
        return record

    def _killed_rebuild(self) -> dict[str, Any]:
        env = self.server.env() | {"CLUSTERMATCH_FAILPOINT": self.args.kill_failpoint}
        process = subprocess.Popen(
            self._command(), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        assert process.stderr is not None
        reached = False
        for line in process.stderr:
            if line.startswith(f"FAILPOINT {self.args.kill_failpoint}"):
                reached = True
                break
        process.kill()
        process.wait(30)
        self.log(f"rebuild: SIGKILLed at failpoint {self.args.kill_failpoint} (reached: {reached})")
        return {"outcome": "killed", "failpoint": self.args.kill_failpoint, "reached": reached}

    def restart_later(self, at: float) -> None:
        try:
            if self.stop.wait(at):
                return
            self.restart = Window(time.monotonic())
            self.log("server: SIGKILL")
            self.server.kill()
            self.server.start()
            self.restart.end = time.monotonic()
            seconds = self.restart.end - self.restart.start
            self.log(f"server: answering again after {seconds:.1f} s")
        finally:
            self.restart_done.set()


# --- the run ----------------------------------------------------------------------------------


def demo_profiles(n: int, seed: int) -> list[dict[str, Any]]:
    with gzip.open(DEMO_FILE, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    rng = random.Random(seed)
    picked = rng.sample(rows, min(n, len(rows)))
    for row in picked:
        row.pop("partners", None)  # partners outside the sample would only point nowhere
    return picked


def percentiles(seconds: list[float]) -> dict[str, float | None]:
    if not seconds:
        return {"p50_ms": None, "p99_ms": None}
    values = np.array(seconds) * 1000
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 1),
        "p99_ms": round(float(np.percentile(values, 99)), 1),
    }


def judge(calls: list[Call], restart: Window | None) -> dict[str, Any]:
    """Requests, errors and latencies, with failures inside the restart window excused."""
    excused = [c for c in calls if restart is not None and restart.overlaps(c)]
    counted = [c for c in calls if not (restart is not None and restart.overlaps(c))]
    by_op: dict[str, Any] = {}
    for op in OPS:
        mine = [c for c in counted if c.op == op]
        by_op[op] = {
            "requests": len(mine),
            "5xx": sum(1 for c in mine if c.status is not None and c.status >= 500),
            "failed_connections": sum(1 for c in mine if c.status is None),
            "4xx": sum(1 for c in mine if c.status is not None and 400 <= c.status < 500),
            **percentiles([c.end - c.start for c in mine if c.status is not None]),
        }
    bad = [c for c in counted if c.status is None or c.status >= 400 or c.problem]
    return {
        "requests": len(calls),
        "after_restart": sum(1 for c in calls if restart and restart.end and c.start > restart.end),
        "outside_restart_window": len(counted),
        "inside_restart_window": {
            "requests": len(excused),
            "failed": sum(1 for c in excused if c.status is None or c.status >= 500),
        },
        "5xx": sum(1 for c in counted if c.status is not None and c.status >= 500),
        "failed_connections": sum(1 for c in counted if c.status is None),
        "unexpected": len(bad),
        "unexpected_examples": Counter(f"{c.op} {c.status}: {c.problem}" for c in bad).most_common(
            10
        ),
        **percentiles([c.end - c.start for c in counted if c.status is not None]),
        "by_op": by_op,
    }


def deleted_returned(calls: list[Call], deleted: dict[str, float]) -> list[dict[str, Any]]:
    """Responses that started after an actor's DELETE returned and still carried it."""
    found = []
    for call in calls:
        for actor_id in call.returned:
            when = deleted.get(actor_id)
            if when is not None and call.start > when:
                found.append({"op": call.op, "actor": actor_id, "after_s": call.start - when})
    return found


def check_store(server: ServerProcess, owned: Owned, log: Any) -> dict[str, Any]:
    """Every acknowledged write is stored with its last text and found by a search for it;
    every acknowledged delete is gone."""
    http = server.http
    missing, stale, unmatchable, resurrected = [], [], [], []
    ranks: list[int] = []
    for actor_id, text in sorted(owned.present.items()):
        response = http.get(f"/v1/actors/{actor_id}")
        if response.status_code != 200:
            missing.append(actor_id)
            continue
        if response.json()["documents"][0]["text"] != text:
            stale.append(actor_id)
        rank = rank_in_search(http, actor_id, text)
        if rank is None:
            unmatchable.append(actor_id)
        else:
            ranks.append(rank)
    for actor_id in sorted(owned.deleted):
        if http.get(f"/v1/actors/{actor_id}").status_code != 404:
            resurrected.append(actor_id)
    log(
        f"store: {len(owned.present)} acknowledged actors checked, {len(missing)} missing, "
        f"{len(unmatchable)} not matchable; {len(owned.deleted)} deletes, "
        f"{len(resurrected)} back"
    )
    return {
        "acknowledged_present": len(owned.present),
        "acknowledged_deleted": len(owned.deleted),
        "writes_without_answer": len(owned.unknown),  # in the restart window: no claim made
        "missing": missing,
        "stale_text": stale,
        "not_matchable": unmatchable,
        "rank_in_a_search_for_its_own_text": {
            "worst": max(ranks, default=None),
            "below_10": sum(1 for r in ranks if r > 10),
        },
        "deleted_but_present": resurrected,
    }


def rank_in_search(http: httpx.Client, actor_id: str, text: str, tries: int = 3) -> int | None:
    """Where a search for the actor's own text ranks it (1 = first), within the first
    `SEARCH_DEPTH`; None when it is not there (not matchable). Near-copies of a passage (one
    project text shared by many partners) may rank above it, hence the depth."""
    for attempt in range(tries):
        body = http.get("/v1/search", params={"q": text, "limit": SEARCH_DEPTH}).json()
        found = _ids(body["results"])
        if actor_id in found:
            return found.index(actor_id) + 1
        time.sleep(0.5 * (attempt + 1))  # allow a watch interval for a restarted delta
    return None


def logged_errors(log_path: Path) -> list[str]:
    """ERROR lines the server logged, each with the last line of its traceback: a failure in
    the background (the watcher, a rebuild) answers no request but is a bug all the same."""
    if not log_path.is_file():
        return []
    lines = log_path.read_text(errors="replace").splitlines()
    found = []
    for number, line in enumerate(lines):
        if not line.startswith(("ERROR", "CRITICAL")):
            continue
        cause = ""
        for following in lines[number + 1 :]:
            if following.startswith(LOG_LEVELS):
                break
            if EXCEPTION_LINE.match(following):
                cause = following
        found.append(f"{line} | {cause}" if cause else line)
    return found


def wait_served(server: ServerProcess, generation: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while server.http.get("/v1/index").json()["generation"] != generation:
        if time.monotonic() > deadline:
            raise RuntimeError(f"generation {generation} was not served within {seconds} s")
        time.sleep(0.2)


def load_left(began: float, seconds: float, faults: Faults, after: float) -> float:
    """Seconds of load still to run: `seconds` in all, and at least `after` more once the
    restarted server answers (a slow restart must not leave the restarted server untested)."""
    now = time.monotonic()
    left = began + seconds - now
    if not faults.restart_done.is_set():
        return max(left, 0.5)  # the restart is still to come, or under way
    restart = faults.restart
    if restart is None or restart.end is None:
        return left  # it failed; the run reports it
    return max(left, restart.end + after - now)


def run(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    def log(message: str) -> None:
        print(f"[{time.monotonic() - began:6.1f} s] {message}", file=sys.stderr, flush=True)

    began = time.monotonic()
    environment = {"CLUSTERMATCH_WATCH_SECONDS": str(args.watch_seconds)}
    server = ServerProcess(
        data_dir,
        args.model,
        module=args.module,
        log_path=data_dir.parent / "server.log",  # beside the data: nothing extra inside it
        environment=environment,
    )
    seeds = demo_profiles(args.seed_actors, args.seed)
    server.start()
    log(f"server: {server.base_url} answering after {server.started_seconds:.1f} s")
    server.load(seeds, batch=100)
    generation = server.rebuild()["job"]["generation"]
    log(f"seed: {len(seeds)} demo profiles imported, generation {generation} served")
    passages = [d["text"][:600] for p in seeds for d in p["documents"]]
    seed_ids = [p["id"] for p in seeds]

    stop = threading.Event()
    clients = [
        Client(n, server.base_url, passages, seed_ids, stop, args.seed) for n in range(args.clients)
    ]
    faults = Faults(server, args, log)
    threads = [
        threading.Thread(target=faults.rebuild_loop, name="rebuilds", daemon=True),
        threading.Thread(
            target=faults.restart_later,
            args=(args.seconds * args.restart_at,),
            name="restart",
            daemon=True,
        ),
    ]
    load_began = time.monotonic()
    threads += [c.thread for c in clients]
    for thread in threads:
        thread.start()
    after_restart = args.seconds * (1 - args.restart_at)
    logged = load_began
    while (left := load_left(load_began, args.seconds, faults, after_restart)) > 0:
        time.sleep(min(args.progress_every, left))
        if time.monotonic() - logged < args.progress_every:
            continue
        logged = time.monotonic()
        elapsed = logged - load_began
        done = sum(len(c.calls) for c in clients)
        failed = sum(1 for c in clients for call in c.calls if (call.status or 500) >= 500)
        log(
            f"load: {done} requests ({done / max(elapsed, 1e-9):.0f}/s), {failed} 5xx or failed, "
            f"{len(faults.rebuilds)} rebuilds"
        )
    stop.set()
    faults.stop.set()
    for thread in threads:
        thread.join(120)
    load_seconds = time.monotonic() - load_began
    log("load: stopped; checking")

    calls = [call for c in clients for call in c.calls]
    owned = Owned()
    for client in clients:
        owned.present.update(client.owned.present)
        owned.deleted.update(client.owned.deleted)
        owned.unknown.update(client.owned.unknown)
    results = judge(calls, faults.restart)
    stale_deletes = deleted_returned(calls, owned.deleted)
    store_now = check_store(server, owned, log)
    final = faults._rebuild()
    if final["outcome"] == "published":
        wait_served(server, final["generation"])
    store_after_rebuild = check_store(server, owned, log)
    server.stop()

    rebuilds = Counter(r["outcome"] for r in faults.rebuilds)
    server_errors = logged_errors(server.log_path)
    problems = {
        "5xx outside the restart window": results["5xx"],
        "failed connections outside the restart window": results["failed_connections"],
        "unexpected answers": results["unexpected"],
        "deleted actors returned after their DELETE": len(stale_deletes),
        **{
            f"{name} ({when})": len(check[name])
            for when, check in (("now", store_now), ("after a rebuild", store_after_rebuild))
            for name in ("missing", "stale_text", "not_matchable", "deleted_but_present")
        },
        "no rebuild published during the load": int(rebuilds["published"] == 0),
        "rebuilds that failed (not the killed one)": rebuilds["failed"],
        "errors in the server log": len(server_errors),
        "the killed rebuild never reached its failpoint": int(
            not any(r.get("reached") for r in faults.rebuilds if r["outcome"] == "killed")
        ),
        "the final rebuild failed": int(final["outcome"] != "published"),
        "the server was not restarted": int(faults.restart is None or faults.restart.end is None),
        "no request reached the restarted server": int(results["after_restart"] == 0),
    }
    restart = faults.restart
    window = restart.end - restart.start if restart and restart.end else None
    return {
        "ok": not any(problems.values()),
        "problems": {k: v for k, v in problems.items() if v},
        "config": {
            "module": args.module,
            "model": args.model,
            "clients": args.clients,
            "seconds": args.seconds,
            "seed_actors": len(seeds),
            "mix": dict(zip(OPS, WEIGHTS, strict=True)),
            "watch_seconds": args.watch_seconds,
            "kill_failpoint": args.kill_failpoint,
            "seed": args.seed,
        },
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_seconds": round(load_seconds, 1),
        "served_per_s": round(
            results["outside_restart_window"] / max(load_seconds - (window or 0.0), 1e-9), 1
        ),
        **results,
        "restart_window_s": None if window is None else round(window, 2),
        "rebuilds": {"runs": faults.rebuilds, "counts": dict(rebuilds), "final": final},
        "deleted_returned": stale_deletes[:20],
        "server_log_errors": server_errors[:10],
        "store": store_now,
        "store_after_rebuild": store_after_rebuild,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Exit code 0: every check held; 1: a check failed (see `problems` in the JSON).",
    )
    parser.add_argument("--seconds", type=float, default=60, help="load duration (default 60)")
    parser.add_argument(
        "--clients", type=int, default=32, help="client threads, 16-64 (default 32)"
    )
    parser.add_argument(
        "--seed-actors", type=int, default=300, help="demo profiles loaded first (default 300)"
    )
    parser.add_argument(
        "--module",
        default="service.cli",
        help="the CLI module run as `python -m MODULE serve|ingest|reindex` (default "
        "service.cli; tests.fake_cli runs on the tests' fake embedder)",
    )
    parser.add_argument(
        "--model", default="all-minilm-l6-v2", help="model profile (default all-minilm-l6-v2)"
    )
    parser.add_argument(
        "--rebuild-gap", type=float, default=5, help="seconds between rebuilds (default 5)"
    )
    parser.add_argument(
        "--kill-rebuild",
        type=int,
        default=2,
        metavar="N",
        help="the Nth rebuild is SIGKILLed at its failpoint (default 2)",
    )
    parser.add_argument(
        "--kill-failpoint",
        default="publish-index-written",
        choices=("publish-index-written", "publish-before-swap"),
        help="where the killed rebuild stops (service.failpoints; default "
        "publish-index-written: the new index is written, not yet published)",
    )
    parser.add_argument(
        "--restart-at",
        type=float,
        default=0.5,
        metavar="FRACTION",
        help="when the server is SIGKILLed and restarted, as a fraction of --seconds (default 0.5)",
    )
    parser.add_argument(
        "--watch-seconds", type=float, default=1.0, help="the server's CURRENT poll (default 1)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="an empty folder for the run, kept afterwards: data/ (store, generations) and "
        "server.log (default: a temporary one, removed)",
    )
    parser.add_argument("--out", type=Path, help="also write the JSON result here")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--progress-every", type=float, default=5, help="seconds between progress lines"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 256:
        parser.error("--clients must be between 1 and 256")
    if not 0 < args.restart_at < 1:
        parser.error("--restart-at must be a fraction between 0 and 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="load-fault-") as tmp:
        root = args.data_dir or Path(tmp)
        if root.exists() and any(root.iterdir()):
            print(f"error: {root} is not empty", file=sys.stderr)
            return 2
        root.mkdir(parents=True, exist_ok=True)
        result = run(args, root / "data")
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    for problem, count in result["problems"].items():
        print(f"FAILED: {problem}: {count}", file=sys.stderr)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
