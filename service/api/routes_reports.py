"""/v1/reports/bridges: a bridge report between two sides, as JSON or as the HTML page."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse

from service.api.deps import Reader, ServicesDep, reject_unknown_query
from service.api.schemas import problem_responses
from service.api.schemas_workflows import BridgeReportOut, bridge_out
from service.bridges import parse_side

router = APIRouter(
    prefix="/v1/reports",
    tags=["reports"],
    responses=problem_responses(401, 403, 422, 503),
    dependencies=[Depends(reject_unknown_query)],
)
SIDE = (
    "`country:AT`, `region:AT31` (NUTS, any level) or `cluster:<id>`; a bare value is a country "
    "when it is a country code, a region when it is a longer NUTS code, else a cluster id"
)
SIDE_PATTERN = r"^((country|region|cluster):)?[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$"


@router.get(
    "/bridges",
    response_model=BridgeReportOut,
    summary="Bridges between two clusters, regions or countries: pairs and themes",
    description="The strongest cross pairs (from the service's matching, with each side's "
    "passage and their shared key terms), the competence themes both sides use, and those one "
    "side uses and the other does not, on the served generation. `format=html` answers the "
    "self-contained page (with its plot) that `clustermatch report bridges` writes. Only text "
    "the caller may see is quoted or counted.",
    responses={200: {"content": {"text/html": {}}}},
)
def bridges(
    services: ServicesDep,
    principal: Reader,
    source: Annotated[
        str, Query(alias="from", max_length=140, pattern=SIDE_PATTERN, description=SIDE)
    ],
    target: Annotated[
        str, Query(alias="to", max_length=140, pattern=SIDE_PATTERN, description=SIDE)
    ],
    pairs: Annotated[int, Query(ge=1, le=50)] = 12,
    themes: Annotated[int, Query(ge=1, le=50)] = 12,
    format: Literal["json", "html"] = "json",
) -> BridgeReportOut | HTMLResponse:
    runtime = services.runtime
    report = runtime.bridges.report(
        parse_side(source, "from"),
        parse_side(target, "to"),
        runtime.index.snapshot(),
        pairs=pairs,
        themes=themes,
        viewer=principal.viewer,
    )
    if format == "html":
        from service.bridge_report import plot_png, render_html

        return HTMLResponse(render_html(report, plot_png(report)))
    return bridge_out(report)
