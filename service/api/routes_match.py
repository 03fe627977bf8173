"""/v1/match and /v1/search: the two ways to ask for actors."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query

from service.api.deps import Reader, RequestDeadline, ServicesDep, reject_unknown_query
from service.api.personal import searching_for, tailored
from service.api.schemas import (
    PROFILE_EXAMPLE,
    SEARCH_QUERY_CHARACTERS,
    MatchRequest,
    MatchResponse,
    SearchResponse,
    match_out,
    problem_responses,
)
from service.domain import Actor
from service.filters import ClusterIds, Countries, Filters, Kinds, Regions, Sectors
from service.store import SameAttribute

router = APIRouter(
    prefix="/v1",
    tags=["matching"],
    responses=problem_responses(401, 403, 404, 422, 503),
    dependencies=[Depends(reject_unknown_query)],
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
                        "filters": {"kind": ["research", "university"]},
                        "exclude_actors": ["pic:999984059"],
                        "explain": True,
                    },
                },
            }
        ),
    ],
    services: ServicesDep,
    principal: Reader,
    deadline: RequestDeadline,
) -> MatchResponse:
    with services.turns.turn(deadline):
        matcher = services.runtime.matcher
        filters = tailored(
            body.filters.to_actor_filter(body.exclude_same, body.exclude_actors),
            services.runtime.store,
            principal,
            for_actor=body.actor_id,
            new_contacts_only=body.new_contacts_only,
            partners=body.profile.partners if body.profile else (),
        )
        if body.actor_id is not None:
            result = matcher.match_actor(
                body.actor_id,
                limit=body.limit,
                filters=filters,
                viewer=principal.viewer,
                mode=body.mode,
                diversify=body.diversify,
                collapse=body.collapse,
                deadline=deadline,
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
                collapse=body.collapse,
                deadline=deadline,
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
    deadline: RequestDeadline,
    q: Annotated[
        str,
        Query(min_length=1, max_length=SEARCH_QUERY_CHARACTERS, examples=["offshore wind blades"]),
    ],
    limit: Annotated[int, Query(ge=1, le=200)] = 10,
    country: Annotated[Countries | None, Query()] = None,
    region: Annotated[Regions | None, Query()] = None,
    kind: Annotated[Kinds | None, Query()] = None,
    sector: Annotated[Sectors | None, Query()] = None,
    cluster: Annotated[ClusterIds | None, Query()] = None,
    explain: bool = False,
    diversify: bool = False,
    collapse: Annotated[
        bool,
        Query(description="one suggestion for actors sharing their best passage (`same_passage`)"),
    ] = True,
    for_actor: Annotated[
        str | None, Query(description="search on behalf of this stored actor (never returned)")
    ] = None,
    exclude_same: Annotated[
        list[SameAttribute] | None,
        Query(description="with `for_actor`: drop actors sharing this with it"),
    ] = None,
    new_contacts_only: Annotated[
        bool,
        Query(
            description="leave out known contacts: `for_actor`'s partners and the tenant's "
            "`contacted`/`met` feedback"
        ),
    ] = False,
) -> SearchResponse:
    filters = Filters(
        country=country or [],
        region=region or [],
        kind=kind or [],
        sector=sector or [],
        cluster=cluster or [],
    )
    matcher = services.runtime.matcher
    # Embedded before the turn, so the queries of searches waiting for one share a model call;
    # the rest, like a match, inside it (Matcher.embed_query).
    query = matcher.embed_query(q, deadline)
    with services.turns.turn(deadline):
        store = services.runtime.store
        chosen = searching_for(filters.to_actor_filter(exclude_same or ()), store, for_actor)
        chosen = tailored(
            chosen,
            store,
            principal,
            for_actor=for_actor,
            query=q,
            new_contacts_only=new_contacts_only,
        )
        result = matcher.search(
            query,
            limit=limit,
            filters=chosen,
            viewer=principal.viewer,
            diversify=diversify,
            collapse=collapse,
            deadline=deadline,
        )
        if explain:
            result = matcher.explain(result)
    return SearchResponse(
        results=[match_out(m, explain) for m in result.matches],
        facets=result.facets,
        facets_over=result.facets_over,
        weak=result.weak,
        reason=result.reason,
        generation=result.generation,
        model=result.model,
    )
