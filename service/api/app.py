"""FastAPI application factory. Routes stay thin: they translate HTTP to runtime calls and back."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from service import __version__
from service.errors import ClusterMatchError
from service.runtime import Runtime


def create_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(
        title="clustermatch",
        version=__version__,
        description="Competence matching for regional innovation clusters.",
    )
    app.state.runtime = runtime

    @app.get("/healthz", tags=["operations"], summary="Liveness: the process answers")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="Readiness: an index generation is loaded")
    def readyz() -> Any:
        try:
            generation = runtime.index.get()
        except ClusterMatchError as exc:
            return JSONResponse({"status": "not ready", "detail": str(exc)}, status_code=503)
        if generation is None:
            return JSONResponse(
                {"status": "not ready", "detail": "no index generation has been built"},
                status_code=503,
            )
        return {"status": "ready", "generation": generation.manifest.generation}

    return app
