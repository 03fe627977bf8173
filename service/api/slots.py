"""Ranking turns: at most `n` searches and matches run at once in one worker process.

A worker hands every request to a thread of its pool (40 by default). Under load, sixteen
rankings in one process then share one core and one GIL: each runs many times slower than
alone, all of them finish late together, and the switching itself costs CPU. With a few turns
the others wait, in their order of arrival, without using the CPU, so a ranking runs at
its own speed and the waiting time is what a queue costs. Two turns, not one: while one request
embeds its query (ONNX, which releases the GIL) the other ranks in Python, and queries that
arrive together still share a model call (service.embedding.batching); a free-text search
embeds its query before it takes a turn (Matcher.embed_query), so waiting searches batch
theirs.

Measured at 100,000 chunks on two workers against 40 at once (the pool; BENCHMARKS.md,
session 7): the p99 of 16 searching clients 135 against 168 ms, 4 matching clients 173 against
88 req/s; search throughput within the noise.

Turns are handed on in order of arrival: a freed turn goes to the oldest waiting request, never
to one that just arrived. (A semaphore lets a newcomer take a turn between the release and the
woken waiter's run, and the waiter then queues again at the back; under the GIL that gap is
wide, and those requests were the tail of a 16-client load.)

A request that waits past its time budget is answered 503 as one that runs past it.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import anyio.to_thread
from anyio import CapacityLimiter

from service.deadline import Deadline
from service.errors import TimedOut

T = TypeVar("T")


class Slots:
    def __init__(self, n: int) -> None:
        self.n = n
        self._free = n
        self._lock = threading.Lock()
        self._queue: deque[threading.Event] = deque()
        """The waiting requests, oldest first; a freed turn is handed to the head."""

    @property
    def waiting(self) -> int:
        """Requests waiting for a turn now (the `clustermatch_ranking_waiting` gauge and tests
        read it)."""
        return len(self._queue)

    @contextmanager
    def turn(self, deadline: Deadline | None = None) -> Iterator[None]:
        """Hold one turn for the block; wait for one at most until `deadline` runs out."""
        with self._lock:
            handed = None
            if self._free and not self._queue:
                self._free -= 1
            else:
                handed = threading.Event()
                self._queue.append(handed)
        if handed is not None:
            timeout = None if deadline is None else max(0.0, deadline.remaining())
            if not handed.wait(timeout):
                with self._lock:
                    gave_up = handed in self._queue  # else it was handed a turn just now
                    if gave_up:
                        self._queue.remove(handed)
                if gave_up:
                    assert deadline is not None
                    raise TimedOut(
                        f"the request's budget of {deadline.seconds:g} s "
                        "(CLUSTERMATCH_REQUEST_TIMEOUT_SECONDS) ran out while it waited for one "
                        f"of this worker's {self.n} ranking turns (CLUSTERMATCH_RANKING_TURNS); "
                        "the server is overloaded: retry later, or ask the operator for more "
                        "workers"
                    )
        try:
            yield
        finally:
            with self._lock:
                if self._queue:
                    self._queue.popleft().set()  # the turn passes on, never freed in between
                else:
                    self._free += 1


class SideThreads:
    """A few threads beside the app's pool, for the operations endpoints that read the store or
    the index (/readyz, /metrics). Under overload every thread of the pool may wait for a
    ranking turn; a readiness probe queued behind them would time out and take a busy but
    working worker out of service, which moves its load onto the others."""

    def __init__(self, n: int = 2) -> None:
        self.n = n
        self._limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CapacityLimiter]
        self._limiters = weakref.WeakKeyDictionary()

    async def run(self, call: Callable[[], T]) -> T:
        # A limiter belongs to the event loop it was made in (tests start several loops).
        loop = asyncio.get_running_loop()
        limiter = self._limiters.get(loop)
        if limiter is None:
            limiter = self._limiters[loop] = CapacityLimiter(self.n)
        return await anyio.to_thread.run_sync(call, limiter=limiter)
