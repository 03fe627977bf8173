"""/v1/audit: the audit log, for admins (see service.audit)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from service.api.deps import Admin, ServicesDep, reject_unknown_query
from service.api.schemas import problem_responses
from service.api.schemas_workspace import AuditEventOut, AuditPage
from service.audit import Action, AuditQuery, parse_instant

router = APIRouter(
    prefix="/v1/audit",
    tags=["operations"],
    responses=problem_responses(401, 403, 422),
    dependencies=[Depends(reject_unknown_query)],
)
Instant = Annotated[
    str | None,
    Query(
        pattern=r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2})?(\+00:00|Z)?)?$",
        description="ISO 8601, UTC (`2026-12-01` or `2026-12-01T08:00:00Z`)",
    ),
]


@router.get(
    "",
    response_model=AuditPage,
    summary="Audit events (admin): who did what and when, oldest first; never any text",
    description="Writes and deletes of actors, key use (counted per key and minute), refused "
    "and rate-limited keys, rebuilds, reloads and key changes. Page on with `after` set to "
    "the `next_after` of the previous page.",
)
def audit_log(
    services: ServicesDep,
    _: Admin,
    since: Instant = None,
    until: Instant = None,
    tenant: Annotated[str | None, Query(max_length=128)] = None,
    key_id: Annotated[str | None, Query(max_length=64)] = None,
    action: Action | None = None,
    after: Annotated[int, Query(ge=0, description="`next_after` of the previous page")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    query = AuditQuery(
        since=_utc(since, "since"),
        until=_utc(until, "until"),
        tenant=tenant,
        key_id=key_id,
        action=action,
        after_id=after,
        limit=limit,
    )
    events = services.runtime.store.audit_events(query)
    return AuditPage(
        events=[AuditEventOut.of(e) for e in events],
        next_after=events[-1].id if len(events) == limit else None,
    )


def _utc(value: str | None, field: str) -> str | None:
    """The store's spelling of an instant (`...+00:00`), so comparisons are between equals."""
    return None if value is None else parse_instant(value, field)
