"""Fair shares of the open connections (service.api.balance): the kernel's counts on real
sockets, and the decisions on counts of the test's making. The two-worker convergence runs on
a real server in tests/test_workers.py."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from service.api.balance import FairShare, established_sockets, kernel_counts, own_sockets


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server


def test_the_kernel_names_every_open_connection_to_the_port_and_this_process_its_own(
    listener: socket.socket,
) -> None:
    port = listener.getsockname()[1]
    assert established_sockets(port) == set()  # listening is not a connection
    with ExitStack() as open_sockets:
        accepted = []
        for _ in range(3):
            client = open_sockets.enter_context(socket.create_connection(("127.0.0.1", port)))
            assert client.getsockname()[1] != port
            accepted.append(open_sockets.enter_context(listener.accept()[0]))
        inodes = {os.fstat(s.fileno()).st_ino for s in accepted}
        assert established_sockets(port) == inodes, "the server ends, not the clients'"
        assert inodes <= own_sockets()
        assert kernel_counts(port) == (3, 3)
        accepted.pop().close()
        assert kernel_counts(port)[0] == 2
    assert established_sockets(port) == set()


def test_own_sockets_reads_only_socket_descriptors(tmp_path: Path) -> None:
    fds = tmp_path / "self" / "fd"
    fds.mkdir(parents=True)
    for n, target in enumerate(["socket:[11]", "/dev/null", "pipe:[77]", "socket:[12]"]):
        os.symlink(target, fds / str(n))
    assert own_sockets(tmp_path) == {11, 12}
    assert own_sockets(tmp_path / "missing") == set()


def counted(total: int, own: int) -> FairShare:
    share = FairShare(2, counts=lambda _port: (total, own))
    share.port = 8000
    share.refresh()
    return share


def test_a_worker_above_its_share_closes_the_surplus_once_per_count() -> None:
    share = counted(total=10, own=7)  # 5 each is fair
    assert [share.should_close() for _ in range(4)] == [True, True, False, False]
    share.refresh()  # counted again (nobody reconnected in between): 2 more
    assert [share.should_close() for _ in range(3)] == [True, True, False]
    assert share.closed == 4


def test_a_worker_at_or_below_its_share_closes_nothing() -> None:
    assert not counted(total=9, own=5).should_close()  # 5 is its share, rounded up
    assert not counted(total=10, own=3).should_close()


def test_one_worker_an_unknown_port_or_a_silent_kernel_closes_nothing() -> None:
    alone = FairShare(1, counts=lambda _port: (10, 10))
    alone.port = 8000
    unknown = FairShare(2, counts=lambda _port: (10, 10))  # no request told it the port yet
    asked: list[int] = []

    def refused(port: int) -> tuple[int, int]:
        asked.append(port)
        raise OSError("no netlink here")

    blind = FairShare(2, counts=refused)
    blind.port = 8000
    for share in (alone, unknown, blind, blind):
        share.refresh()
        assert not share.should_close()
    assert asked == [8000], "a kernel that does not answer is not asked every second"


def test_the_middleware_closes_the_picked_responses_and_counts_them() -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from prometheus_client import CollectorRegistry, Counter

    from service.api.balance import FairShareMiddleware

    share = FairShare(2, counts=lambda _port: (10, 7))
    closed = Counter("closed", "test", registry=CollectorRegistry())
    app = FastAPI()
    app.get("/ping")(lambda: {"ok": True})
    app.add_middleware(FairShareMiddleware, share=share, closed=closed)
    with TestClient(app) as client:
        assert client.get("/ping").headers.get("connection") is None  # learns the port
        share.refresh()  # 10 open, 7 of them here: 2 above the share of 5
        answers = [client.get("/ping") for _ in range(3)]
    assert [a.headers.get("connection") for a in answers] == ["close", "close", None]
    assert all(a.json() == {"ok": True} for a in answers)
    assert closed._value.get() == 2 and share.port == 80
