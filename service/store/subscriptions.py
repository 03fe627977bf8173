"""`SubscriptionStore` in SQL: subscriptions, their seen sets, the outbox and its delivery log.

It shares the profile store's engine (one database, one set of migrations); the tables are
defined in `service.store.sql` on the one `metadata`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import asdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from service.store.sql import (
    _chunked,
    alert_events,
    delivery_attempts,
    subscription_seen,
    subscriptions,
)
from service.subscriptions import Attempt, Check, Delivery, Event, EventState, Subscription


class SqlSubscriptionStore:
    def __init__(self, engine: Callable[[], Engine]) -> None:
        self._engine = engine
        """Asked on first use (the profile store connects, and creates tables, lazily)."""

    @property
    def engine(self) -> Engine:
        return self._engine()

    def create(self, subscription: Subscription, seen: Collection[str]) -> None:
        row = asdict(subscription)
        row["networks"] = json.dumps(list(subscription.networks))
        row["filters"] = json.dumps(subscription.filters)
        with self.engine.begin() as conn:
            conn.execute(subscriptions.insert().values(**row))
            self._add_seen(conn, subscription.id, seen)

    @staticmethod
    def _add_seen(conn: sa.Connection, subscription_id: str, seen: Collection[str]) -> None:
        if seen:
            conn.execute(
                subscription_seen.insert(),
                [{"subscription_id": subscription_id, "actor_id": a} for a in sorted(set(seen))],
            )

    @staticmethod
    def _subscription(row: Any) -> Subscription:
        fields = dict(row._mapping)
        fields["networks"] = tuple(json.loads(fields["networks"]))
        fields["filters"] = json.loads(fields["filters"])
        return Subscription(**fields)

    def get(self, subscription_id: str) -> Subscription | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(subscriptions).where(subscriptions.c.id == subscription_id)
            ).first()
        return None if row is None else self._subscription(row)

    def owned_by(self, tenant: str | None = None) -> list[Subscription]:
        query = sa.select(subscriptions).order_by(subscriptions.c.created_at, subscriptions.c.id)
        if tenant is not None:
            query = query.where(subscriptions.c.tenant == tenant)
        with self.engine.connect() as conn:
            return [self._subscription(r) for r in conn.execute(query)]

    def delete(self, subscription_id: str) -> bool:
        with self.engine.begin() as conn:
            # Children first, explicitly (as the profile store does): no reliance on cascades.
            events = sa.select(alert_events.c.id).where(
                alert_events.c.subscription_id == subscription_id
            )
            conn.execute(delivery_attempts.delete().where(delivery_attempts.c.event_id.in_(events)))
            conn.execute(
                alert_events.delete().where(alert_events.c.subscription_id == subscription_id)
            )
            conn.execute(
                subscription_seen.delete().where(
                    subscription_seen.c.subscription_id == subscription_id
                )
            )
            gone = conn.execute(subscriptions.delete().where(subscriptions.c.id == subscription_id))
            return gone.rowcount > 0

    def seen(self, subscription_id: str) -> set[str]:
        with self.engine.connect() as conn:
            return set(
                conn.execute(
                    sa.select(subscription_seen.c.actor_id).where(
                        subscription_seen.c.subscription_id == subscription_id
                    )
                ).scalars()
            )

    def record_check(self, check: Check) -> bool:
        with self.engine.begin() as conn:
            updated = conn.execute(
                subscriptions.update()
                .where(subscriptions.c.id == check.subscription_id)
                .values(
                    checked_generation=check.generation,
                    checked_changes=check.changes,
                    checked_at=check.at,
                    last_error=check.error,
                )
            )
            if updated.rowcount == 0:
                return False  # deleted meanwhile: nothing to announce to anyone
            self._add_seen(conn, check.subscription_id, check.seen)
            if check.event is not None:
                conn.execute(alert_events.insert().values(**asdict(check.event)))
        return True

    @staticmethod
    def _event(row: Any) -> Event:
        return Event(**row._mapping)

    def due_events(self, now: float, limit: int = 100) -> list[Event]:
        pending = alert_events.c.state == "pending"
        oldest = (
            sa.select(
                alert_events.c.subscription_id,
                sa.func.min(alert_events.c.created_at).label("created_at"),
            )
            .where(pending)
            .group_by(alert_events.c.subscription_id)
            .subquery()
        )
        query = (
            sa.select(alert_events)
            .join(
                oldest,
                sa.and_(
                    oldest.c.subscription_id == alert_events.c.subscription_id,
                    oldest.c.created_at == alert_events.c.created_at,
                ),
            )
            .where(pending, alert_events.c.next_attempt_at <= now)
            .order_by(alert_events.c.next_attempt_at, alert_events.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            found = [self._event(r) for r in conn.execute(query)]
        # Two events of one subscription created in the same instant: keep the first by id.
        first: dict[str, Event] = {}
        for event in sorted(found, key=lambda e: e.id):
            first.setdefault(event.subscription_id, event)
        return sorted(first.values(), key=lambda e: (e.next_attempt_at, e.id))

    def pending_count(self, subscription_id: str) -> int:
        with self.engine.connect() as conn:
            n = conn.execute(
                sa.select(sa.func.count())
                .select_from(alert_events)
                .where(
                    alert_events.c.subscription_id == subscription_id,
                    alert_events.c.state == "pending",
                )
            ).scalar()
        return int(n or 0)

    def record_attempt(self, attempt: Attempt, state: EventState, next_attempt_at: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                delivery_attempts.insert().values(
                    event_id=attempt.event_id,
                    attempt=attempt.attempt,
                    at=attempt.at,
                    status_code=attempt.status_code,
                    error=attempt.error,
                    seconds=attempt.seconds,
                )
            )
            conn.execute(
                alert_events.update()
                .where(alert_events.c.id == attempt.event_id)
                .values(
                    state=state,
                    attempts=attempt.attempt,
                    next_attempt_at=next_attempt_at,
                    delivered_at=attempt.at if state == "delivered" else None,
                )
            )

    def deliveries(self, subscription_id: str, limit: int = 100) -> list[Delivery]:
        with self.engine.connect() as conn:
            events = [
                self._event(r)
                for r in conn.execute(
                    sa.select(alert_events)
                    .where(alert_events.c.subscription_id == subscription_id)
                    .order_by(alert_events.c.created_at.desc(), alert_events.c.id.desc())
                    .limit(limit)
                )
            ]
            attempts: dict[str, list[Attempt]] = {}
            for part in _chunked([e.id for e in events]):
                rows = conn.execute(
                    sa.select(delivery_attempts)
                    .where(delivery_attempts.c.event_id.in_(part))
                    .order_by(delivery_attempts.c.id)
                )
                for r in rows:
                    attempts.setdefault(r.event_id, []).append(
                        Attempt(
                            event_id=r.event_id,
                            attempt=r.attempt,
                            at=r.at,
                            seconds=r.seconds,
                            status_code=r.status_code,
                            error=r.error,
                        )
                    )
        return [Delivery(e, tuple(attempts.get(e.id, ()))) for e in events]
