"""/v1/subscriptions: new-match alerts as webhooks (see `service.alerts`), owned by a tenant.

Creating or deleting one takes the `write` scope (it makes the service call out to a URL);
reading takes `read`. A tenant sees only its own subscriptions; another tenant's is answered 404,
so ids reveal nothing. Admins (and the operator of an open service) see every tenant's.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query, Response, status

from service.alerts import subscribe
from service.api.deps import Reader, ServicesDep, Writer, reject_unknown_query
from service.api.schemas import problem_responses
from service.api.schemas_workflows import (
    SUBSCRIPTION_EXAMPLE,
    AttemptOut,
    DeliveryList,
    DeliveryOut,
    SavedSearchOut,
    SubscriptionIn,
    SubscriptionList,
    SubscriptionOut,
)
from service.errors import NotFound
from service.keys import Principal
from service.subscriptions import Delivery, Subscription, SubscriptionStore

router = APIRouter(
    prefix="/v1/subscriptions",
    tags=["alerts"],
    responses=problem_responses(401, 403, 404, 422),
    dependencies=[Depends(reject_unknown_query)],
)
SubscriptionId = Annotated[str, Path(pattern=r"^sub_[0-9a-f]{20}$", description="from the POST")]


def _sees_all(principal: Principal) -> bool:
    return principal.is_operator or principal.has("admin")


def _owned(store: SubscriptionStore, principal: Principal, subscription_id: str) -> Subscription:
    found = store.get(subscription_id)
    if found is None or not (_sees_all(principal) or found.tenant == principal.tenant):
        raise NotFound(f"subscription {subscription_id!r} does not exist")
    return found


def _iso(at: float | None) -> str | None:
    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def _out(s: Subscription, pending: int, baseline: int | None = None) -> SubscriptionOut:
    return SubscriptionOut(
        id=s.id,
        actor_id=s.actor_id,
        query=None if s.query is None else SavedSearchOut(q=s.query, filters=s.filters),
        top=s.top,
        min_score=s.min_score,
        url=s.url,
        tenant=s.tenant,
        created_at=s.created_at,
        generation=s.checked_generation,
        baseline=baseline,
        pending_events=pending,
        last_error=s.last_error,
    )


def _delivery_out(d: Delivery) -> DeliveryOut:
    e = d.event
    return DeliveryOut(
        event_id=e.id,
        generation=e.generation,
        matches=e.matches,
        created_at=_iso(e.created_at) or "",
        state=e.state,
        delivered_at=_iso(e.delivered_at),
        next_attempt_at=_iso(e.next_attempt_at) if e.state == "pending" else None,
        attempts=[
            AttemptOut(
                attempt=a.attempt,
                at=_iso(a.at) or "",
                seconds=a.seconds,
                status_code=a.status_code,
                error=a.error,
            )
            for a in d.attempts
        ],
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SubscriptionOut,
    summary="Subscribe a webhook to the new matches of a stored actor or a saved search",
    description="What the list shows now is the baseline and is not sent. After each published "
    "generation (and at most every `CLUSTERMATCH_ALERT_WRITE_SECONDS` while writes arrive) the "
    "actors newly in the best `top` are POSTed to `url` as `{event_id, subscription_id, "
    "generation, matches: [{actor, score, evidence}]}` with `X-Clustermatch-Signature: "
    "sha256=<hex HMAC-SHA256 of the raw body with the secret>`; failures are retried with "
    "exponential backoff. Evidence shows only what the key's tenant may see.",
)
def create_subscription(
    body: Annotated[
        SubscriptionIn, Body(openapi_examples={"actor": {"value": SUBSCRIPTION_EXAMPLE}})
    ],
    services: ServicesDep,
    principal: Writer,
) -> SubscriptionOut:
    runtime = services.runtime
    draft = Subscription(
        id="",
        tenant=principal.tenant,
        networks=principal.networks,
        url=body.url,
        secret=body.secret,
        top=body.top,
        min_score=body.min_score,
        actor_id=body.actor_id,
        query=body.query.q if body.query else None,
        filters=body.query.filters.model_dump() if body.query else {},
    )
    created = subscribe(runtime, draft, time.time())
    return _out(created, 0, baseline=len(runtime.subscriptions.seen(created.id)))


@router.get(
    "",
    response_model=SubscriptionList,
    summary="The subscriptions of the key's tenant (admins: every tenant's)",
)
def list_subscriptions(services: ServicesDep, principal: Reader) -> SubscriptionList:
    store = services.runtime.subscriptions
    found = store.owned_by(None if _sees_all(principal) else principal.tenant)
    return SubscriptionList(subscriptions=[_out(s, store.pending_count(s.id)) for s in found])


@router.get("/{subscription_id}", response_model=SubscriptionOut, summary="One subscription")
def get_subscription(
    subscription_id: SubscriptionId, services: ServicesDep, principal: Reader
) -> SubscriptionOut:
    store = services.runtime.subscriptions
    found = _owned(store, principal, subscription_id)
    return _out(found, store.pending_count(found.id))


@router.delete(
    "/{subscription_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a subscription with its pending events and delivery log",
)
def delete_subscription(
    subscription_id: SubscriptionId, services: ServicesDep, principal: Writer
) -> Response:
    store = services.runtime.subscriptions
    _owned(store, principal, subscription_id)
    store.delete(subscription_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{subscription_id}/deliveries",
    response_model=DeliveryList,
    summary="The delivery log: events, newest first, with every attempt",
)
def list_deliveries(
    subscription_id: SubscriptionId,
    services: ServicesDep,
    principal: Reader,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> DeliveryList:
    store = services.runtime.subscriptions
    _owned(store, principal, subscription_id)
    return DeliveryList(
        deliveries=[_delivery_out(d) for d in store.deliveries(subscription_id, limit)]
    )
