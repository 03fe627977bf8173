"""FastAPI application factory. Routes stay thin: they translate HTTP to runtime calls and back.

`create_app(runtime)` is cheap: the model and the index load on first use (or in the lifespan
warm-up when `warm=True`, which `clustermatch serve` uses so the first request is not slow).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from service import __version__
from service.alerts import Alerts, AlertWorker
from service.api import errors
from service.api.audit import AUDIT_FLUSH_SECONDS, AuditWriter
from service.api.balance import FairShare, FairShareMiddleware, FairShareThread
from service.api.deps import Services, ServicesDep
from service.api.headers import SecurityHeadersMiddleware
from service.api.limits import BodyLimitMiddleware
from service.api.metrics import LatencyMiddleware, Metrics
from service.api.routes_actors import router as actors_router
from service.api.routes_audit import router as audit_router
from service.api.routes_feedback import router as feedback_router
from service.api.routes_index import router as index_router
from service.api.routes_map import router as map_router
from service.api.routes_match import router as match_router
from service.api.routes_needs import router as needs_router
from service.api.routes_reports import router as reports_router
from service.api.routes_subscriptions import router as subscriptions_router
from service.api.slots import Slots
from service.errors import ClusterMatchError, Conflict
from service.jobs import RebuildJobs
from service.keys import KeyFile
from service.ratelimit import RateLimiter
from service.reindex import ReindexReport
from service.runtime import Runtime
from service.serving import Watcher
from service.web import routes as web

log = logging.getLogger("clustermatch.api")

DESCRIPTION = """
Competence matching for regional innovation clusters: store actor profiles, then ask for similar
actors across sectors and regions, each with the passages that justify the suggestion.

**Auth.** `Authorization: Bearer <key>`; keys carry scopes `read`, `write`, `admin` and belong to a
tenant (and optionally networks). A service started without keys is open and only listens on
loopback.

**Scores** are cosine similarities of passage embeddings aggregated per actor; they are comparable
within one response, not across models or calibrated as probabilities.

**Errors** are `application/problem+json` with `status`, `title`, `detail` and, for invalid input,
`errors: [{field, message}]`.
"""


def create_app(runtime: Runtime, warm: bool = False, workers: int = 1) -> FastAPI:
    """`workers`: how many worker processes serve the port (`clustermatch serve --workers`);
    with more than one, each keeps to its share of the open connections (service.api.balance)."""
    settings = runtime.settings
    share = FairShare(workers)
    metrics = Metrics()
    set_search_threads(settings.faiss_threads)

    def rebuilt(report: ReindexReport) -> None:
        metrics.rebuild_seconds.observe(report.seconds)
        runtime.index.reload()

    keys = KeyFile(settings.keys_file) if settings.keys_file else None
    services = Services(
        runtime=runtime,
        keys=keys,
        jobs=RebuildJobs(runtime.reindexer.run, rebuilt, runtime.reindexer.lock),
        metrics=metrics,
        turns=Slots(settings.ranking_turns),
        limiter=(
            RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
            if keys is not None and settings.rate_limit_per_second > 0
            else None
        ),
    )

    def rebuild_large_delta() -> None:
        """The delta is searched exactly; past `delta_rebuild_chunks` it is folded into a new
        generation (unless a rebuild already runs here or in another process)."""
        try:
            job = services.jobs.start()
            log.info(
                "live delta over %d chunks: rebuild %s started",
                settings.delta_rebuild_chunks,
                job.id,
            )
        except Conflict:
            pass

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if services.keys is None:
            log.warning("no API keys configured: the API is OPEN (allowed on loopback only)")
        if warm:
            await run_in_threadpool(runtime.warm_up)
        watcher = Watcher(
            runtime,
            settings.watch_seconds,
            rebuild_at=settings.delta_rebuild_chunks,
            start_rebuild=rebuild_large_delta,
        )
        watcher.start()
        alerts = AlertWorker(Alerts(runtime), settings.alert_check_seconds)
        alerts.start()
        audit = AuditWriter(
            runtime.store, services.key_use, settings.audit_retention_days, AUDIT_FLUSH_SECONDS
        )
        audit.start()
        sharing = FairShareThread(share)
        sharing.start()
        try:
            yield
        finally:
            sharing.stop()
            alerts.stop()
            watcher.stop()
            audit.stop()

    app = FastAPI(
        title="clustermatch",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = services
    install_docs(app)
    install_openapi(app, open_mode=services.keys is None)
    errors.install(app)
    app.add_middleware(
        BodyLimitMiddleware,
        default=settings.max_body_bytes,
        per_path={"/v1/actors/bulk": settings.max_bulk_bytes},
    )
    app.add_middleware(SecurityHeadersMiddleware)
    if settings.cors_origin_list:  # off unless origins are configured
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Retry-After", "Location"],
            allow_credentials=False,  # keys travel in a header, never in cookies
            max_age=600,
        )
    app.add_middleware(LatencyMiddleware, metrics=metrics)
    app.add_middleware(FairShareMiddleware, share=share, closed=metrics.connections_rebalanced)
    app.include_router(actors_router)
    app.include_router(match_router)
    app.include_router(index_router)
    app.include_router(feedback_router)
    app.include_router(map_router)
    app.include_router(subscriptions_router)
    app.include_router(needs_router)
    app.include_router(reports_router)
    app.include_router(audit_router)
    web.install(app)  # the workspace pages, last: their paths never shadow the API's

    @app.get("/healthz", tags=["operations"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        # On the event loop, not the thread pool: under overload every pool thread may wait
        # for a ranking turn, and a liveness probe that waits behind them gets a busy but
        # healthy worker restarted.
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Readiness: the service can serve requests (a fresh, empty store included)",
        description="`stale` is true while writes are served from the live delta only (no "
        "generation built yet, or changes since the last one); matching still sees them.",
        responses={503: {"description": "the index on disk cannot be served (see `detail`)"}},
    )
    async def readyz(services: ServicesDep) -> Any:
        return await services.side_threads.run(lambda: readiness(services))

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {}}}},
    )
    async def prometheus(services: ServicesDep) -> Response:
        def scrape() -> bytes:
            manifest = services.runtime.index.get().manifest
            metrics.index_chunks.set(manifest.chunks)
            metrics.index_actors.set(manifest.actors)
            metrics.ranking_waiting.set(services.turns.waiting)
            text: bytes = generate_latest(metrics.registry)
            return text

        text = await services.side_threads.run(scrape)
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    return app


def readiness(services: Services) -> Any:
    """The body of /readyz (in a side thread: the index may load, the store is read)."""
    try:
        generation = services.runtime.index.get()
        pending = services.runtime.pending_changes()
    except ClusterMatchError as exc:
        return JSONResponse({"status": "not ready", "detail": str(exc)}, status_code=503)
    return {
        "status": "ready",
        "generation": None if generation.is_empty else generation.manifest.generation,
        "pending_changes": pending,
        "stale": generation.is_empty or pending > 0,
        "worker": os.getpid(),
        "warming": services.runtime.warming,
    }


DOCS_ASSETS = "/static/docs"


def install_docs(app: FastAPI) -> None:
    """/docs and /redoc with their scripts served by the app from the fastapi-offline package,
    so they work in closed networks (FastAPI's defaults load them from a CDN)."""
    import importlib.util

    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    spec = importlib.util.find_spec("fastapi_offline")
    assert spec is not None and spec.submodule_search_locations
    assets = Path(next(iter(spec.submodule_search_locations))) / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="clustermatch API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title="clustermatch API",
            redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )


def install_openapi(app: FastAPI, open_mode: bool) -> None:
    """The OpenAPI document as the service really behaves: errors are `application/problem+json`
    (one `Problem` schema, FastAPI's own validation-error schema is never sent), and an open
    service declares no security scheme it does not enforce."""
    from fastapi.openapi.utils import get_openapi

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            problem = {"schema": {"$ref": "#/components/schemas/Problem"}}
            for operations in spec.get("paths", {}).values():
                for operation in operations.values():
                    if "requestBody" in operation:
                        operation["responses"]["400"] = {"description": "the body is unreadable"}
                    if open_mode:
                        operation.pop("security", None)
                    elif "security" in operation:  # every keyed request may meet these two
                        responses = operation.setdefault("responses", {})
                        responses.setdefault("429", dict(RATE_LIMITED))
                        responses.setdefault("503", dict(UNAVAILABLE))
                    for code, response in operation.get("responses", {}).items():
                        if code.isdigit() and int(code) >= 400:
                            response["content"] = {errors.PROBLEM: problem}
            schemas = spec.get("components", {}).get("schemas", {})
            schemas.pop("HTTPValidationError", None)
            schemas.pop("ValidationError", None)
            if open_mode:
                spec.get("components", {}).pop("securitySchemes", None)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]


RATE_LIMITED = {
    "description": "this API key sent more requests than its rate limit allows "
    "(CLUSTERMATCH_RATE_LIMIT_PER_SECOND, _BURST); try again after `Retry-After` seconds",
    "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
}
UNAVAILABLE = {
    "description": "the service cannot answer now: the index does not fit the model or is "
    "damaged, the request ran past its time limit, or the server's keys file is refused",
}


def set_search_threads(threads: int) -> None:
    """FAISS's OpenMP threads per search (set per call: service.index.faiss_index) and BLAS's
    threads (one process-wide pool): a request's products are small, and an idle OpenBLAS
    thread busy-waits after each of them."""
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    from service.index import faiss_index

    faiss_index.set_search_threads(threads)
    threadpool_limits(limits=threads, user_api="blas")
