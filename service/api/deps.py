"""Dependencies shared by the routers: the services of the app and the caller's principal."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.api.metrics import Metrics
from service.api.slots import SideThreads, Slots
from service.audit import Action, AuditEvent, KeyUse, Who
from service.deadline import Deadline
from service.errors import FieldProblem, Forbidden, InvalidInput, RateLimited, Unauthorized
from service.jobs import RebuildJobs
from service.keys import OPEN_PRINCIPAL, PREFIX, KeyFile, Principal, Scope
from service.ratelimit import RateLimiter
from service.runtime import Runtime


@dataclass
class Services:
    runtime: Runtime
    keys: KeyFile | None
    """None: no keys configured, the service is open (and bound to loopback only)."""
    jobs: RebuildJobs
    metrics: Metrics
    turns: Slots
    """The worker's ranking turns (`ranking_turns`): searches and matches take one."""
    limiter: RateLimiter | None = None
    """None: no rate limit (an open service, or a rate of 0)."""
    key_use: KeyUse = field(default_factory=KeyUse)
    side_threads: SideThreads = field(default_factory=SideThreads)
    """Threads of their own for /readyz and /metrics, so probes never queue behind rankings."""


# The dependencies are `async def`: FastAPI runs a plain `def` dependency in the thread pool, one
# hop per dependency and request, and under overload that hop queues behind the requests
# waiting there for a ranking turn (service.api.slots). None of them blocks: the one file they
# touch is the key file in the data folder (a stat per request, a read when it changed).


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]

_bearer = HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer cm_...`")


async def get_principal(  # on the loop too: a stat of the key file, a read only when it changed
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if services.keys is None:
        return OPEN_PRINCIPAL
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing API key: send `Authorization: Bearer <key>`")
    try:
        principal = services.keys.authenticate(credentials.credentials)
    except Unauthorized:
        claimed = _claimed_key_id(credentials.credentials)
        # Only ids the file knows (a revoked key still in use): made-up ids must not each
        # become an audit row.
        known = claimed if claimed is not None and claimed in services.keys.keys() else None  # noqa: SIM118
        services.key_use.note(Who(known, ""), "key.refused")
        raise
    who = who_is(principal)
    if services.limiter is not None and principal.key_id is not None:
        try:
            services.limiter.take(principal.key_id)
        except RateLimited:
            services.key_use.note(who, "key.limited")
            raise
    services.key_use.note(who)
    return principal


def _claimed_key_id(token: str) -> str | None:
    """The key id a refused token claims, if it is shaped like one (never the secret)."""
    parts = token.split("_", 2)
    if len(parts) == 3 and parts[0] == PREFIX and parts[1].isalnum() and len(parts[1]) <= 32:
        return parts[1]
    return None


def who_is(principal: Principal) -> Who:
    """Who a request is, for the audit log."""
    return Who(principal.key_id, principal.tenant)


def audit(
    services: Services, principal: Principal, action: Action, target: str | None = None
) -> None:
    """Append one event of an admin action (or another single write) to the audit log."""
    services.runtime.store.record_audit([AuditEvent(action, who_is(principal), target)])


async def request_deadline(services: ServicesDep) -> Deadline:
    """The time budget of a match or search (`CLUSTERMATCH_REQUEST_TIMEOUT_SECONDS`)."""
    return Deadline(services.runtime.settings.request_timeout_seconds)


RequestDeadline = Annotated[Deadline, Depends(request_deadline)]


def _require(scope: Scope) -> object:
    async def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if not principal.has(scope):
            raise Forbidden(f"this API key lacks the {scope!r} scope")
        return principal

    return Depends(check)


Reader = Annotated[Principal, _require("read")]
Writer = Annotated[Principal, _require("write")]
Admin = Annotated[Principal, _require("admin")]


_KNOWN = "_clustermatch_query_names"
"""Attribute caching a route's query parameter names on the route itself."""
_SINGLE = "_clustermatch_single_valued_query_names"
"""Likewise, those of them that take one value."""


async def reject_unknown_query(request: Request) -> None:
    """422 for a query parameter the route does not take: `?contry=DE` would otherwise be
    ignored and answer unfiltered results as if it had been applied."""
    if not request.query_params:
        return
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known: frozenset[str] | None = getattr(route, _KNOWN, None)
    if known is None:
        known = frozenset(_query_names(dependant))
        setattr(route, _KNOWN, known)
    problems = []
    single: frozenset[str] | None = getattr(route, _SINGLE, None)
    if single is None:
        single = frozenset(_query_names(dependant, single_valued=True))
        setattr(route, _SINGLE, single)
    for name in dict.fromkeys(request.query_params):
        if name in single and len(given := request.query_params.getlist(name)) > 1:
            # FastAPI would keep the last and drop the others without a word.
            problems.append(FieldProblem(name, f"given {len(given)} times; it takes one value"))
        if name in known:
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        accepted = ", ".join(sorted(known)) or "none"
        problems.append(FieldProblem(name, f"unknown query parameter{hint} (accepted: {accepted})"))
    if problems:
        raise InvalidInput(problems)


def _takes_many(annotation: Any) -> bool:
    """Whether a parameter's type is a list (through `Annotated[...]` and `| None`)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _takes_many(get_args(annotation)[0])
    if origin in (Union, UnionType):
        return any(_takes_many(arg) for arg in get_args(annotation))
    return origin in (list, tuple, set, frozenset)


def _query_names(dependant: Dependant, single_valued: bool = False) -> set[str]:
    """The route's query parameter names (with `single_valued`: those that take one value)."""
    names = {
        p.alias
        for p in dependant.query_params
        if not single_valued or not _takes_many(p.field_info.annotation)
    }
    for sub in dependant.dependencies:
        names |= _query_names(sub, single_valued)
    return names
