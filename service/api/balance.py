"""Keep-alive connections spread evenly over the workers, by the workers themselves.

`clustermatch serve --workers N` gives every worker its own `SO_REUSEPORT` socket, and the kernel
places each new *connection* on a worker by a hash of its addresses (service.api.server). A
client that keeps its connection open (another system's HTTP pool, a proxy's upstream pool, the
benchmark's 16 clients) stays where the hash put it, and the hash splits 16 connections 8/8 in
only one start in five, 10/6 or worse in two. The clients of the fuller worker then wait longer
for the same work: at 100,000 chunks, two workers split 10/6 answered in p99 203 against 133 ms
(BENCHMARKS.md, session 11), and that worker's tail is the whole server's tail.

So each worker looks, once a second, at how many connections to the port are open in all (the
kernel's socket table, asked through netlink's sock_diag as `ss` does: reading /proc/net/tcp
cost 9-16 ms a time here, the netlink dump 3 ms) and how many of them are its own (the socket
descriptors in `/proc/self/fd`). Above its fair share (the total over N, rounded up) it answers
that many requests with `Connection: close`: the client opens a new connection, which the
kernel hashes afresh, and the split evens out within seconds. A close costs the client one
reconnect; a client that opens a connection per request sees no change; a balanced split sheds
nothing. Linux only: where the kernel does not say, a worker never sheds.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path

from prometheus_client import Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
TCP_ESTABLISHED = 1
NLMSG_HEADER = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
DIAG_REQUEST = struct.Struct("=BBBBI")  # family, protocol, extensions, pad, states
# struct inet_diag_msg: family, state, timer, retransmits, then the socket id (source and
# destination port in network order, two 16-byte addresses, interface, 8-byte cookie), then
# expires, read queue, write queue, uid, inode.
MSG_SPORT = 4
MSG_INODE = 4 + 48 + 16
NO_COOKIE = struct.pack("=II", 0xFFFFFFFF, 0xFFFFFFFF)


def established_sockets(port: int) -> set[int]:
    """The socket inodes of every process's open TCP connections whose local end is `port`,
    from the kernel (netlink sock_diag, see `man 7 sock_diag`). Raises OSError where the
    kernel does not answer (not Linux, or netlink refused)."""
    netlink = getattr(socket, "AF_NETLINK", None)
    if netlink is None:
        raise OSError("this platform has no netlink")
    inodes: set[int] = set()
    with socket.socket(netlink, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as sock:
        sock.settimeout(2.0)
        for family in (socket.AF_INET, socket.AF_INET6):
            request = (
                DIAG_REQUEST.pack(family, socket.IPPROTO_TCP, 0, 0, 1 << TCP_ESTABLISHED)
                + bytes(4 + 32 + 4)  # any socket id: ports, addresses, interface
                + NO_COOKIE
            )
            header = NLMSG_HEADER.pack(
                NLMSG_HEADER.size + len(request),
                SOCK_DIAG_BY_FAMILY,
                NLM_F_REQUEST | NLM_F_DUMP,
                1,
                0,
            )
            sock.send(header + request)
            while not _read_dump(sock.recv(1 << 16), port, inodes):
                pass
    return inodes


def _read_dump(data: bytes, port: int, inodes: set[int]) -> bool:
    """Add the matching sockets of one netlink datagram; whether the dump is complete."""
    at = 0
    while at + NLMSG_HEADER.size <= len(data):
        length, kind, _flags, _sequence, _port_id = NLMSG_HEADER.unpack_from(data, at)
        if kind == NLMSG_DONE:
            return True
        if kind == NLMSG_ERROR or length < NLMSG_HEADER.size:
            raise OSError("the kernel refused the socket table (netlink sock_diag)")
        body = at + NLMSG_HEADER.size
        (local_port,) = struct.unpack_from(">H", data, body + MSG_SPORT)
        if local_port == port:
            (inode,) = struct.unpack_from("=I", data, body + MSG_INODE)
            inodes.add(inode)
        at += (length + 3) & ~3
    return False


def own_sockets(proc: Path = Path("/proc")) -> set[int]:
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


def kernel_counts(port: int) -> tuple[int, int]:
    """(open connections to `port` in all, those this process holds)."""
    every = established_sockets(port)
    return len(every), len(every & own_sockets()) if every else 0


class FairShare:
    """How many of this worker's connections to close, from the kernel's counts."""

    def __init__(
        self, workers: int, counts: Callable[[int], tuple[int, int]] = kernel_counts
    ) -> None:
        self.workers = workers
        self.counts = counts
        self.port: int | None = None
        """The listening port, learnt from the first request (every worker shares it)."""
        self._excess = 0
        self._lock = threading.Lock()
        self._blind = False
        self.closed = 0
        """Connections this worker has asked to close (for tests and logs)."""

    def refresh(self) -> None:
        """Count again; what was left to close from the last count is forgotten."""
        if self.workers < 2 or self.port is None or self._blind:
            return
        try:
            total, own = self.counts(self.port)
        except OSError as error:  # not Linux, or no netlink here: never shed
            self._blind = True
            log.info("connections are not balanced over the workers: %s", error)
            return
        fair = -(-total // self.workers)
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
    """Adds `Connection: close` to the responses that `FairShare` picks, and counts them in
    `closed` (a Prometheus counter, `clustermatch_connections_rebalanced_total`)."""

    def __init__(self, app: ASGIApp, share: FairShare, closed: Counter | None = None) -> None:
        self.app = app
        self.share = share
        self.closed = closed

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
                if self.closed is not None:
                    self.closed.inc()
            await send(message)

        await self.app(scope, receive, closing)
