"""The app as uvicorn's worker processes build it: `clustermatch serve --workers N` starts N of
these, each with its own `Runtime` from the environment (`CLUSTERMATCH_*`), all sharing the
store and the generation files (memory-mapped read models share their pages), each watching
CURRENT. Nothing is loaded at import."""

from __future__ import annotations

import logging
import os

from fastapi import FastAPI

from service.config import LOG_LEVEL_ENV

WORKERS_ENV = "CLUSTERMATCH_SERVE_WORKERS"
"""How many workers serve the port; set by `serve_workers` for the workers it starts."""


def app() -> FastAPI:
    from service.api.app import create_app
    from service.config import Settings
    from service.runtime import Runtime

    level = os.environ.get(LOG_LEVEL_ENV, "info").upper()
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    return create_app(Runtime(Settings()), warm=True, workers=int(os.environ.get(WORKERS_ENV, "1")))


WORKER_HEALTHCHECK_SECONDS = 60
"""How long uvicorn's supervisor waits for a worker to answer its health ping before it kills it
and starts another. uvicorn's 5 s is shorter than a worker's start on busy cores (importing,
loading the model hold the GIL in long C calls, so the ping thread cannot answer): found by the
load-and-fault work, a 2-worker server on a loaded machine killed and restarted its workers in a
loop and never served."""


def serve_workers(host: str, port: int, workers: int, log_level: str) -> None:
    """`uvicorn.run(..., workers=N)`, with two differences in the listening sockets:

    - each worker listens on **its own** socket, all bound to the port with `SO_REUSEPORT`, so
      the kernel spreads new connections over the workers by a hash of their addresses. With one
      shared socket the workers race to accept, and a busy worker's event loop still wins: 16
      keep-alive clients all landed on one worker in about one run of three (one core busy, the
      other idle: ~50 against ~100 searches/s at 100k chunks, measured with
      /proc/<pid>/stat per worker).
    - the kernel's hash places connections, not requests: every worker keeps to its share of
      the open connections by closing the ones above it (service.api.balance), so clients that
      keep theirs open still end up spread evenly.
    - sockets are made with `IPPROTO_TCP` so that asyncio turns Nagle off on every accepted
      connection. uvicorn's own `Config.bind_socket()` leaves the protocol at 0, asyncio then
      skips `TCP_NODELAY`, and every keep-alive request after the first waits ~40 ms for the
      client's delayed ACK (uvicorn issue #3149; measured here: /healthz 0.5 ms with one
      worker, 44 ms with two)."""
    import socket

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(
        "service.api.server:app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
    )
    os.environ[WORKERS_ENV] = str(workers)  # the workers inherit it
    family = socket.AF_INET6 if ":" in host else socket.AF_INET

    def listening_socket() -> socket.socket:
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.set_inheritable(True)
        return sock

    class OneSocketPerWorker(Multiprocess):
        """uvicorn's supervisor, handing every worker it starts (restarts too) a new socket."""

        @property
        def sockets(self) -> list[socket.socket]:
            return [listening_socket()]

        @sockets.setter
        def sockets(self, _: list[socket.socket]) -> None:
            pass  # uvicorn's __init__ stores a list; every worker gets its own instead

    listening_socket().close()  # the port is free (or this raises) before any worker starts
    logging.getLogger("uvicorn.error").info(
        "Uvicorn running on http://%s:%d with %d workers", host, port, workers
    )
    OneSocketPerWorker(config, sockets=[]).run()
