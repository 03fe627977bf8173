"""/v1/map: the competence map of the served generation (see `service.projection`)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from service.api.deps import Reader, ServicesDep
from service.api.schemas import problem_responses, summary_out
from service.api.schemas_workspace import CompetenceMap, MapPoint

router = APIRouter(prefix="/v1", tags=["map"], responses=problem_responses(401, 403, 503))


@router.get(
    "/map",
    response_model=CompetenceMap,
    summary="Every actor as a point in 2-D: a projection of its profile vector",
    description="An actor's profile vector is the mean of its passage vectors; the projection "
    "(t-SNE by default, `CLUSTERMATCH_MAP_METHOD`) is computed once per generation. The first "
    "request after a rebuild answers 202 with `state: computing` while it is made.",
    responses={202: {"model": CompetenceMap, "description": "being computed; ask again"}},
)
def competence_map(services: ServicesDep, _: Reader, response: Response) -> CompetenceMap:
    runtime = services.runtime
    generation = runtime.index.get()
    if generation is None or generation.is_empty:  # nothing built yet: no vectors to project
        return CompetenceMap(state="empty", generation=None, model=None, method=None, points=[])
    manifest = generation.manifest
    projection = runtime.maps.get_or_start(manifest)
    if projection is None:
        response.status_code = status.HTTP_202_ACCEPTED
        response.headers["Retry-After"] = "2"
        return CompetenceMap(
            state="computing",
            generation=manifest.generation,
            model=manifest.model_id,
            method=runtime.maps.method,
            points=[],
        )
    summaries = runtime.store.actor_summaries(projection.ids)
    points = [
        MapPoint(**summary_out(s).model_dump(), clusters=list(s.clusters), x=x, y=y)
        for actor_id, (x, y) in zip(projection.ids, projection.xy, strict=True)
        if (s := summaries.get(actor_id)) is not None
    ]
    return CompetenceMap(
        state="ready",
        generation=projection.generation,
        model=projection.model_id,
        method=projection.method,
        points=points,
    )
