"""Keep-alive connections spread evenly over the workers, by the workers themselves.

`clustermatch serve --workers N` gives every worker its own `SO_REUSEPORT` socket, and the kernel
places each new *connection* on a worker by a hash of its addresses (service.api.server). A
client that keeps its connection open (another system's HTTP pool, a proxy's upstream pool, the
benchmark's 16 clients) stays where the hash put it, and the hash splits 16 connections 8/8 in
only one start in five, 10/6 or worse in two. The clients of the fuller worker then wait longer
for the same work: at 100,000 chunks, two workers split 10/6 answered in p99 203 against 133 ms
(BENCHMARKS.md, session 11), and that worker's tail is the whole server's tail.

So each worker looks, once a second, at how many connections to the port are open in all (the
kernel's table, `/proc/net/tcp` and `tcp6`) and how many of them are its own (the socket
descriptors in `/proc/self/fd`). Above its fair share (the total over N, rounded up) it answers
that many requests with `Connection: close`: the client opens a new connection, which the
kernel hashes afresh, and the split evens out within seconds. A close costs the client one
reconnect; a client that opens a connection per request sees no change; a balanced split sheds
nothing. Linux only: where `/proc` does not say, a worker never sheds.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

ESTABLISHED = "01"
"""The TCP state column of /proc/net/tcp for an open connection."""


def established_sockets(proc: Path, port: int) -> set[int]:
    """The socket inodes of the open connections whose local end is `port` (every process's)."""
    inodes: set[int] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != ESTABLISHED:
                continue
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port:
                inodes.add(int(fields[9]))
    return inodes


def own_sockets(proc: Path) -> set[int]:
    """The socket inodes this process holds open."""
    fds = proc / "self" / "fd"
    inodes: set[int] = set()
    try:
        names = os.listdir(fds)
    except OSError:
        return inodes
    for name in names:
        try:
            target = os.readlink(fds / name)
        except OSError:
            continue  # closed since the listing
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


class FairShare:
    """How many of this worker's connections to close, from the kernel's counts."""

    def __init__(self, workers: int, proc: Path = Path("/proc")) -> None:
        self.workers = workers
        self.proc = proc
        self.port: int | None = None
        """The listening port, learnt from the first request (every worker shares it)."""
        self._excess = 0
        self._lock = threading.Lock()
        self.closed = 0
        """Connections this worker has asked to close (for tests and logs)."""

    def refresh(self) -> None:
        """Count again; what was left to close from the last count is forgotten."""
        if self.workers < 2 or self.port is None:
            return
        every = established_sockets(self.proc, self.port)
        own = len(every & own_sockets(self.proc)) if every else 0
        fair = -(-len(every) // self.workers)
        with self._lock:
            self._excess = max(0, own - fair)

    def should_close(self) -> bool:
        """Whether the response being sent now should close its connection."""
        with self._lock:
            if self._excess <= 0:
                return False
            self._excess -= 1
            self.closed += 1
            return True


class FairShareThread:
    """Refreshes a `FairShare` every `seconds` in the background."""

    def __init__(self, share: FairShare, seconds: float = 1.0) -> None:
        self._share = share
        self._seconds = seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fair-share", daemon=True)

    def start(self) -> None:
        if self._share.workers > 1:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self._seconds):
            try:
                self._share.refresh()
            except Exception:  # never stop serving over a count
                log.exception("fair share: could not count the connections")


class FairShareMiddleware:
    """Adds `Connection: close` to the responses that `FairShare` picks."""

    def __init__(self, app: ASGIApp, share: FairShare) -> None:
        self.app = app
        self.share = share

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.share.workers < 2:
            await self.app(scope, receive, send)
            return
        server = scope.get("server")
        if self.share.port is None and server and server[1]:
            self.share.port = int(server[1])

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start" and self.share.should_close():
                headers = [*message.get("headers", []), (b"connection", b"close")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, closing)
