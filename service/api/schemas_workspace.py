"""Request and response bodies of the workspace's endpoints: feedback and the competence map.

Kept beside `schemas.py` (same rules: add fields, never rename), so the core contract stays short.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.api.schemas import ActorSummaryOut
from service.audit import AuditEvent
from service.domain import NOT_BLANK, Identifier
from service.feedback import Label

FEEDBACK_EXAMPLE: dict[str, Any] = {
    "actor_id": "pic:999984059",
    "for_actor": "pic:991776016",
    "label": "contacted",
    "note": "introduced at the March wind workshop",
}


class FeedbackIn(BaseModel):
    """A tenant's verdict on one suggestion; a later verdict on the same suggestion replaces it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [FEEDBACK_EXAMPLE],
            # What `_has_context` checks, said in the schema (null counts as not given).
            "anyOf": [
                {"required": ["for_actor"], "properties": {"for_actor": {"type": "string"}}},
                {"required": ["query"], "properties": {"query": {"type": "string", **NOT_BLANK}}},
            ],
        },
    )

    actor_id: Identifier = Field(description="the suggested actor")
    label: Label = Field(
        description="`relevant`, `contacted`, `met`, or `not_relevant` (never suggested again "
        "in this context to the key's tenant)"
    )
    for_actor: Identifier | None = Field(
        default=None,
        description="the actor it was suggested for (an actor page, or a search "
        "on behalf of that actor)",
    )
    query: str | None = Field(
        default=None, max_length=2_000, description="the search text, for a search result"
    )
    note: str = Field(default="", max_length=2_000)

    @model_validator(mode="after")
    def _has_context(self) -> FeedbackIn:
        if not self.for_actor and not (self.query or "").strip():
            raise ValueError("give `for_actor` (the actor it was suggested for) or `query`")
        if self.for_actor == self.actor_id:
            raise ValueError("an actor is not a suggestion for itself")
        return self


class FeedbackOut(BaseModel):
    # Read straight off `service.feedback.Feedback` (its `context` is a property).
    model_config = ConfigDict(from_attributes=True)

    tenant: str
    context: str = Field(description="`actor:<id>` or `search:<normalised query>`")
    actor_id: str
    label: Label
    for_actor: str | None
    query: str | None
    note: str
    updated_at: str


class FeedbackList(BaseModel):
    feedback: list[FeedbackOut]


class TenantFeedback(BaseModel):
    # Read straight off `service.feedback.FeedbackCounts` (the totals are its properties).
    model_config = ConfigDict(from_attributes=True)

    tenant: str
    labels: dict[str, int] = Field(description="suggestions per current label")
    suggestions: int = Field(description="suggestions with feedback")
    contacts: int = Field(description="of those, contacted or met")
    contact_rate: float = Field(description="contacts / suggestions")


class FeedbackSummary(BaseModel):
    tenants: list[TenantFeedback]


class MapPoint(ActorSummaryOut):
    clusters: list[str]
    x: float = Field(ge=0, le=1)
    y: float = Field(ge=0, le=1)


class CompetenceMap(BaseModel):
    state: Literal["ready", "computing", "empty"] = Field(
        description="`computing`: the projection of this generation is being made (202); ask "
        "again. `empty`: no generation has been built yet"
    )
    generation: str | None
    model: str | None
    method: str | None = Field(description="`tsne` or `pca` of the actors' profile vectors")
    points: list[MapPoint] = Field(
        description="every actor of the generation that is still stored, in [0, 1] x [0, 1]"
    )


class AuditEventOut(BaseModel):
    id: int
    at: str = Field(description="ISO 8601 UTC; for counted key use, the start of its minute")
    action: str
    key_id: str | None = Field(description="the API key (none for the command line)")
    tenant: str
    origin: str = Field(description="`http`, `server`, or `cli:<user>`")
    target: str | None = Field(description="the actor, key or job acted on")
    count: int = Field(description="how many times (key use is counted per minute)")

    @classmethod
    def of(cls, event: AuditEvent) -> AuditEventOut:
        return cls(
            id=event.id,
            at=event.at,
            action=event.action,
            key_id=event.who.key_id,
            tenant=event.who.tenant,
            origin=event.who.origin,
            target=event.target,
            count=event.count,
        )


class AuditPage(BaseModel):
    events: list[AuditEventOut]
    next_after: int | None = Field(description="pass as `after` for the next page; null: last")
