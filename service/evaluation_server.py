"""The service under evaluation as a user meets it: a real `serve` process, driven over HTTP.

`ServerProcess` starts `python -m service.cli serve` (or another module with the same CLI, e.g.
the tests' fake-embedder CLI) on a free loopback port with its own data directory and model
profile, loads profiles with `POST /v1/actors/bulk`, rebuilds the index with
`POST /v1/index/rebuild`, and stops the process at the end. `HttpRanker` ranks with
`POST /v1/match {"actor_id", "limit", "exclude_actors"}`, `HttpSearchRanker` with
`GET /v1/search?q=<the actor's texts>&for_actor=<it>&new_contacts_only=true`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import httpx

from service.api.schemas import SEARCH_QUERY_CHARACTERS
from service.config import CHECKOUT_DIR
from service.evaluation_temporal import Ranked

SET_BY_RUN = ("DATA_DIR", "INDEX_DIR", "DATABASE_URL", "MODEL", "KEYS_FILE", "HOST", "PORT")
"""CLUSTERMATCH_ settings the run decides; any other one in the environment is passed on."""
PAGE = 200
"""The API's largest `limit`."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def passed_settings(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The CLUSTERMATCH_ variables of this environment that the server inherits."""
    skip = {f"CLUSTERMATCH_{name}" for name in SET_BY_RUN}
    return {
        k: v for k, v in sorted(environ.items()) if k.startswith("CLUSTERMATCH_") and k not in skip
    }


class ServerProcess:
    """A `serve` subprocess on 127.0.0.1, open mode (no keys), data in `data_dir`."""

    def __init__(
        self,
        data_dir: Path,
        model: str,
        module: str = "service.cli",
        startup_seconds: float = 300.0,
        log_path: Path | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        self.data_dir, self.model, self.module = data_dir, model, module
        self.startup_seconds = startup_seconds
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or data_dir / "server.log"
        self.environment = dict(environment or {})
        """More CLUSTERMATCH_ settings for the server (e.g. a short watch interval)."""
        self._process: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=self.base_url, timeout=600)
        self.started_seconds = 0.0

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        """The environment of the server, and of any CLI process working on its data."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERMATCH_")}
        env.update(passed_settings())
        env.update(
            CLUSTERMATCH_DATA_DIR=str(self.data_dir),
            CLUSTERMATCH_MODEL=self.model,
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            TOKENIZERS_PARALLELISM="false",
            PYTHONPATH=os.pathsep.join(
                p for p in (str(CHECKOUT_DIR), env.get("PYTHONPATH", "")) if p
            ),
        )
        env.update(self.environment)
        return env

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.http.is_closed:  # started again after a stop or a kill
            self.http = httpx.Client(base_url=self.base_url, timeout=600)
        command = [sys.executable, "-m", self.module, "serve", "--port", str(self.port)]
        # One worker process: match quality does not depend on the number of workers, and the
        # run then knows that the process it asked to rebuild is the one answering its queries.
        command += ["--host", "127.0.0.1", "--log-level", "warning", "--workers", "1"]
        started = time.perf_counter()
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command, cwd=CHECKOUT_DIR, env=self.env(), stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + self.startup_seconds
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"the server exited at start-up:\n{self.log_tail()}")
            try:
                if self.http.get("/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer in time:\n{self.log_tail()}")
            time.sleep(0.2)
        self.started_seconds = time.perf_counter() - started

    def stop(self) -> None:
        self.http.close()
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGINT)  # uvicorn shuts down cleanly on SIGINT
        try:
            self._process.wait(30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(10)

    def kill(self) -> None:
        """SIGKILL the server, as a crash would (nothing is flushed or shut down cleanly)."""
        self.http.close()
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(30)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.is_file():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _ok(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise RuntimeError(
                f"{response.request.method} {response.request.url.path}: "
                f"{response.status_code} {response.text[:500]}"
            )
        return response.json()

    def load(
        self,
        profiles: Sequence[Mapping[str, Any]],
        batch: int = 500,
        progress: Callable[[int], object] | None = None,
    ) -> dict[str, int]:
        """Bulk-import the profiles; every one must be accepted."""
        counts = {"created": 0, "replaced": 0}
        for start in range(0, len(profiles), batch):
            lines = [json.dumps(p, ensure_ascii=False) for p in profiles[start : start + batch]]
            body = self._ok(
                self.http.post(
                    "/v1/actors/bulk",
                    content="\n".join(lines).encode("utf-8"),
                    headers={"content-type": "application/x-ndjson"},
                )
            )
            if body["rejected"]:
                bad = [r for r in body["results"] if r["status"] == "rejected"][:3]
                raise RuntimeError(f"the server rejected {body['rejected']} profiles, e.g. {bad}")
            counts["created"] += body["created"]
            counts["replaced"] += body["replaced"]
            if progress is not None:
                progress(len(lines))
        return counts

    def rebuild(self, timeout: float = 3600.0) -> dict[str, Any]:
        """Start a rebuild and wait until its generation is the one served."""
        job = self._ok(self.http.post("/v1/index/rebuild"))
        deadline = time.monotonic() + timeout
        while job["state"] in ("queued", "running"):
            if time.monotonic() > deadline:
                raise RuntimeError("the rebuild did not finish in time")
            time.sleep(0.5)
            job = self._ok(self.http.get(f"/v1/index/jobs/{job['id']}"))
        if job["state"] != "succeeded":
            raise RuntimeError(f"the rebuild failed: {job.get('error')}")
        while (status := self._ok(self.http.get("/v1/index")))["generation"] != job["generation"]:
            if time.monotonic() > deadline:
                raise RuntimeError("the new generation was not served in time")
            time.sleep(0.2)
        return {"job": job, "index": status}

    def match(self, actor_id: str, limit: int, exclude: Iterable[str]) -> list[tuple[str, float]]:
        # collapse=false: every partner is scored on its own (one suggestion per shared passage
        # is for people, not for a ranking metric)
        body = {
            "actor_id": actor_id,
            "limit": limit,
            "exclude_actors": sorted(exclude),
            "collapse": False,
        }
        matches = self._ok(self.http.post("/v1/match", json=body))["matches"]
        return [(m["actor"]["id"], float(m["score"])) for m in matches]

    def search(self, text: str, for_actor: str, limit: int) -> list[tuple[str, float]]:
        # On behalf of the query actor with new contacts only: the service leaves out the actor
        # itself and its known partners (its profile's `partners`), as a match's exclude does.
        params: dict[str, str | int] = {
            "q": text,
            "for_actor": for_actor,
            "new_contacts_only": "true",
            "limit": limit,
            "collapse": "false",
        }
        results = self._ok(self.http.get("/v1/search", params=params))["results"]
        return [(r["actor"]["id"], float(r["score"])) for r in results]


class MatchEndpoint(Protocol):
    def match(
        self, actor_id: str, limit: int, exclude: Iterable[str]
    ) -> list[tuple[str, float]]: ...


class HttpRanker:
    """The service's ranking through `POST /v1/match`.

    `top`: one request with `limit` and the known partners in `exclude_actors`, as a user asks.
    `keys` (for the pairwise tests): the complete order a user gets by asking for more, i.e. the
    first page, then pages of 200 that also exclude everything already shown, until the service
    has no eligible actor left. Within a page equal scores tie; an earlier page ranks higher.
    """

    def __init__(self, server: MatchEndpoint, name: str, complete: bool = True) -> None:
        self.server, self.name, self.complete = server, name, complete
        self.requests = 0
        self.ordered: dict[str, int] = {}
        """Query -> how many actors its paged order holds (a check: every eligible actor)."""

    def rank(self, query: str, exclude: frozenset[str], limit: int) -> Ranked:
        pages = [self.server.match(query, limit, exclude)]
        self.requests += 1
        seen = set(exclude) | {a for a, _ in pages[0]}
        while self.complete and (len(pages) == 1 or len(pages[-1]) == PAGE):
            page = self.server.match(query, PAGE, seen)
            self.requests += 1
            if not page:
                break
            pages.append(page)
            seen |= {a for a, _ in page}
        keys: dict[str, float] = {}
        position = 0
        for page in pages:
            previous: tuple[float, float] | None = None
            for actor, score in page:
                if previous is None or score != previous[0]:
                    previous = (score, -float(position))
                keys[actor] = previous[1]
                position += 1
        self.ordered[query] = len(keys)
        return Ranked([a for a, _ in pages[0]], keys)


class SearchEndpoint(Protocol):
    def search(self, text: str, for_actor: str, limit: int) -> list[tuple[str, float]]: ...


def profile_query(texts: Iterable[str], budget: int = SEARCH_QUERY_CHARACTERS) -> str:
    """An actor's documents as one free-text query: joined in order, cut at a word boundary
    within `budget` characters."""
    text = " ".join(t.strip() for t in texts if t.strip())
    if len(text) <= budget:
        return text
    cut = text[:budget]
    return cut[: cut.rfind(" ")] if " " in cut else cut


class HttpSearchRanker:
    """The service's free-text search through `GET /v1/search`: the query actor's own texts as
    the query (`profile_query`), on its behalf (`for_actor`, `new_contacts_only`: never the
    actor, never a known partner). A search pages no further than its `limit` (at most
    PAGE here), so the pairwise tests see that order only: every other actor ties below it."""

    def __init__(self, server: SearchEndpoint, name: str, texts: Mapping[str, str]) -> None:
        self.server, self.name, self.texts = server, name, texts
        self.requests = 0

    def rank(self, query: str, exclude: frozenset[str], limit: int) -> Ranked:
        page = self.server.search(self.texts[query], query, max(limit, PAGE))
        self.requests += 1
        top = [a for a, _ in page]
        keys = {actor: -float(position) for position, actor in enumerate(top)}
        return Ranked(top[:limit], keys)
