"""Fair shares of the open connections (service.api.balance), on a /proc of the test's making.
The two-worker convergence runs on a real server in tests/test_workers.py."""

from __future__ import annotations

import os
from pathlib import Path

from service.api.balance import FairShare, established_sockets, own_sockets

HEADER = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
    "timeout inode\n"
)


def row(local_port: int, state: str, inode: int, remote_port: int = 50000) -> str:
    return (
        f"   0: 0100007F:{local_port:04X} 0100007F:{remote_port:04X} {state} "
        f"00000000:00000000 00:00000000 00000000     0        0 {inode} 1 0000000000000000\n"
    )


def fake_proc(tmp_path: Path, port: int, mine: list[int], others: list[int]) -> Path:
    """Established connections to `port`, `mine` held by this process, `others` elsewhere;
    besides them a listening socket, a closing connection and a connection of another port."""
    proc = tmp_path / "proc"
    (proc / "net").mkdir(parents=True)
    (proc / "self" / "fd").mkdir(parents=True)
    v4 = [row(port, "0A", 900)]  # the listening socket is not a connection
    v4 += [row(port, "01", i) for i in mine[: len(mine) // 2] + others]
    v4 += [row(port, "06", 901), row(port + 1, "01", 902)]  # closing; another port
    v4 += [row(50001, "01", 903, remote_port=port)]  # a client's end of a connection to it
    v6 = [row(port, "01", i) for i in mine[len(mine) // 2 :]]
    (proc / "net" / "tcp").write_text(HEADER + "".join(v4))
    (proc / "net" / "tcp6").write_text(HEADER + "".join(v6))
    for n, inode in enumerate([*mine, 900, 901, 902, 903]):
        os.symlink(f"socket:[{inode}]", proc / "self" / "fd" / str(n + 3))
    os.symlink("/dev/null", proc / "self" / "fd" / "0")
    os.symlink("pipe:[77]", proc / "self" / "fd" / "1")
    return proc


def test_the_kernel_tables_give_every_open_connection_and_this_process_its_own(
    tmp_path: Path,
) -> None:
    proc = fake_proc(tmp_path, 8000, mine=[1, 2, 3, 4], others=[5, 6])
    assert established_sockets(proc, 8000) == {1, 2, 3, 4, 5, 6}
    assert own_sockets(proc) == {1, 2, 3, 4, 900, 901, 902, 903}


def test_a_worker_above_its_share_closes_the_surplus_once_per_count(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, 8000, mine=[1, 2, 3, 4, 5, 6, 7], others=[8, 9, 10])
    share = FairShare(2, proc)
    share.port = 8000
    share.refresh()  # 10 open, 5 each is fair, this one holds 7
    assert [share.should_close() for _ in range(4)] == [True, True, False, False]
    share.refresh()  # counted again (the kernel's tables have not changed): 2 more
    assert [share.should_close() for _ in range(3)] == [True, True, False]
    assert share.closed == 4


def test_a_worker_at_or_below_its_share_closes_nothing(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, 8000, mine=[1, 2, 3, 4, 5], others=[6, 7, 8, 9])
    share = FairShare(2, proc)  # 9 open: 5 is this one's share, rounded up
    share.port = 8000
    share.refresh()
    assert not share.should_close()


def test_one_worker_an_unknown_port_or_no_proc_closes_nothing(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, 8000, mine=[1, 2, 3, 4, 5, 6, 7], others=[8])
    alone = FairShare(1, proc)
    alone.port = 8000
    unknown = FairShare(2, proc)  # no request has told it the port yet
    blind = FairShare(2, tmp_path / "no-proc")
    blind.port = 8000
    for share in (alone, unknown, blind):
        share.refresh()
        assert not share.should_close()
