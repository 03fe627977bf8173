"""A real webhook receiver on loopback for the alert tests: a small threaded `http.server` that
records every POST (headers and raw body) and answers from a script of statuses."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    port: int
    statuses: list[int] = field(default_factory=list)
    """Answers for the next requests, in order; 200 once it runs out."""
    delays: list[float] = field(default_factory=list)
    """Seconds to wait before answering the next requests, in order; none once it runs out."""
    received: list[Received] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    """Event ids answered 2xx, as a receiver that deduplicates would keep them."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


@contextmanager
def receiving(receiver: Receiver) -> Iterator[Receiver]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                receiver.received.append(Received(dict(self.headers.items()), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                delay = receiver.delays.pop(0) if receiver.delays else 0.0
            if delay:
                time.sleep(delay)
            if 200 <= status < 300:
                event_id = json.loads(body)["event_id"]
                with lock:
                    if event_id not in receiver.accepted:
                        receiver.accepted.append(event_id)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", receiver.port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
