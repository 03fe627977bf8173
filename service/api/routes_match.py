"""/v1/match and /v1/search: the two ways to ask for actors."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query

from service.api.convert import actor_filter, facets, split_values
from service.api.deps import Reader, ServicesDep
from service.api.schemas import (
    PROFILE_EXAMPLE,
    Filters,
    MatchRequest,
    MatchResponse,
    SearchResponse,
    match_out,
    problem_responses,
)
from service.domain import Actor

router = APIRouter(
    prefix="/v1", tags=["matching"], responses=problem_responses(401, 403, 404, 422, 503)
)

QUERY_PROFILE_ID = "query-profile"
"""Id given to a POSTed profile that has none (it is never stored)."""


@router.post(
    "/match",
    response_model=MatchResponse,
    summary="Match suggestions for a profile (not stored) or a stored actor",
    description="Scores are cosine similarities of the query's passages with each actor's "
    "passages, aggregated per actor (see README: Scores). They are comparable within one "
    "response. `evidence` lists the actor's best passages the caller may see.",
)
def match(
    body: Annotated[
        MatchRequest,
        Body(
            openapi_examples={
                "stored actor": {
                    "summary": "similar actors abroad for a stored actor",
                    "value": {
                        "actor_id": "pic:991776016",
                        "limit": 10,
                        "exclude_same": ["country"],
                    },
                },
                "profile": {
                    "summary": "research partners for a profile that is not stored",
                    "value": {
                        "profile": PROFILE_EXAMPLE,
                        "limit": 20,
                        "filters": {"kinds": ["research", "university"]},
                        "exclude_actors": ["pic:999984059"],
                        "explain": True,
                    },
                },
            }
        ),
    ],
    services: ServicesDep,
    principal: Reader,
) -> MatchResponse:
    matcher = services.runtime.matcher
    filters = actor_filter(body.filters, body.exclude_same, body.exclude_actors)
    if body.actor_id is not None:
        result = matcher.match_actor(
            body.actor_id,
            limit=body.limit,
            filters=filters,
            viewer=principal.viewer,
            mode=body.mode,
            diversify=body.diversify,
        )
    else:
        assert body.profile is not None
        data = body.profile.model_dump()
        actor = Actor.parse({**data, "id": data.get("id") or QUERY_PROFILE_ID})
        result = matcher.match_profile(
            actor,
            limit=body.limit,
            filters=filters,
            viewer=principal.viewer,
            mode=body.mode,
            diversify=body.diversify,
        )
    if body.explain:
        result = matcher.explain(result)
    return MatchResponse(
        matches=[match_out(m, body.explain) for m in result.matches],
        generation=result.generation,
        model=result.model,
    )


@router.get(
    "/search",
    response_model=SearchResponse,
    summary="Free-text search for actors, with facet counts of the results",
)
def search(
    services: ServicesDep,
    principal: Reader,
    q: Annotated[str, Query(min_length=1, max_length=2_000, examples=["offshore wind blades"])],
    limit: Annotated[int, Query(ge=1, le=200)] = 10,
    country: Annotated[list[str] | None, Query()] = None,
    region: Annotated[list[str] | None, Query()] = None,
    kind: Annotated[list[str] | None, Query()] = None,
    sector: Annotated[list[str] | None, Query()] = None,
    cluster: Annotated[list[str] | None, Query()] = None,
    explain: bool = False,
    diversify: bool = False,
) -> SearchResponse:
    filters = Filters(
        countries=split_values(country),
        regions=split_values(region),
        kinds=split_values(kind),
        sectors=split_values(sector),
        clusters=split_values(cluster),
    )
    result = services.runtime.matcher.search(
        q, limit=limit, filters=actor_filter(filters), viewer=principal.viewer, diversify=diversify
    )
    if explain:
        result = services.runtime.matcher.explain(result)
    results = [match_out(m, explain) for m in result.matches]
    return SearchResponse(
        results=results, facets=facets(results), generation=result.generation, model=result.model
    )
