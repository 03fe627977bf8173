"""/v1/needs/match: a procurement need to suppliers and consortia (see `service.needs`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends

from service.api.deps import Reader, RequestDeadline, ServicesDep, reject_unknown_query
from service.api.schemas import problem_responses
from service.api.schemas_workflows import NEED_EXAMPLE, NeedRequest, NeedResponse, need_out
from service.needs import Need

router = APIRouter(
    prefix="/v1/needs",
    tags=["needs"],
    responses=problem_responses(401, 403, 422, 503),
    dependencies=[Depends(reject_unknown_query)],
)


@router.post(
    "/match",
    response_model=NeedResponse,
    summary="Suppliers and consortia for a procurement need, with evidence per aspect",
    description="The need's text (any language the model reads) is split into `aspects`, its "
    "sentences. `suppliers` are actors whose offers and competences answer the need (its needs "
    "against their offers: complement matching), ranked as a whole, each with its best passage "
    "per aspect it covers. `consortia` are teams of 2 to `team_size` actors found by a greedy "
    "set cover of the aspects, with the aspects each member covers and those nobody covers. An "
    "aspect counts as covered from `cover_threshold`, calibrated per model. Evidence shows only "
    "what the key's tenant may see.",
)
def match_need(
    body: Annotated[NeedRequest, Body(openapi_examples={"tram fleet": {"value": NEED_EXAMPLE}})],
    services: ServicesDep,
    principal: Reader,
    deadline: RequestDeadline,
) -> NeedResponse:
    need = body.need
    with services.turns.turn(deadline):  # the budget bounds the wait (needs have no checkpoints)
        result = services.runtime.needs.match(
            Need(
                text=need.text,
                title=need.title,
                language=need.language,
                cpv_codes=tuple(need.cpv_codes),
                country=need.country,
                region=need.region,
            ),
            limit=body.limit,
            filters=body.filters.to_actor_filter(),
            team_size=body.team_size,
            viewer=principal.viewer,
        )
    return need_out(result)
