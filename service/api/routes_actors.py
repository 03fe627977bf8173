"""/v1/actors: create, read, replace, delete, list and bulk-import actor profiles."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from service.api.convert import CURSOR_PATTERN, decode_cursor, encode_cursor
from service.api.deps import (
    Reader,
    RequestDeadline,
    ServicesDep,
    Writer,
    reject_unknown_query,
    who_is,
)
from service.api.personal import tailored
from service.api.schemas import (
    PROFILE_EXAMPLE,
    ActorList,
    ActorOut,
    BulkResult,
    LineResult,
    Matchable,
    MatchResponse,
    ProfileIn,
    PutResult,
    match_out,
    problem_responses,
    summary_out,
)
from service.domain import IDENTIFIER, Actor
from service.errors import FieldProblem, Forbidden, InvalidInput, NotFound, TooLarge
from service.filters import ClusterIds, Countries, Filters, Kinds
from service.keys import Principal
from service.names import lookup
from service.store import SameAttribute

ActorId = Annotated[str, Path(pattern=IDENTIFIER, description="the actor's id")]

router = APIRouter(
    prefix="/v1/actors",
    tags=["actors"],
    responses=problem_responses(401, 403, 404, 413, 422),
    dependencies=[Depends(reject_unknown_query)],
)


def _check_owner(services: ServicesDep, principal: Principal, actor_id: str) -> bool:
    """True when the actor exists; Forbidden when it belongs to another tenant."""
    owner = services.runtime.store.get_owner(actor_id)
    if owner is None:
        return False
    if not (principal.is_operator or principal.has("admin") or owner.tenant == principal.tenant):
        raise Forbidden(f"actor {actor_id!r} belongs to another tenant")
    return True


@router.put(
    "/{actor_id}",
    response_model=PutResult,
    status_code=status.HTTP_200_OK,
    responses={
        201: {"model": PutResult, "description": "created"},
        200: {"description": "replaced"},
    },
    summary="Create or replace an actor with its documents",
)
def put_actor(
    actor_id: ActorId,
    profile: Annotated[ProfileIn, Body(openapi_examples={"company": {"value": PROFILE_EXAMPLE}})],
    services: ServicesDep,
    principal: Writer,
    response: Response,
) -> PutResult:
    if profile.id is not None and profile.id != actor_id:
        raise InvalidInput(
            [FieldProblem("id", f"{profile.id!r} differs from the path {actor_id!r}")]
        )
    actor = Actor.parse({**profile.model_dump(exclude={"id"}), "id": actor_id})
    _check_owner(services, principal, actor_id)
    (created,) = services.runtime.ingestor.upsert([actor], principal.owner, who_is(principal))
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return PutResult(
        id=actor_id,
        status="created" if created else "replaced",
        matchable=Matchable(as_query=True, as_candidate=services.runtime.is_candidate(actor_id)),
        pending_changes=services.runtime.pending_changes(),
    )


@router.get("/{actor_id}", response_model=ActorOut, summary="The stored profile of an actor")
def get_actor(actor_id: ActorId, services: ServicesDep, principal: Reader) -> ActorOut:
    actor = services.runtime.store.get_actor(actor_id)
    owner = services.runtime.store.get_owner(actor_id)
    if actor is None or owner is None:
        raise NotFound(f"actor {actor_id!r} does not exist")
    viewer = principal.viewer
    shown = [d for d in actor.documents if viewer.can_see(d.visibility, owner)]
    return ActorOut(
        id=actor.id,
        name=actor.name,
        kind=actor.kind.value,
        country=actor.country,
        region=actor.region,
        sectors=list(actor.sectors),
        clusters=list(actor.clusters),
        url=actor.url,
        documents=shown,
        hidden_documents=len(actor.documents) - len(shown),
        partners=list(actor.partners),
    )


@router.delete(
    "/{actor_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Erase an actor and its documents; it leaves every result at once",
)
def delete_actor(actor_id: ActorId, services: ServicesDep, principal: Writer) -> Response:
    if not _check_owner(services, principal, actor_id):
        raise NotFound(f"actor {actor_id!r} does not exist")
    services.runtime.delete_actor(actor_id, who_is(principal))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "",
    response_model=ActorList,
    summary="List actors, cursor-paginated by id, or look them up by name (`q`)",
    description="Without `q`: every actor passing the filters, by id, a page at a time. With `q`: "
    "actors whose id is `q`, whose name starts with it, has a word starting with it, or is "
    "close to it (typos, word order), best first; one page of `limit`, no cursor.",
)
def list_actors(
    services: ServicesDep,
    _: Reader,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        str | None,
        Query(pattern=CURSOR_PATTERN, description="`next_cursor` of the previous page"),
    ] = None,
    country: Annotated[Countries | None, Query()] = None,
    kind: Annotated[Kinds | None, Query()] = None,
    cluster: Annotated[ClusterIds | None, Query()] = None,
    q: Annotated[
        str | None, Query(min_length=1, max_length=500, examples=["IBK-INNOVATION"])
    ] = None,
) -> ActorList:
    if q is not None:
        page = lookup(
            services.runtime.names,
            services.runtime.store,
            q,
            limit,
            countries=country or [],
            kinds=kind or [],
            clusters=cluster or [],
        )
    else:
        page = services.runtime.store.list_actors(
            limit,
            after=decode_cursor(cursor),
            countries=country or [],
            kinds=kind or [],
            clusters=cluster or [],
        )
    return ActorList(
        actors=[summary_out(a) for a in page.actors],
        next_cursor=encode_cursor(page.next_cursor),
        total=page.total,
    )


@router.post(
    "/bulk",
    response_model=BulkResult,
    summary="Import many profiles (NDJSON or a JSON array); valid lines are stored",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-ndjson": {"schema": {"type": "string", "minLength": 1}},
                # Any items: each is validated on its own and, if bad, reported on its line.
                "application/json": {"schema": {"type": "array", "items": {}, "minItems": 1}},
            },
        }
    },
)
async def bulk_import(request: Request, services: ServicesDep, principal: Writer) -> BulkResult:
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput([FieldProblem("body", "must be UTF-8 text")]) from None
    as_json = request.headers.get("content-type", "").startswith("application/json")
    if as_json and not text.lstrip().startswith("["):
        raise InvalidInput([FieldProblem("body", "as application/json, a JSON array")])
    lines = _lines(text)
    if not any(line.strip() for line in lines):
        raise InvalidInput([FieldProblem("body", "holds no profile (NDJSON lines or an array)")])
    limit = services.runtime.settings.max_bulk_lines
    if len(lines) > limit:
        raise TooLarge(f"{len(lines)} profiles in one request; the limit is {limit}")
    # Chunking and writing are CPU- and IO-bound: keep them off the event loop.
    report = await run_in_threadpool(
        services.runtime.ingestor.ingest_lines, lines, None, principal.owner, who_is(principal)
    )
    return BulkResult(
        created=report.created,
        replaced=report.replaced,
        rejected=len(report.errors),
        results=[
            LineResult(line=o.line, id=o.actor_id, status=o.status, error=o.message)
            for o in report.outcomes
        ],
    )


def _lines(text: str) -> list[str]:
    """NDJSON lines, or the elements of a JSON array re-serialised one per line."""
    import json

    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput([FieldProblem("body", f"not a JSON array: {exc.msg}")]) from None
        return [json.dumps(item) for item in items]
    return text.splitlines()


@router.get(
    "/{actor_id}/matches",
    response_model=MatchResponse,
    summary="Actors similar to a stored actor (never the actor itself)",
    responses=problem_responses(503),
)
def actor_matches(
    actor_id: ActorId,
    services: ServicesDep,
    principal: Reader,
    deadline: RequestDeadline,
    limit: Annotated[int, Query(ge=1, le=200)] = 10,
    exclude_same: Annotated[list[SameAttribute] | None, Query()] = None,
    country: Annotated[Countries | None, Query()] = None,
    kind: Annotated[Kinds | None, Query()] = None,
    explain: bool = False,
    diversify: bool = False,
    collapse: Annotated[
        bool,
        Query(description="one suggestion for actors sharing their best passage (`same_passage`)"),
    ] = True,
    mode: Literal["similar", "complement"] = "similar",
    new_contacts_only: Annotated[
        bool, Query(description="leave out its partners and the tenant's contacts for it")
    ] = False,
) -> MatchResponse:
    filters = Filters(country=country or [], kind=kind or [])
    with services.turns.turn(deadline):
        chosen = tailored(
            filters.to_actor_filter(exclude_same or ()),
            services.runtime.store,
            principal,
            for_actor=actor_id,
            new_contacts_only=new_contacts_only,
        )
        result = services.runtime.matcher.match_actor(
            actor_id,
            limit=limit,
            filters=chosen,
            viewer=principal.viewer,
            mode=mode,
            diversify=diversify,
            collapse=collapse,
            deadline=deadline,
        )
        if explain:
            result = services.runtime.matcher.explain(result)
    return MatchResponse(
        matches=[match_out(m, explain) for m in result.matches],
        generation=result.generation,
        model=result.model,
    )
