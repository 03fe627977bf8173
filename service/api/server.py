"""The app as uvicorn's worker processes build it: `clustermatch serve --workers N` starts N of
these, each with its own `Runtime` from the environment (`CLUSTERMATCH_*`), all sharing the
store and the generation files (memory-mapped read models share their pages), each watching
CURRENT. Nothing is loaded at import."""

from __future__ import annotations

import logging
import os

from fastapi import FastAPI

from service.config import LOG_LEVEL_ENV


def app() -> FastAPI:
    from service.api.app import create_app
    from service.config import Settings
    from service.runtime import Runtime

    level = os.environ.get(LOG_LEVEL_ENV, "info").upper()
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    return create_app(Runtime(Settings()), warm=True)


def serve_workers(host: str, port: int, workers: int, log_level: str) -> None:
    """`uvicorn.run(..., workers=N)`, with one difference: the listening socket is made with
    `IPPROTO_TCP` so that asyncio turns Nagle off on every accepted connection. uvicorn's own
    `Config.bind_socket()` leaves the protocol at 0, asyncio then skips `TCP_NODELAY`, and every
    keep-alive request after the first waits ~40 ms for the client's delayed ACK (uvicorn issue
    #3149; measured here: /healthz 0.5 ms with one worker, 44 ms with two)."""
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
    )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    logging.getLogger("uvicorn.error").info(
        "Uvicorn running on http://%s:%d with %d workers", host, port, workers
    )
    Multiprocess(config, sockets=[sock]).run()
