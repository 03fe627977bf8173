"""Request and response bodies of the HTTP API (the contract other systems integrate against).

Profiles reuse the domain models (`service.domain`), so the API validates exactly what the CLI
validates. Field names here are part of the public contract: add fields, never rename.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.domain import ActorSummary, Document, Identifier, Match, ProfileFields
from service.filters import Filters
from service.store import SameAttribute

SEARCH_QUERY_CHARACTERS = 2_000
"""The longest `q` that `GET /v1/search` accepts."""

PROFILE_EXAMPLE: dict[str, Any] = {
    "name": "ACME Composites GmbH",
    "kind": "company",
    "country": "AT",
    "region": "AT31",
    "sectors": ["C22.2", "C28"],
    "clusters": ["plastics-cluster-upper-austria"],
    "url": "https://acme.example",
    "documents": [
        {
            "id": "about",
            "kind": "description",
            "text": "We design and manufacture fibre-reinforced composite rotor blades for "
            "offshore wind turbines and test their fatigue behaviour.",
        },
        {
            "id": "ws-2026-03",
            "kind": "workshop_note",
            "language": "de",
            "visibility": "network",
            "text": "Im Workshop wurde Bedarf an Recyclingverfahren für Rotorblätter genannt.",
        },
    ],
}


class ProfileIn(ProfileFields):
    """An actor profile; `id` may be omitted where the path or the context gives it."""

    model_config = ConfigDict(json_schema_extra={"examples": [PROFILE_EXAMPLE]})

    id: Identifier | None = None


class ActorOut(BaseModel):
    """A stored profile as the caller may see it: documents hidden from the caller are left out
    and counted in `hidden_documents`."""

    id: str
    name: str
    kind: str
    country: str | None
    region: str | None
    sectors: list[str]
    clusters: list[str]
    url: str | None
    documents: list[Document]
    hidden_documents: int = 0
    partners: list[str] = Field(
        default_factory=list, description="ids of actors it has already worked with"
    )


class Matchable(BaseModel):
    as_query: bool = Field(description="the actor can be used as a match query right now")
    as_candidate: bool = Field(
        description="the actor can be returned as a match for others right now; otherwise it "
        "will be after the next index rebuild"
    )


class PutResult(BaseModel):
    id: str
    status: Literal["created", "replaced"]
    matchable: Matchable
    pending_changes: int


class ActorSummaryOut(BaseModel):
    id: str
    name: str
    kind: str
    country: str | None
    region: str | None
    sectors: list[str]


class ActorList(BaseModel):
    actors: list[ActorSummaryOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null at end")
    total: int = Field(description="actors matching the filters, over all pages")


class LineResult(BaseModel):
    line: int = Field(description="1-based line (NDJSON) or array position (JSON array)")
    id: str | None
    status: Literal["created", "replaced", "rejected"]
    error: str | None = None


class BulkResult(BaseModel):
    created: int
    replaced: int
    rejected: int
    results: list[LineResult]


class MatchRequest(BaseModel):
    """Match a profile (not stored) or a stored actor against the index."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"actor_id": "pic:991776016", "limit": 10, "exclude_same": ["country"]},
                {"profile": PROFILE_EXAMPLE, "limit": 20, "filters": {"kind": ["research"]}},
            ],
            # What `_one_query` checks, said in the schema so generated clients know it too.
            # (null counts as not given).
            "oneOf": [
                {"required": ["profile"], "properties": {"profile": {"type": "object"}}},
                {"required": ["actor_id"], "properties": {"actor_id": {"type": "string"}}},
            ],
        },
    )

    profile: ProfileIn | None = Field(default=None, description="a profile to match (not stored)")
    actor_id: Identifier | None = Field(default=None, description="a stored actor to match")
    limit: int = Field(default=10, ge=1, le=200)
    filters: Filters = Field(default_factory=Filters)
    exclude_same: list[SameAttribute] = Field(default_factory=list)
    exclude_actors: list[str] = Field(
        default_factory=list,
        max_length=5_000,
        description="ids the caller already knows (e.g. existing partners): never returned, "
        "and `limit` is still filled",
    )
    explain: bool = Field(default=False, description="add the query passage to each evidence")
    mode: Literal["similar", "complement"] = Field(
        default="similar",
        description="`similar`: like against like. `complement`: the query's documents with "
        "`intent: need` against other actors' offers and competences (their needs are ignored)",
    )
    collapse: bool = Field(
        default=True,
        description="actors whose best evidence is the same passage (partners of one project) "
        "form one suggestion, listed in `same_passage`; false lists each on its own",
    )
    diversify: bool = Field(
        default=False,
        description="re-rank by maximal marginal relevance so the list is not near-copies "
        "(same kind, country, region, sectors or best passage)",
    )
    new_contacts_only: bool = Field(
        default=False,
        description="leave out the actor's `partners` and the actors the key's tenant marked "
        "`contacted` or `met` for it (POST /v1/feedback)",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_query(cls, data: Any) -> Any:
        if isinstance(data, dict):
            given = [k for k in ("profile", "actor_id") if data.get(k) is not None]
            if len(given) != 1:
                raise ValueError("give exactly one of `profile` and `actor_id`")
        return data


class EvidenceOut(BaseModel):
    document_id: str
    document_kind: str
    text: str
    score: float
    query_text: str | None = Field(
        default=None, description="with `explain`: the query passage this evidence answers"
    )
    key_terms: list[str] | None = Field(
        default=None,
        description="with `explain`: terms both passages use (lemmatised), most telling first",
    )


class MatchOut(BaseModel):
    actor: ActorSummaryOut
    score: float = Field(
        description="the rank score, in cosine units; comparable within one response only. "
        "Where actor matching also weighs non-text signals (the partner network, an activity "
        "prior) it is the text score moved by them, and `similarity` holds the text score alone"
    )
    similarity: float | None = Field(
        default=None,
        description="the text score alone (cosine-based), where `score` also holds non-text "
        "signals; absent otherwise (then `score` is the text score)",
    )
    shared_partners: list[str] = Field(
        default_factory=list,
        description="ids of known partners of both the query actor and this one (at most 5): "
        "people who could introduce the two",
    )
    shared_partner_names: list[str] = Field(
        default_factory=list, description="the names of `shared_partners`, in the same order"
    )
    evidence: list[EvidenceOut]
    same_passage: list[ActorSummaryOut] = Field(
        default_factory=list,
        description="further actors whose best evidence is this very passage (typically the "
        "partners of one project, who share its text): shown as one suggestion, not as N",
    )


class MatchResponse(BaseModel):
    matches: list[MatchOut]
    generation: str
    model: str


class SearchResponse(BaseModel):
    results: list[MatchOut]
    facets: dict[str, dict[str, int]] = Field(
        description="counts per country, kind and sector over the ranked pool of eligible "
        "actors (the `facets_over` best-scoring ones that pass the filters), not only this page"
    )
    facets_over: int = Field(description="how many actors the facet counts cover")
    weak: bool = Field(
        default=False,
        description="true when nothing fits: no passage is close enough by meaning (below the "
        "model's calibrated floor) and none shares an exact term; `results` is then empty",
    )
    reason: str | None = Field(default=None, description="why `weak`, in words")
    generation: str
    model: str


class IndexStatus(BaseModel):
    state: Literal["ready", "building", "empty"]
    generation: str | None
    model: str
    actors: int
    chunks: int
    built_at: str | None
    pending_changes: int = Field(description="actor writes and deletes since the generation")


class Job(BaseModel):
    id: str
    state: Literal["queued", "running", "succeeded", "failed"]
    started_at: str | None = None
    finished_at: str | None = None
    generation: str | None = None
    error: str | None = None
    report: dict[str, Any] | None = None


class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """An error, as `application/problem+json` (RFC 9457)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer with."""
    described = {
        401: "no or unknown API key",
        403: "the key lacks the scope, or the actor belongs to another tenant",
        404: "unknown actor or job",
        409: "conflicts with the current state (e.g. a rebuild is running)",
        413: "request body or bulk size over its limit",
        422: "invalid input; `errors` names each field",
        429: "this API key sent too many requests; `Retry-After` says when to try again",
        503: "the index on disk does not fit the configured model or is damaged, or the "
        "request ran past its time limit",
    }
    return {
        code: {
            "model": Problem,
            "description": described[code],
            "content": {"application/problem+json": {}},
        }
        for code in statuses
    }


def summary_out(actor: ActorSummary) -> ActorSummaryOut:
    return ActorSummaryOut(
        id=actor.id,
        name=actor.name,
        kind=actor.kind,
        country=actor.country,
        region=actor.region,
        sectors=list(actor.sectors),
    )


def match_out(match: Match, explain: bool) -> MatchOut:
    return MatchOut(
        actor=summary_out(match.actor),
        score=match.score,
        similarity=match.similarity,
        shared_partners=list(match.shared_partners),
        shared_partner_names=list(match.shared_partner_names),
        same_passage=[summary_out(a) for a in match.also],
        evidence=[
            EvidenceOut(
                document_id=e.document_id,
                document_kind=e.document_kind,
                text=e.text,
                score=e.score,
                query_text=e.query_text if explain else None,
                key_terms=list(e.key_terms) if explain else None,
            )
            for e in match.evidence
        ],
    )
