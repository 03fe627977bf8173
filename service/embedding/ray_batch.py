"""The rebuild's embedding step on a Ray cluster (`clustermatch reindex --ray ADDRESS|auto`).

Ray Data spreads the passages the cache lacks over a pool of Ray actors, each holding one model
(`map_batches` with a callable class), and streams the vectors back to this process, which
commits them to the cache batch by batch as the local path does. Everything else of the rebuild
(snapshot, FAISS, read model, verify, publish) stays in this process.

The workers build their embedder with the same factory as this process
(`service.embedding.factory.load_embedder`: the model from its installed package, offline), so a
node needs clustermatch and the model package installed, the same versions. Each returned batch
names the model that embedded it and the rebuild refuses vectors of another model (an int8
backend that fell back to fp32 on a node, a node with another model package).

Ray is an optional extra (`pip install clustermatch[ray]`); this module imports it only when a
rebuild is sent to a cluster.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from service.embedding.base import Embedder, Vectors, warm_up
from service.embedding.bulk import Passage
from service.errors import ComputeUnavailable, ModelUnavailable

log = logging.getLogger("clustermatch.ray")

WORKER_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
"""Set in every Ray worker: no model hub is reachable, the model loads from its package."""
ROWS_PER_BLOCK = 4
"""Batches per Ray Data block: blocks are what the actors are handed, so several per worker."""


class EmbedBatch:
    """One Ray actor: one model, loaded once, embedding batch after batch."""

    def __init__(self, make_embedder: Callable[[], Embedder]) -> None:
        for key, value in WORKER_ENV.items():
            os.environ.setdefault(key, value)
        self.embedder = make_embedder()
        warm_up(self.embedder)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = self.embedder.embed([str(t) for t in batch["text"]], role="passage")
        return {
            "hash": batch["hash"],
            "vector": vectors,
            "model": np.full(len(vectors), self.embedder.model_id, dtype=object),
        }


class RayEncoder:
    """`PassageEncoder` on a Ray cluster: `workers` actors of `threads` CPUs each.

    `address` is a Ray address (`host:6379`, `ray://host:10001`) or `auto`: the cluster this
    machine belongs to (RAY_ADDRESS, or one started with `ray start`), else a local one for this
    run. A process that already called `ray.init()` (a test, a notebook) keeps its connection.
    `workers=None` sizes the pool to the cluster: its CPUs divided by `threads`.
    """

    def __init__(
        self,
        address: str,
        make_embedder: Callable[[], Embedder],
        model_id: str,
        workers: int | None = None,
        threads: int = 1,
        batch_size: int = 256,
    ) -> None:
        if (workers is not None and workers < 1) or threads < 1 or batch_size < 1:
            raise ValueError("workers, threads and batch_size must be >= 1")
        self.address = address
        self.make_embedder = make_embedder
        self._model_id = model_id
        self.workers = workers
        self.threads = threads
        self.batch_size = batch_size

    @property
    def model_id(self) -> str:
        return self._model_id

    def encode(self, passages: Sequence[Passage]) -> Iterator[tuple[list[str], Vectors]]:
        if not passages:
            return
        ray = _import_ray()
        started_here = self._connect(ray)
        try:
            workers = self.workers or self._pool_size(ray)
            log.info(
                "ray: %d passages on %d workers of %d CPUs (cluster %s)",
                len(passages),
                workers,
                self.threads,
                ray.cluster_resources().get("CPU", 0),
            )
            yield from self._stream(ray, passages, workers)
        finally:
            if started_here:
                ray.shutdown()

    def _connect(self, ray: Any) -> bool:
        """Connect unless this process already is; True when this call connected."""
        if ray.is_initialized():
            return False
        try:
            ray.init(
                address=None if self.address == "auto" else self.address,
                runtime_env={"env_vars": WORKER_ENV},
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=False,
            )
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise ComputeUnavailable(
                f"cannot reach the Ray cluster {self.address!r}: {exc}"
            ) from exc
        return True

    def _pool_size(self, ray: Any) -> int:
        return max(1, int(ray.cluster_resources().get("CPU", 1) // self.threads))

    def _stream(
        self, ray: Any, passages: Sequence[Passage], workers: int
    ) -> Iterator[tuple[list[str], Vectors]]:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the CLI shows one progress bar for the rebuild
        # Ray Data logs every execution's plan at INFO, and warns that its bars are off.
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        blocks = max(workers, math.ceil(len(passages) / (self.batch_size * ROWS_PER_BLOCK)))
        dataset = ray.data.from_items(
            [{"hash": h, "text": t} for h, t in passages], override_num_blocks=blocks
        )
        embedded = dataset.map_batches(
            EmbedBatch,
            fn_constructor_args=(self.make_embedder,),
            batch_size=self.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=self.threads,
            runtime_env={"env_vars": {**WORKER_ENV, "OMP_NUM_THREADS": str(self.threads)}},
        )
        try:
            for batch in embedded.iter_batches(batch_size=self.batch_size, batch_format="numpy"):
                models = set(batch["model"].tolist())
                if models != {self._model_id}:
                    raise ModelUnavailable(
                        f"Ray workers embedded with {sorted(models)}, the rebuild needs "
                        f"{self._model_id!r}: install the same model package and backend on "
                        "every node"
                    )
                vectors = np.ascontiguousarray(batch["vector"], dtype=np.float32)
                yield [str(h) for h in batch["hash"]], vectors
        except ray.exceptions.RayError as exc:
            raise ComputeUnavailable(f"the Ray embedding job failed: {exc}") from exc


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ComputeUnavailable(
            "Ray is not installed; install the extra with `pip install 'clustermatch[ray]'` "
            "(`make install-dev` does)"
        ) from exc
    return ray
