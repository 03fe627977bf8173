"""/v1/feedback: a tenant's verdicts on suggestions, their export and their counts.

Any key that may read may give feedback: it changes only its own tenant's view (see
`service.feedback`). Admins (and the operator of an open service) see every tenant's feedback.
"""

from __future__ import annotations

import csv
import io
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Query, Response, status
from pydantic import BeforeValidator

from service.api.deps import Reader, ServicesDep, audit, reject_unknown_query
from service.api.schemas import problem_responses
from service.api.schemas_workspace import (
    FEEDBACK_EXAMPLE,
    FeedbackIn,
    FeedbackList,
    FeedbackOut,
    FeedbackSummary,
    TenantFeedback,
)
from service.errors import Forbidden, NotFound
from service.feedback import Feedback, Label, context_of
from service.filters import split_values
from service.keys import Principal

router = APIRouter(
    prefix="/v1/feedback",
    tags=["feedback"],
    responses=problem_responses(401, 403, 404, 422),
    dependencies=[Depends(reject_unknown_query)],
)
Labels = Annotated[list[Label], BeforeValidator(split_values)]

CSV_COLUMNS = ("tenant", "context", "actor_id", "label", "for_actor", "query", "note", "updated_at")


def _tenant_scope(principal: Principal, tenant: str | None) -> str | None:
    """Whose feedback the caller may read: its own tenant's, or (admin) any or all."""
    if principal.is_operator or principal.has("admin"):
        return tenant
    if tenant is not None and tenant != principal.tenant:
        raise Forbidden("this API key may only read its own tenant's feedback")
    return principal.tenant


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=FeedbackOut,
    summary="Give feedback on a suggestion (owned by the key's tenant)",
    description="`not_relevant` keeps the actor out of that tenant's suggestions in the same "
    "context (the actor it was suggested for, or the search text); `contacted` and `met` make it "
    "a known contact, left out by `new_contacts_only`. A later label replaces the earlier one.",
)
def give_feedback(
    body: Annotated[FeedbackIn, Body(openapi_examples={"contacted": {"value": FEEDBACK_EXAMPLE}})],
    services: ServicesDep,
    principal: Reader,
) -> FeedbackOut:
    store = services.runtime.store
    wanted = [body.actor_id, *([body.for_actor] if body.for_actor else [])]
    known = store.actor_summaries(wanted)
    for actor_id in wanted:
        if actor_id not in known:
            raise NotFound(f"actor {actor_id!r} does not exist")
    item = Feedback(
        tenant=principal.tenant,
        actor_id=body.actor_id,
        label=body.label,
        for_actor=body.for_actor,
        query=(body.query or "").strip() or None,
        note=body.note,
    )
    stored = store.put_feedback(item)
    audit(services, principal, "feedback.put", body.actor_id)
    return FeedbackOut.model_validate(stored)


@router.get(
    "",
    response_model=FeedbackList,
    summary="Feedback of the caller's tenant (admins: any tenant), as JSON or CSV",
    responses={200: {"content": {"text/csv": {}}}},
)
def list_feedback(
    services: ServicesDep,
    principal: Reader,
    for_actor: str | None = None,
    query: Annotated[str | None, Query(max_length=2_000, pattern=r"\S")] = None,
    label: Annotated[Labels | None, Query()] = None,
    tenant: str | None = None,
    format: Literal["json", "csv"] = "json",
) -> FeedbackList | Response:
    context = context_of(for_actor, query) if for_actor or query else None
    items = services.runtime.store.list_feedback(
        _tenant_scope(principal, tenant), context, label or ()
    )
    rows = [FeedbackOut.model_validate(item) for item in items]
    if format == "json":
        return FeedbackList(feedback=rows)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(row.model_dump(mode="json") for row in rows)
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="feedback.csv"'},
    )


@router.get(
    "/summary",
    response_model=FeedbackSummary,
    summary="Feedback counts per tenant: how many suggestions led to contacts",
)
def feedback_summary(
    services: ServicesDep, principal: Reader, tenant: str | None = None
) -> FeedbackSummary:
    counts = services.runtime.store.feedback_counts(_tenant_scope(principal, tenant))
    return FeedbackSummary(tenants=[TenantFeedback.model_validate(c) for c in counts])
