"""An exclusive, non-blocking lock on a file, released by the OS when the process dies.

`flock` locks vanish with their process, so a SIGKILLed rebuild never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Protocol

from service.errors import Conflict


@contextmanager
def exclusive(path: Path, what: str) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Conflict(f"{what} is already running (lock {path} is held)") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # closing releases the lock


def is_locked(path: Path) -> bool:
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@contextmanager
def waiting(path: Path) -> Iterator[None]:
    """An exclusive lock that waits its turn (e.g. two processes building the same cached model
    file: the second waits, then finds the file built)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class RebuildLock(Protocol):
    """One rebuild at a time per store: a file lock on one host (`FileRebuildLock`), a PostgreSQL
    advisory lock across hosts (`service.store.pg.AdvisoryRebuildLock`)."""

    def hold(self, what: str) -> AbstractContextManager[None]:
        """Hold the lock for the `with` block; raise `Conflict` naming `what` when it is taken."""
        ...

    def held(self) -> bool: ...


class FileRebuildLock:
    def __init__(self, path: Path) -> None:
        self.path = path

    def hold(self, what: str) -> AbstractContextManager[None]:
        return exclusive(self.path, what)

    def held(self) -> bool:
        return is_locked(self.path)
