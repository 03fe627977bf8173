"""The one place where errors become HTTP: `application/problem+json` (RFC 9457) responses.

Domain errors map to statuses by class; request validation errors name each bad field; anything
unexpected is logged with its traceback and answered with a bare 500 (no stack trace leaves the
process).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from service import errors

log = logging.getLogger("clustermatch.api")

PROBLEM = "application/problem+json"

STATUS: list[tuple[type[errors.ClusterMatchError], int, str]] = [
    (errors.InvalidInput, 422, "Invalid input"),
    (errors.Unauthorized, 401, "Unauthorized"),
    (errors.Forbidden, 403, "Forbidden"),
    (errors.NotFound, 404, "Not found"),
    (errors.Conflict, 409, "Conflict"),
    (errors.TooLarge, 413, "Content too large"),
    (errors.RateLimited, 429, "Too many requests"),
    (errors.TimedOut, 503, "Request timed out"),
    (errors.InsecureConfiguration, 503, "Service misconfigured"),
    (errors.IndexUnavailable, 503, "Index not ready"),
    (errors.IndexMismatch, 503, "Index does not fit the configured model"),
    (errors.CorruptArtifact, 503, "Index damaged"),
    (errors.ModelUnavailable, 503, "Model unavailable"),
    (errors.StoreSchemaError, 503, "Store schema needs an upgrade"),
    (errors.MapUnavailable, 503, "Map unavailable"),
    (errors.ComputeUnavailable, 503, "Compute cluster unavailable"),
]


def problem(
    status: int,
    title: str,
    detail: str,
    problems: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    body["detail"] = detail
    if problems:
        body["errors"] = problems
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def status_of(exc: errors.ClusterMatchError) -> tuple[int, str]:
    for cls, status, title in STATUS:
        if isinstance(exc, cls):
            return status, title
    return 500, "Internal error"


def _field(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc[1:] if loc and loc[0] in ("body", "query", "path") else loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this request's path (HEAD is implied by GET)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods - {"HEAD"})


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.ClusterMatchError)
    async def domain_error(_: Request, exc: errors.ClusterMatchError) -> JSONResponse:
        status, title = status_of(exc)
        problems = None
        if isinstance(exc, errors.InvalidInput):
            problems = [{"field": p.field, "message": p.message} for p in exc.problems]
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if isinstance(exc, errors.RateLimited):
            headers = {"Retry-After": str(exc.retry_after)}
        detail = str(exc)
        if isinstance(exc, errors.InsecureConfiguration):
            log.error("%s", exc)  # the operator's message names the file and the fix
            detail = exc.public_detail
        return problem(status, title, detail, problems, headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
            if error.get("type") == "extra_forbidden":
                message = "unknown field"
            problems.append({"field": _field(tuple(error.get("loc", ()))), "message": message})
        detail = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        return problem(422, "Invalid input", detail, problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "Error")
        headers = dict(exc.headers) if exc.headers else None
        if exc.status_code == 405:
            # Starlette names the methods of the first route of the path only; a path served
            # by several routes (GET, PUT, DELETE) allows all of theirs.
            headers = (headers or {}) | {"Allow": ", ".join(allowed_methods(request))}
        return problem(exc.status_code, title, str(exc.detail), headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "Internal error", "an unexpected error occurred; see the server log")
