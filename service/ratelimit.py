"""Per-key rate limits: a token bucket per API key id, in the memory of one worker process.

A key may send `burst` requests at once and `rate` per second on average; beyond, a request is
refused with the seconds until a token is back (`Retry-After`). Buckets are per process: with
`serve --workers N`, a client whose connections land on several workers may get up to N times
the rate (keep-alive connections stay on one worker), which bounds abuse without a shared store
write per request.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from service.errors import RateLimited


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key_id: str) -> None:
        """Spend one token of `key_id`'s bucket, or raise `RateLimited`."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key_id)
            if bucket is None:
                bucket = self._buckets[key_id] = _Bucket(float(self.burst), now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return
            wait = max(1, math.ceil((1.0 - bucket.tokens) / self.rate))
        raise RateLimited(
            f"this API key sent more than {self.burst} requests at once or {self.rate:g} per "
            f"second on average; retry in {wait} s",
            retry_after=wait,
        )
