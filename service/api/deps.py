"""Dependencies shared by the routers: the services of the app and the caller's principal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.api.metrics import Metrics
from service.errors import Forbidden, Unauthorized
from service.jobs import RebuildJobs
from service.keys import OPEN_PRINCIPAL, KeyFile, Principal, Scope
from service.runtime import Runtime


@dataclass
class Services:
    runtime: Runtime
    keys: KeyFile | None
    """None: no keys configured, the service is open (and bound to loopback only)."""
    jobs: RebuildJobs
    metrics: Metrics


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]

_bearer = HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer cm_...`")


def get_principal(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if services.keys is None:
        return OPEN_PRINCIPAL
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing API key: send `Authorization: Bearer <key>`")
    return services.keys.authenticate(credentials.credentials)


def _require(scope: Scope) -> object:
    def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if not principal.has(scope):
            raise Forbidden(f"this API key lacks the {scope!r} scope")
        return principal

    return Depends(check)


Reader = Annotated[Principal, _require("read")]
Writer = Annotated[Principal, _require("write")]
Admin = Annotated[Principal, _require("admin")]
