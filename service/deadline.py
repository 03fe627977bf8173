"""Time budgets of long requests (matches and searches), checked between their steps.

Python cannot stop a thread, so a request that runs past its budget is abandoned at the next
checkpoint (after embedding the query, after finding candidates, after scoring, per page read)
with `TimedOut`, which the API answers 503. One step may overrun the budget by its own length;
no step of a match is unbounded (query passages, candidates and pages are all capped).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from service.errors import TimedOut


@dataclass
class Deadline:
    seconds: float
    clock: Callable[[], float] = time.monotonic
    started: float = field(default=0.0)
    checks: int = 0
    """How many checkpoints were passed (tests count them)."""

    def __post_init__(self) -> None:
        self.started = self.clock()

    def remaining(self) -> float:
        """Seconds left of the budget (negative once past it)."""
        return self.seconds - (self.clock() - self.started)

    def check(self, step: str) -> None:
        self.checks += 1
        spent = self.clock() - self.started
        if spent > self.seconds:
            raise TimedOut(
                f"the request ran {spent:.1f} s, past its limit of {self.seconds:g} s "
                f"(CLUSTERMATCH_REQUEST_TIMEOUT_SECONDS), at {step}; ask for fewer results or "
                f"a shorter profile, or ask the operator to raise the limit"
            )


def check(deadline: Deadline | None, step: str) -> None:
    if deadline is not None:
        deadline.check(step)
