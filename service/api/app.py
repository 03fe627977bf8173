"""FastAPI application factory. Routes stay thin: they translate HTTP to runtime calls and back.

`create_app(runtime)` is cheap: the model and the index load on first use (or in the lifespan
warm-up when `warm=True`, which `clustermatch serve` uses so the first request is not slow).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from service import __version__
from service.api import errors
from service.api.deps import Services, ServicesDep
from service.api.limits import BodyLimitMiddleware
from service.api.metrics import LatencyMiddleware, Metrics
from service.api.routes_actors import router as actors_router
from service.api.routes_index import router as index_router
from service.api.routes_match import router as match_router
from service.errors import ClusterMatchError
from service.jobs import RebuildJobs
from service.keys import KeyFile
from service.reindex import ReindexReport
from service.runtime import Runtime
from service.serving import Watcher

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


def create_app(runtime: Runtime, warm: bool = False) -> FastAPI:
    settings = runtime.settings
    metrics = Metrics()
    set_search_threads(settings.faiss_threads)

    def rebuilt(report: ReindexReport) -> None:
        metrics.rebuild_seconds.observe(report.seconds)
        runtime.index.reload()

    services = Services(
        runtime=runtime,
        keys=KeyFile(settings.keys_file) if settings.keys_file else None,
        jobs=RebuildJobs(runtime.reindexer.run, rebuilt, runtime.reindexer.lock_path),
        metrics=metrics,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if services.keys is None:
            log.warning("no API keys configured: the API is OPEN (allowed on loopback only)")
        if warm:
            await run_in_threadpool(runtime.warm_up)
        watcher = Watcher(runtime, settings.watch_seconds)
        watcher.start()
        try:
            yield
        finally:
            watcher.stop()

    app = FastAPI(
        title="clustermatch",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.services = services
    errors.install(app)
    app.add_middleware(
        BodyLimitMiddleware,
        default=settings.max_body_bytes,
        per_path={"/v1/actors/bulk": settings.max_bulk_bytes},
    )
    app.add_middleware(LatencyMiddleware, metrics=metrics)
    app.include_router(actors_router)
    app.include_router(match_router)
    app.include_router(index_router)

    @app.get("/healthz", tags=["operations"], summary="Liveness: the process answers")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="Readiness: an index generation is loaded")
    def readyz(services: ServicesDep) -> Any:
        try:
            generation = services.runtime.index.get()
        except ClusterMatchError as exc:
            return JSONResponse({"status": "not ready", "detail": str(exc)}, status_code=503)
        if generation is None:
            return JSONResponse(
                {"status": "not ready", "detail": "no index generation has been built"},
                status_code=503,
            )
        return {"status": "ready", "generation": generation.manifest.generation}

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    def prometheus(services: ServicesDep) -> Response:
        generation = services.runtime.index.get()
        if generation is not None:
            metrics.index_chunks.set(generation.manifest.chunks)
            metrics.index_actors.set(generation.manifest.actors)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def set_search_threads(threads: int) -> None:
    import faiss

    faiss.omp_set_num_threads(threads)
