"""New-match alerts, computed and delivered through an outbox that survives crashes.

1. **Check.** When a new generation is served, and at most every `alert_write_seconds` while
   writes arrive, each subscription's watched list (a stored actor's matches, or a saved search)
   is ranked again by the service's own `Matcher`, as its tenant sees it (visibility applies to
   every text sent). The actors not yet announced become ONE event, written with its id, its
   exact body and the grown "seen" set in ONE transaction (`SubscriptionStore.record_check`).
2. **Deliver.** Pending events are POSTed, oldest first per subscription, signed with
   `X-Clustermatch-Signature: sha256=<HMAC-SHA256 of the body>`. A 2xx marks the event
   delivered; anything else (an error status, a refused connection, a timeout) is logged as an
   attempt and retried after `alert_retry_seconds` x 2^(attempts - 1), capped, until
   `alert_max_attempts`.

A crash between the two steps leaves a pending event, sent after the restart; a crash after a
receiver's 2xx but before it was recorded sends that event again, with the same id
(at-least-once; receivers deduplicate by `event_id`). With `serve --workers N` every worker runs
the loop, and a non-blocking file lock in the data directory lets one of them work at a time.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import httpx

from service import __version__
from service.config import Settings
from service.domain import Match
from service.errors import ClusterMatchError, Conflict
from service.failpoints import failpoint
from service.filters import Filters
from service.index.generations import GenerationStore
from service.locks import exclusive
from service.matching import Matcher, MatchResult
from service.serving import ServedIndex
from service.store import ProfileStore
from service.subscriptions import (
    EVENT_HEADER,
    SIGNATURE_HEADER,
    Attempt,
    Check,
    Event,
    EventState,
    Subscription,
    SubscriptionStore,
    new_event_id,
    new_subscription_id,
    signature,
)

log = logging.getLogger("clustermatch.alerts")

Clock = Callable[[], float]
COMPUTED_FAILPOINT = "alerts-computed"
"""Between an event's commit and its first delivery (the crash test kills a server there)."""


class AlertsRuntime(Protocol):
    """What the alerts need of the service (service.runtime.Runtime has it all)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def store(self) -> ProfileStore: ...

    @property
    def matcher(self) -> Matcher: ...

    @property
    def index(self) -> ServedIndex: ...

    @property
    def generations(self) -> GenerationStore: ...

    @property
    def subscriptions(self) -> SubscriptionStore: ...


def watched(matcher: Matcher, subscription: Subscription) -> list[Match]:
    """The subscription's list now: its best `top` at or above `min_score`, as its tenant sees
    them (one entry per actor: partners sharing a passage are not folded together)."""
    actor_filter = Filters.model_validate(subscription.filters).to_actor_filter()
    result: MatchResult
    if subscription.actor_id is not None:
        result = matcher.match_actor(
            subscription.actor_id,
            limit=subscription.top,
            filters=actor_filter,
            viewer=subscription.viewer,
            collapse=False,
        )
    else:
        assert subscription.query is not None
        result = matcher.search(
            subscription.query,
            limit=subscription.top,
            filters=actor_filter,
            viewer=subscription.viewer,
            collapse=False,
        )
    floor = subscription.min_score
    return [m for m in result.matches if floor is None or m.score >= floor]


def match_body(match: Match) -> dict[str, object]:
    """A match as the v1 API spells it (`MatchOut`): actor, score, evidence."""
    a = match.actor
    return {
        "actor": {
            "id": a.id,
            "name": a.name,
            "kind": a.kind,
            "country": a.country,
            "region": a.region,
            "sectors": list(a.sectors),
        },
        "score": match.score,
        "evidence": [
            {
                "document_id": e.document_id,
                "document_kind": e.document_kind,
                "text": e.text,
                "score": e.score,
            }
            for e in match.evidence
        ],
    }


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def subscribe(runtime: AlertsRuntime, subscription: Subscription, now: float) -> Subscription:
    """Store a new subscription with its baseline: what it shows now is not news, so only
    actors entering its list from now on are announced. Raises `NotFound` for an unknown
    watched actor."""
    ready = replace(
        subscription,
        id=subscription.id or new_subscription_id(),
        created_at=_iso(now),
        # Read before ranking: a write landing meanwhile is then seen by the next check.
        checked_changes=runtime.store.changes(),
        checked_generation=runtime.index.get().manifest.generation,
        checked_at=now,
    )
    baseline = watched(runtime.matcher, ready)
    runtime.subscriptions.create(ready, [m.actor.id for m in baseline])
    return ready


@dataclass(frozen=True)
class TickReport:
    locked: bool
    """False when this process did nothing: another held the lock, or nothing is subscribed."""
    checked: int = 0
    events: int = 0
    attempts: int = 0
    delivered: int = 0


class Alerts:
    """Checks and deliveries for every subscription; `tick()` does one round of both."""

    def __init__(
        self,
        runtime: AlertsRuntime,
        clock: Clock = time.time,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._runtime = runtime
        self._settings = runtime.settings
        self._clock = clock
        self._transport = transport
        self.lock_path: Path = runtime.settings.data_dir / "alerts.lock"

    # --- one round -------------------------------------------------------------------------

    def tick(self) -> TickReport:
        if not self._runtime.subscriptions.owned_by():
            return TickReport(locked=False)  # nothing to watch (events go with subscriptions)
        try:
            with exclusive(self.lock_path, "alert delivery"):
                checked, events = self.check_due()
                attempts, delivered = self.deliver_due()
        except Conflict:
            return TickReport(locked=False)
        return TickReport(True, checked, events, attempts, delivered)

    # --- checks ----------------------------------------------------------------------------

    def check_due(self) -> tuple[int, int]:
        """Check every subscription whose list may have changed; returns (checked, events)."""
        runtime = self._runtime
        subscriptions = runtime.subscriptions.owned_by()
        if not subscriptions:
            return 0, 0
        # Serve what CURRENT names first: a worker that lags behind a publish must not check
        # on the old generation (and then again on the new one).
        generation = runtime.index.reload().manifest.generation
        changes = runtime.store.changes()
        checked = events = 0
        for subscription in subscriptions:
            now = self._clock()
            published = subscription.checked_generation != generation
            written = subscription.checked_changes != changes and (
                now - subscription.checked_at >= self._settings.alert_write_seconds
            )
            if not (published or written):
                continue
            check = self._check(subscription, generation, changes, now, published)
            if runtime.subscriptions.record_check(check):
                checked += 1
                if check.event is not None:
                    events += 1
                    log.info(
                        "subscription %s: event %s with %d new matches",
                        subscription.id,
                        check.event.id,
                        check.event.matches,
                    )
                    failpoint(COMPUTED_FAILPOINT)
        return checked, events

    def _check(
        self,
        subscription: Subscription,
        generation: str,
        changes: int,
        now: float,
        published: bool,
    ) -> Check:
        runtime = self._runtime
        try:
            matches = watched(runtime.matcher, subscription)
        except ClusterMatchError as exc:  # e.g. the watched actor was deleted
            return Check(subscription.id, generation, changes, now, error=str(exc))
        seen = runtime.subscriptions.seen(subscription.id)
        new = [m for m in matches if m.actor.id not in seen]
        if not new:
            return Check(subscription.id, generation, changes, now)
        event_id = new_event_id()
        body = {
            "event_id": event_id,
            "subscription_id": subscription.id,
            "generation": generation,
            "created_at": _iso(now),
            "trigger": "generation" if published else "writes",
            "matches": [match_body(m) for m in new],
        }
        event = Event(
            id=event_id,
            subscription_id=subscription.id,
            generation=generation,
            body=json.dumps(body, ensure_ascii=False, separators=(",", ":")),
            matches=len(new),
            created_at=now,
            next_attempt_at=now,
        )
        return Check(
            subscription.id, generation, changes, now, seen=[m.actor.id for m in new], event=event
        )

    # --- deliveries ------------------------------------------------------------------------

    def deliver_due(self) -> tuple[int, int]:
        """POST every due event once; returns (attempts, delivered)."""
        store = self._runtime.subscriptions
        due = store.due_events(self._clock())
        if not due:
            return 0, 0
        delivered = 0
        with httpx.Client(
            timeout=self._settings.alert_timeout_seconds,
            follow_redirects=False,
            transport=self._transport,
        ) as client:
            for event in due:
                subscription = store.get(event.subscription_id)
                if subscription is None:
                    continue  # deleted meanwhile (its events went with it)
                attempt = self._post(client, subscription, event)
                state, next_at = self._after(event, attempt)
                store.record_attempt(attempt, state, next_at)
                delivered += state == "delivered"
        return len(due), delivered

    def _post(self, client: httpx.Client, subscription: Subscription, event: Event) -> Attempt:
        body = event.body.encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(subscription.secret, body),
            EVENT_HEADER: event.id,
            "User-Agent": f"clustermatch/{__version__}",
        }
        started = self._clock()
        status: int | None = None
        error: str | None
        try:
            response = client.post(subscription.url, content=body, headers=headers)
            status = response.status_code
            error = None if 200 <= status < 300 else f"HTTP {status}"
        except httpx.TimeoutException:
            error = f"timed out after {self._settings.alert_timeout_seconds:g} s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        at = self._clock()
        return Attempt(event.id, event.attempts + 1, at, round(at - started, 3), status, error)

    def _after(self, event: Event, attempt: Attempt) -> tuple[EventState, float]:
        """The event's state after an attempt, and when to try again."""
        if attempt.error is None:
            return "delivered", attempt.at
        if attempt.attempt >= self._settings.alert_max_attempts:
            log.warning("event %s failed %d times; given up", event.id, attempt.attempt)
            return "failed", attempt.at
        wait = min(
            self._settings.alert_retry_seconds * 2 ** (attempt.attempt - 1),
            self._settings.alert_retry_max_seconds,
        )
        return "pending", attempt.at + wait


class AlertWorker:
    """A background thread running `Alerts.tick()` every `alert_check_seconds`."""

    def __init__(self, alerts: Alerts, seconds: float) -> None:
        self._alerts = alerts
        self._seconds = seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="alerts", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        # The first round runs at once: events left pending by a crash go out after a restart
        # without waiting a period.
        while True:
            try:
                self._alerts.tick()
            except Exception:  # keep the loop alive; the outbox keeps what was not sent
                log.exception("alerts: a round failed; pending events stay in the outbox")
            if self._stop.wait(self._seconds):
                return
