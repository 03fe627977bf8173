"""/v1/index: the served generation, and rebuilds (admin)."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Response, status

from service.api.deps import Admin, Reader, ServicesDep, audit
from service.api.schemas import IndexStatus, Job, problem_responses

router = APIRouter(
    prefix="/v1/index", tags=["index"], responses=problem_responses(401, 403, 404, 409)
)


@router.get("", response_model=IndexStatus, summary="The generation being served")
def index_status(services: ServicesDep, _: Reader) -> IndexStatus:
    runtime = services.runtime
    generation = runtime.index.get()
    built = not generation.is_empty
    state = "building" if services.jobs.running else ("ready" if built else "empty")
    manifest = generation.manifest
    return IndexStatus(
        state=state,
        generation=manifest.generation if built else None,
        model=manifest.model_id,
        actors=manifest.actors,
        chunks=manifest.chunks,
        built_at=manifest.built_at if built else None,
        pending_changes=runtime.pending_changes(),
    )


@router.post(
    "/rebuild",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Job,
    summary="Start an index rebuild (admin); 409 while one is running",
)
def rebuild(services: ServicesDep, principal: Admin, response: Response) -> Job:
    job = services.jobs.start()
    audit(services, principal, "index.rebuild", job.id)
    response.headers["Location"] = f"/v1/index/jobs/{job.id}"
    return Job(**asdict(job))


@router.get("/jobs/{job_id}", response_model=Job, summary="State of a rebuild job")
def job(job_id: str, services: ServicesDep, _: Admin) -> Job:
    return Job(**asdict(services.jobs.get(job_id)))


@router.post(
    "/reload",
    response_model=IndexStatus,
    summary="Swap in the generation CURRENT names now (admin); normally automatic",
)
def reload(services: ServicesDep, principal: Admin) -> IndexStatus:
    services.runtime.index.reload()
    audit(services, principal, "index.reload")
    return index_status(services, principal)
