"""The audit log: who (key id and tenant, or the operator at the command line) did what, when.

Never the texts: an event names an action (`actor.create`, `keys.revoke`, ...), its target (an
actor id, a key id, a job id) and a count, nothing a profile or a query says.

- **Writes and deletes of actors** are recorded by the store in the same transaction as the
  write itself (`ProfileStore.upsert_actors(..., who=)`): no write without its event, no event
  without its write.
- **Key use** is counted in memory per key, action and minute (`KeyUse`) and appended once the
  minute is over (and at shutdown), so a search is not a store write: one row per key, minute
  and worker process. A process killed with SIGKILL loses at most its last minute of counts.
- **Admin actions** (rebuilds, reloads, key changes, pruning) are one event each.

The table is only ever appended to; pruning deletes whole minutes older than the retention
period (`CLUSTERMATCH_AUDIT_RETENTION_DAYS`), nothing else changes a row.
"""

from __future__ import annotations

import getpass
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

from service.errors import FieldProblem, InvalidInput

Action = Literal[
    "actor.create",
    "actor.replace",
    "actor.delete",
    "feedback.put",
    "key.use",
    "key.refused",
    "key.limited",
    "index.rebuild",
    "index.reload",
    "index.rollback",
    "keys.create",
    "keys.revoke",
    "keys.rotate",
    "keys.tenant",
    "audit.prune",
]
ACTIONS: tuple[str, ...] = get_args(Action)


@dataclass(frozen=True)
class Who:
    key_id: str | None
    tenant: str
    origin: str = "http"
    """`http`, or `cli:<operating-system user>` for the command line."""


def at_the_command_line() -> Who:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        user = "unknown"
    return Who(None, "local", f"cli:{user}")


@dataclass(frozen=True)
class AuditEvent:
    action: str
    who: Who
    target: str | None = None
    count: int = 1
    at: str = ""
    """ISO 8601 UTC; "" means now (the store stamps it)."""
    id: int = 0


@dataclass(frozen=True)
class AuditQuery:
    since: str | None = None
    until: str | None = None
    tenant: str | None = None
    key_id: str | None = None
    action: str | None = None
    after_id: int = 0
    limit: int = 100


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def parse_instant(value: str, field: str = "since") -> str:
    """An ISO 8601 date or time (UTC when no offset is given) in the store's spelling."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            [FieldProblem(field, f"{value!r} is not a calendar date or time (ISO 8601)")]
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return stamp(moment)


def cutoff(days: int, now: datetime | None = None) -> str:
    return stamp((now or datetime.now(UTC)) - timedelta(days=days))


class KeyUse:
    """Counts of key use per (minute, who, action), handed out once their minute is over."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._counts: Counter[tuple[int, Who, str]] = Counter()
        self._lock = threading.Lock()

    def note(self, who: Who, action: str = "key.use") -> None:
        minute = int(self._clock() // 60)
        with self._lock:
            self._counts[(minute, who, action)] += 1

    def drain(self, everything: bool = False) -> list[AuditEvent]:
        """Events of the minutes that are over (with `everything`, the current one too)."""
        now = int(self._clock() // 60)
        with self._lock:
            done = [k for k in self._counts if everything or k[0] < now]
            taken = [(k, self._counts.pop(k)) for k in done]
        return [
            AuditEvent(
                action,
                who,
                count=n,
                at=stamp(datetime.fromtimestamp(minute * 60, UTC)),
            )
            for (minute, who, action), n in sorted(taken, key=lambda kv: kv[0][0])
        ]
