"""Index rebuilds started over HTTP: one at a time, in a background thread, observable by id."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Literal

from service.errors import Conflict, NotFound
from service.locks import RebuildLock
from service.reindex import ReindexReport

log = logging.getLogger("clustermatch.jobs")

JobState = Literal["queued", "running", "succeeded", "failed"]


@dataclass(frozen=True)
class JobRecord:
    id: str
    state: JobState
    started_at: str | None = None
    finished_at: str | None = None
    generation: str | None = None
    error: str | None = None
    report: dict[str, object] | None = None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class RebuildJobs:
    """Runs `rebuild` in a thread; `on_done` is called with the report (e.g. to swap the index)."""

    KEEP = 20

    def __init__(
        self,
        rebuild: Callable[[], ReindexReport],
        on_done: Callable[[ReindexReport], None],
        lock: RebuildLock | None = None,
    ) -> None:
        self._rebuild = rebuild
        self._on_done = on_done
        self._rebuild_lock = lock
        self._jobs: dict[str, JobRecord] = {}
        self._lock = threading.Lock()
        self._running: str | None = None

    @property
    def running(self) -> str | None:
        return self._running

    def start(self) -> JobRecord:
        with self._lock:
            if self._running is not None:
                raise Conflict(f"rebuild {self._running} is already running")
            if self._rebuild_lock is not None and self._rebuild_lock.held():
                raise Conflict(
                    "a rebuild started by another process (e.g. the nightly job) is running"
                )
            job = JobRecord(id=secrets.token_hex(6), state="running", started_at=_now())
            self._jobs[job.id] = job
            self._running = job.id
            for old in list(self._jobs)[: max(0, len(self._jobs) - self.KEEP)]:
                del self._jobs[old]
        threading.Thread(target=self._run, args=(job.id,), name=f"rebuild-{job.id}").start()
        return job

    def get(self, job_id: str) -> JobRecord:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise NotFound(f"no rebuild job {job_id!r}") from None

    def _run(self, job_id: str) -> None:
        try:
            report = self._rebuild()
            self._on_done(report)
            done = replace(
                self._jobs[job_id],
                state="succeeded",
                generation=report.generation,
                report=asdict(report),
            )
        except Exception as exc:  # a failed rebuild must be reported, never kill the service
            log.exception("rebuild %s failed", job_id)
            done = replace(self._jobs[job_id], state="failed", error=str(exc))
        with self._lock:
            self._jobs[job_id] = replace(done, finished_at=_now())
            self._running = None

    def wait(self, job_id: str, timeout: float = 600.0) -> JobRecord:
        """Block until the job has finished (for tests and scripts)."""
        deadline = threading.Event()
        waited = 0.0
        while self.get(job_id).state == "running" and waited < timeout:
            deadline.wait(0.05)
            waited += 0.05
        return self.get(job_id)
