"""New-match alerts: what a subscription watches, its outbox events and their delivery log.

A subscription belongs to the tenant of the key that created it and watches either a stored
actor's matches or a saved search (text and filters), keeping the best `top` (at or above
`min_score`). The service tells its `url` about every actor that *newly* enters that list; which
actors were already told is the subscription's "seen" set, so an actor that leaves the list and
comes back is not announced twice.

The flow is an outbox (service.alerts): a check writes the event (its id and the exact body that
will be signed) and the grown "seen" set in one transaction; a deliverer POSTs pending events
until the receiver answers 2xx, recording every attempt. An event id never changes, so a receiver
that keeps the ids it processed sees each event once, whatever is retried.

Nothing here touches SQL (`service.store.subscriptions`) or HTTP (`service.alerts`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from service.domain import Viewer

EventState = Literal["pending", "delivered", "failed"]
SIGNATURE_HEADER = "X-Clustermatch-Signature"
EVENT_HEADER = "X-Clustermatch-Event"


def new_subscription_id() -> str:
    return f"sub_{secrets.token_hex(10)}"


def new_event_id() -> str:
    return f"evt_{secrets.token_hex(12)}"


def signature(secret: str, body: bytes) -> str:
    """The `X-Clustermatch-Signature` value: `sha256=` + hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """What a receiver does with the header (constant-time comparison)."""
    return hmac.compare_digest(signature(secret, body), header)


@dataclass(frozen=True)
class Subscription:
    id: str
    tenant: str
    url: str
    secret: str
    top: int
    actor_id: str | None = None
    query: str | None = None
    filters: dict[str, list[str]] = field(default_factory=dict)
    min_score: float | None = None
    networks: tuple[str, ...] = ()
    created_at: str = ""
    checked_generation: str | None = None
    """The generation of the last check (None: the empty stand-in before the first build)."""
    checked_changes: int = 0
    """The store's write count at the last check (`ProfileStore.changes()`)."""
    checked_at: float = 0.0
    last_error: str | None = None
    """Why the last check could not match (e.g. the watched actor was deleted), else None."""

    @property
    def viewer(self) -> Viewer:
        """Whose eyes the alerts are for: the owning tenant's (visibility rules apply)."""
        return Viewer(self.tenant, frozenset(self.networks))


@dataclass(frozen=True)
class Event:
    id: str
    subscription_id: str
    generation: str
    body: str
    """The JSON text that is signed and POSTed, byte for byte the same on every attempt."""
    matches: int
    created_at: float
    state: EventState = "pending"
    attempts: int = 0
    next_attempt_at: float = 0.0
    delivered_at: float | None = None


@dataclass(frozen=True)
class Attempt:
    event_id: str
    attempt: int
    at: float
    seconds: float
    status_code: int | None = None
    error: str | None = None
    """None when the receiver answered 2xx."""


@dataclass(frozen=True)
class Check:
    """The outcome of checking one subscription, written in one transaction."""

    subscription_id: str
    generation: str | None
    changes: int
    at: float
    seen: Sequence[str] = ()
    """Actor ids newly announced (added to the subscription's seen set)."""
    event: Event | None = None
    error: str | None = None


@dataclass(frozen=True)
class Delivery:
    """An event with its attempts: one entry of `GET /v1/subscriptions/{id}/deliveries`."""

    event: Event
    attempts: tuple[Attempt, ...]


class SubscriptionStore(Protocol):
    def create(self, subscription: Subscription, seen: Collection[str]) -> None:
        """Store a subscription with its baseline: the actors it already shows are not new."""
        ...

    def get(self, subscription_id: str) -> Subscription | None: ...

    def owned_by(self, tenant: str | None = None) -> list[Subscription]:
        """Subscriptions of one tenant, or (None) of all, oldest first."""
        ...

    def delete(self, subscription_id: str) -> bool:
        """Remove it with its seen set, events and delivery log."""
        ...

    def seen(self, subscription_id: str) -> set[str]: ...

    def record_check(self, check: Check) -> bool:
        """In ONE transaction: the new event (if any), the newly seen actors and the checked
        state. False (and nothing written) when the subscription was deleted meanwhile."""
        ...

    def due_events(self, now: float, limit: int = 100) -> list[Event]:
        """Per subscription its oldest pending event, when that one is due (events of one
        subscription are delivered in order)."""
        ...

    def pending_count(self, subscription_id: str) -> int: ...

    def record_attempt(self, attempt: Attempt, state: EventState, next_attempt_at: float) -> None:
        """In one transaction: the attempt in the log and the event's new state."""
        ...

    def deliveries(self, subscription_id: str, limit: int = 100) -> list[Delivery]:
        """The newest `limit` events with every attempt, newest first."""
        ...
