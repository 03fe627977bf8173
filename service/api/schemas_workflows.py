"""Request and response bodies of the workflows: new-match alerts (subscriptions and their
deliveries), procurement needs with consortia, and bridge reports between two sides.

Same rules as `schemas.py`: these names are a contract; add fields, never rename.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from service.api.schemas import ActorSummaryOut, summary_out
from service.bridges import BridgeReport, Passage, Theme
from service.domain import NOT_BLANK, Identifier
from service.filters import BodyFilters, Country, Region
from service.needs import AspectEvidence, NeedResult

# --- subscriptions -----------------------------------------------------------------------------

WEBHOOK_URL = r"^https?://[A-Za-z0-9._~-]+(:[0-9]{1,5})?(/[!-~]*)?$"
"""An absolute http(s) URL of printable ASCII (one pattern for JSON Schema and for Python)."""

SUBSCRIPTION_EXAMPLE: dict[str, Any] = {
    "actor_id": "pic:991776016",
    "top": 20,
    "min_score": 0.5,
    "url": "https://crm.example/hooks/clustermatch",
    "secret": "a-long-shared-secret-of-the-receiver",
}


class SavedSearch(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    q: str = Field(min_length=1, max_length=2_000, json_schema_extra=NOT_BLANK)
    filters: BodyFilters = Field(default_factory=BodyFilters)


class SubscriptionIn(BaseModel):
    """What to watch (a stored actor's matches, or a saved search), how much of its list, and
    where to POST what is new."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                SUBSCRIPTION_EXAMPLE,
                {
                    "query": {"q": "hydrogen electrolyser stacks", "filters": {"country": ["AT"]}},
                    "top": 10,
                    "url": "https://crm.example/hooks/clustermatch",
                    "secret": "a-long-shared-secret-of-the-receiver",
                },
            ],
            # What `_one_watch` checks, said in the schema (null counts as not given).
            "oneOf": [
                {"required": ["actor_id"], "properties": {"actor_id": {"type": "string"}}},
                {"required": ["query"], "properties": {"query": {"type": "object"}}},
            ],
        },
    )

    actor_id: Identifier | None = Field(default=None, description="watch this actor's matches")
    query: SavedSearch | None = Field(default=None, description="watch a saved search")
    top: int = Field(default=10, ge=1, le=200, description="how much of the list is watched")
    min_score: float | None = Field(
        default=None,
        ge=-1.0,
        le=1.0,
        strict=True,  # a number, as the schema says: not `false` read as 0
        description="only matches scoring at least this much",
    )
    url: str = Field(
        max_length=2_000,
        pattern=WEBHOOK_URL,
        description="receives a POST per event (http or https; redirects are not followed)",
    )
    secret: str = Field(
        min_length=16,
        max_length=256,
        description="shared with the receiver; signs every body (never shown again)",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_watch(cls, data: Any) -> Any:
        if isinstance(data, dict):
            given = [k for k in ("actor_id", "query") if data.get(k) is not None]
            if len(given) != 1:
                raise ValueError("give exactly one of `actor_id` and `query`")
        return data


class SavedSearchOut(BaseModel):
    q: str
    filters: dict[str, list[str]]


class SubscriptionOut(BaseModel):
    id: str
    actor_id: str | None
    query: SavedSearchOut | None
    top: int
    min_score: float | None
    url: str
    tenant: str
    created_at: str
    generation: str | None = Field(description="the generation of the last check")
    baseline: int | None = Field(
        default=None,
        description="on creation: how many actors the list already shows (not announced)",
    )
    pending_events: int = Field(description="events not yet delivered")
    last_error: str | None = Field(description="why the last check could not match, if it failed")


class SubscriptionList(BaseModel):
    subscriptions: list[SubscriptionOut]


class AttemptOut(BaseModel):
    attempt: int
    at: str
    seconds: float = Field(description="how long the POST took")
    status_code: int | None = Field(description="the receiver's status; null if none answered")
    error: str | None = Field(description="null when the receiver answered 2xx")


class DeliveryOut(BaseModel):
    event_id: str
    generation: str
    matches: int = Field(description="new matches the event carries")
    created_at: str
    state: Literal["pending", "delivered", "failed"]
    delivered_at: str | None
    next_attempt_at: str | None = Field(description="when a pending event is tried again")
    attempts: list[AttemptOut]


class DeliveryList(BaseModel):
    deliveries: list[DeliveryOut]


# --- procurement needs -----------------------------------------------------------------------

CPV_CODE = r"^[0-9]{8}(-[0-9])?$"
CpvCode = Annotated[str, StringConstraints(pattern=CPV_CODE)]

NEED_EXAMPLE: dict[str, Any] = {
    "need": {
        "title": "Predictive maintenance for the city's tram fleet",
        "text": "The transport authority seeks a solution that monitors the wear of tram "
        "wheels and rails with sensors mounted on the vehicles. Measurements must be analysed "
        "with machine learning to predict failures weeks in advance. The system must integrate "
        "with the existing maintenance planning software.",
        "cpv_codes": ["34630000", "72212000"],
        "country": "AT",
        "region": "AT31",
    },
    "limit": 10,
    "team_size": 3,
}


class NeedIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: str = Field(default="", max_length=500)
    text: str = Field(
        min_length=1,
        max_length=20_000,
        json_schema_extra=NOT_BLANK,
        description="the need in any language the model reads; its sentences are its aspects",
    )
    language: str | None = Field(
        default=None, pattern=r"^[a-z]{2}$", description="ISO 639-1; detected when absent"
    )
    cpv_codes: list[CpvCode] = Field(
        default_factory=list,
        max_length=50,
        description="CPV codes of the procurement, e.g. 34630000 or 34630000-2 (kept with the "
        "need and echoed; they do not change scores)",
    )
    country: Country | None = Field(default=None, description="the buyer's country")
    region: Region | None = Field(default=None, description="the buyer's NUTS region")

    @model_validator(mode="before")
    @classmethod
    def _codes_are_text(cls, data: Any) -> Any:
        # The code validators read any value as text: `false` would become the region "FALSE".
        if isinstance(data, dict):
            for name in ("country", "region"):
                if data.get(name) is not None and not isinstance(data[name], str):
                    raise ValueError(f"{name}: give a string")
        return data


class NeedRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [NEED_EXAMPLE]})

    need: NeedIn
    limit: int = Field(default=10, ge=1, le=100, description="how many suppliers")
    filters: BodyFilters = Field(default_factory=BodyFilters)
    team_size: int = Field(default=3, ge=2, le=4, description="the largest consortium proposed")


class AspectEvidenceOut(BaseModel):
    aspect: int = Field(description="index into `aspects` of the aspect this passage answers")
    document_id: str
    document_kind: str
    text: str
    score: float = Field(description="the passage's similarity to the aspect")


class SupplierOut(BaseModel):
    actor: ActorSummaryOut
    score: float = Field(description="how well the actor answers the need as a whole")
    covers: list[int] = Field(description="aspects it answers above the model's threshold")
    evidence: list[AspectEvidenceOut] = Field(description="its best passage per covered aspect")
    same_passage: list[ActorSummaryOut] = Field(
        default_factory=list,
        description="further actors whose best evidence is this very passage (typically the "
        "partners of one project, who share its text): one supplier, not N",
    )


class MemberOut(BaseModel):
    actor: ActorSummaryOut
    covers: list[int]
    evidence: list[AspectEvidenceOut]


class ConsortiumOut(BaseModel):
    members: list[MemberOut]
    covered: list[int]
    uncovered: list[int]
    score: float = Field(description="mean over all aspects of the team's best similarity")


class NeedResponse(BaseModel):
    suppliers: list[SupplierOut]
    consortia: list[ConsortiumOut]
    aspects: list[str]
    cover_threshold: float = Field(
        description="the similarity from which a passage covers an aspect (per model)"
    )
    cover_margin: float | None = Field(
        description="for models whose scores sit in a narrow band: a covering passage also lies "
        "this close to the aspect's best"
    )
    generation: str
    model: str


def _aspect_evidence(items: Sequence[AspectEvidence]) -> list[AspectEvidenceOut]:
    return [
        AspectEvidenceOut(
            aspect=item.aspect,
            document_id=item.evidence.document_id,
            document_kind=item.evidence.document_kind,
            text=item.evidence.text,
            score=item.evidence.score,
        )
        for item in items
    ]


def need_out(result: NeedResult) -> NeedResponse:
    return NeedResponse(
        suppliers=[
            SupplierOut(
                actor=summary_out(s.actor),
                score=s.score,
                covers=list(s.covers),
                evidence=_aspect_evidence(s.evidence),
                same_passage=[summary_out(a) for a in s.also],
            )
            for s in result.suppliers
        ],
        consortia=[
            ConsortiumOut(
                members=[
                    MemberOut(
                        actor=summary_out(m.actor),
                        covers=list(m.covers),
                        evidence=_aspect_evidence(m.evidence),
                    )
                    for m in c.members
                ],
                covered=list(c.covered),
                uncovered=list(c.uncovered),
                score=c.score,
            )
            for c in result.consortia
        ],
        aspects=result.aspects,
        cover_threshold=result.coverage.above,
        cover_margin=result.coverage.margin,
        generation=result.generation,
        model=result.model,
    )


# --- bridge reports ----------------------------------------------------------------------------


class SideOut(BaseModel):
    kind: Literal["country", "region", "cluster"]
    value: str
    actors: int = Field(description="actors of the served generation on this side")


class PassageOut(BaseModel):
    document_id: str
    document_kind: str
    text: str | None = Field(description="null where the caller may not see it")


class BridgePairOut(BaseModel):
    a: ActorSummaryOut = Field(description="the actor on the `from` side")
    b: ActorSummaryOut = Field(description="the actor on the `to` side")
    score: float
    a_passage: PassageOut
    b_passage: PassageOut
    key_terms: list[str]
    a_also: list[ActorSummaryOut] = Field(
        default_factory=list, description="more `from` actors with this very passage"
    )
    b_also: list[ActorSummaryOut] = Field(
        default_factory=list, description="more `to` actors with this very passage"
    )


class ThemeOut(BaseModel):
    term: str
    a_actors: int = Field(description="actors of the `from` side using it")
    b_actors: int = Field(description="actors of the `to` side using it")
    a_share: float
    b_share: float
    kinds: dict[str, int] = Field(description="document kinds of the passages using it")
    pairs: int = Field(description="cross pairs found whose passages share it")


class BridgeReportOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    source: SideOut = Field(alias="from")
    target: SideOut = Field(alias="to")
    pairs: list[BridgePairOut]
    candidate_pairs: int = Field(description="cross pairs the matching found")
    known_partnerships: int = Field(
        description="pairs across the sides that already work together (their `partners`), "
        "left out of `pairs`"
    )
    connecting: list[ThemeOut] = Field(description="themes used on both sides")
    only_from: list[ThemeOut] = Field(description="themes of the `from` side absent on `to`")
    only_to: list[ThemeOut] = Field(description="themes of the `to` side absent on `from`")
    document_kinds: dict[str, dict[str, int]] = Field(description="per side (`from`, `to`)")
    generation: str
    model: str
    created_at: str


def bridge_out(report: BridgeReport) -> BridgeReportOut:
    def theme(t: Theme) -> ThemeOut:
        return ThemeOut.model_validate(asdict(t))

    def passage(p: Passage) -> PassageOut:
        return PassageOut.model_validate(asdict(p))

    return BridgeReportOut(
        source=SideOut(kind=report.a.kind, value=report.a.value, actors=report.a_actors),
        target=SideOut(kind=report.b.kind, value=report.b.value, actors=report.b_actors),
        pairs=[
            BridgePairOut(
                a=summary_out(p.a),
                b=summary_out(p.b),
                score=p.score,
                a_passage=passage(p.a_passage),
                b_passage=passage(p.b_passage),
                key_terms=list(p.key_terms),
                a_also=[summary_out(x) for x in p.a_also],
                b_also=[summary_out(x) for x in p.b_also],
            )
            for p in report.pairs
        ],
        candidate_pairs=report.candidate_pairs,
        known_partnerships=report.known_partnerships,
        connecting=[theme(t) for t in report.connecting],
        only_from=[theme(t) for t in report.only_a],
        only_to=[theme(t) for t in report.only_b],
        document_kinds={"from": report.a_kinds, "to": report.b_kinds},
        generation=report.generation,
        model=report.model,
        created_at=report.created_at,
    )
