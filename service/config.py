"""Typed settings, read from the environment (prefix CLUSTERMATCH_) once per process and injected.

Nothing here touches the disk at import time: `Settings()` only reads environment variables, and
paths are resolved by the properties below when something asks for them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.errors import ModelUnavailable

PACKAGE_DIR = Path(__file__).resolve().parent
CHECKOUT_DIR = PACKAGE_DIR.parent
MODELS_DIR = CHECKOUT_DIR / "models"


def _default_data_dir() -> Path:
    """The repo's `indexes/` folder when run from a checkout, else a per-user folder."""
    if (CHECKOUT_DIR / "pyproject.toml").is_file() and (CHECKOUT_DIR / "indexes").is_dir():
        return CHECKOUT_DIR / "indexes"
    return Path.home() / ".local" / "share" / "clustermatch"


Aggregate = Literal["max", "coverage", "topk"]
LOG_LEVEL_ENV = "CLUSTERMATCH_LOG_LEVEL"
"""How `clustermatch serve --log-level` reaches its worker processes."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLUSTERMATCH_", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    """Holds the SQLite store and, unless `index_dir` says otherwise, the index generations."""
    index_dir: Path | None = None
    database_url: str | None = None
    """SQLAlchemy URL of the store; default `sqlite:///<data_dir>/store.sqlite3`."""

    model: str = "all-minilm-l6-v2"
    """Name of a model profile in `models/<name>.json`."""
    backend: Literal["torch", "onnx-fp32", "onnx-int8"] = "onnx-int8"
    """Embedding runtime; see service.embedding.factory (int8 falls back to fp32 on bad parity).
    The default is the fastest that loses no quality on the temporal evaluation: int8 ONNX
    (MiniLM nDCG@10 0.138 as with fp32, recall@50 0.227 against 0.229, MRR@50 0.308 against
    0.298, the controlled AUCs equal; docs/evaluation.md) embeds at about half fp32's CPU, which
    is most of a write's cost. multilingual-e5-small's int8 copy fails the parity gate (top-10
    overlap 0.83), so that model serves fp32. fp32 ONNX gives torch's vectors (the same figures
    to the third decimal). The ONNX export is built once, on first use, under models/cache/; a
    change of backend changes the model id, so the index is rebuilt (`clustermatch reindex`)."""
    query_backend: Literal["same", "onnx-int8"] = "onnx-int8"
    """How free-text queries are embedded when `backend` is fp32 or torch: `onnx-int8`, the int8
    copy of the same weights for queries only (a query costs about half the CPU; passages, the
    index and actor matching keep `backend`'s vectors), or `same` as the passages. Parity-gated
    on retrieval, falls back to `same`; service.embedding.queries. On the free-text evaluation
    it moved nDCG@10 by the noise (0.075 against 0.076; docs/evaluation.md)."""
    threads: int = Field(default=2, ge=1, le=64)
    batch_size: int = Field(default=32, ge=1, le=1024)
    query_threads: int = Field(default=1, ge=1, le=64)
    """Threads of the ONNX session that embeds queries (passages use `threads`). A query is one
    short text: split over two threads it cost more CPU and more time than on one (1.9 against
    1.0 ms, BENCHMARKS.md), and concurrent requests use the other core anyway."""
    passage_sessions: int = Field(default=0, ge=0, le=64)
    """ONNX backends: many passages at once (a bulk import, a rebuild, a large PUT) are embedded
    on this many single-threaded sessions side by side instead of one call of `threads` threads
    (int8 MiniLM, two cores: 458 against 386 passages/s; ~40 MB per session). 0: one per usable
    core, at most `threads`; 1: one call, as before. The vectors are the same either way;
    queries have their own session (`query_threads`)."""
    faiss_threads: int = Field(default=1, ge=1, le=64)
    """Threads per FAISS search (OpenMP) and per numpy product (BLAS) in the server. One:
    requests run in parallel anyway, a single query split over two busy cores was measured
    slower (BENCHMARKS.md), and idle OpenMP and OpenBLAS threads spin at every call."""
    ranking_turns: int = Field(default=2, ge=1, le=256)
    """Searches and matches that run at once in one worker process; the others wait in turn
    (service.api.slots). Two: at 100,000 chunks on two workers, against the thread pool's 40
    at once, the p99 of 16 searching clients fell (135 against 168 ms) and 4 matching clients
    got about twice the throughput; search throughput moved within the noise (BENCHMARKS.md)."""
    micro_batch_ms: float = Field(default=0.0, ge=0.0, le=100.0)
    """How long a query waits for others to share its model call. 0: no waiting; queries that
    arrive while a model call runs still share the next one (service.embedding.batching)."""

    aggregate: Aggregate = "coverage"
    """How chunk similarities become an actor score (see service.matching)."""
    max_query_chunks: int = Field(default=48, ge=1, le=1024)
    fusion: Literal["vector", "rrf", "weighted"] = "weighted"
    """Free-text search: vectors only, or fused with BM25 (see service.matching.fuse). The
    default was chosen on a held-out search task (docs/evaluation.md, scripts/eval_search.py)."""
    fusion_weight: float = Field(default=0.7, ge=0.0, le=1.0)
    profile_weight: float | None = Field(default=None, ge=0.0, le=1.0)
    """Actor matching: weight of the profile-vector cosine (mean chunk vectors) beside the
    chunk aggregate (see service.ranking); unset: the model profile's own."""
    activity_prior: float = Field(default=0.0, ge=0.0, le=5.0)
    """Actor matching: weight of an activity prior (log of the number of documents) beside the
    text score, both standardised over the candidates. Off by default: on the temporal
    evaluation it raises nDCG@10 and narrows the spread of suggestions (docs/evaluation.md)."""
    network_weight: float | None = Field(default=None, ge=0.0, le=5.0)
    """Actor matching: weight of the partner-network signal (personalised PageRank over the
    profiles' known partners, service.network) beside the text score; 0 switches it off;
    unset: the model profile's own."""
    delta_rebuild_chunks: int = Field(default=20_000, ge=100)
    """A serving process asks for a rebuild once its live delta holds this many chunks."""
    map_method: Literal["tsne", "pca"] = "tsne"
    """How the competence map projects profile vectors to 2-D (see service.projection)."""
    keep_generations: int = Field(default=3, ge=1, le=100)
    hnsw_threshold: int = Field(default=100_000, ge=1)
    """Generations with at least this many chunks are built as HNSW (recall-checked) not exact."""
    hnsw_ef_search: int = Field(default=128, ge=8, le=4096)
    watch_seconds: float = Field(default=2.0, ge=0.1, le=3600)
    """How often a serving process checks CURRENT for a new generation and embeds new chunks."""
    delta_probe_seconds: float = Field(default=0.25, ge=0.0, le=60)
    """How often at most a query asks the store whether other processes wrote chunks (one
    indexed `max(id)`; 0: every query). Writes through the same process are candidates at once
    whatever this is; those of other workers within this time (and `watch_seconds` at worst)."""

    need_cover_above: float | None = Field(default=None, ge=-1.0, le=1.0)
    """Procurement needs: overrides the model profile's `cover_above` (service.needs)."""
    alert_check_seconds: float = Field(default=5.0, ge=0.1, le=3600)
    """How often a serving process looks for due alert checks and deliveries (service.alerts)."""
    alert_write_seconds: float = Field(default=300.0, ge=0.0, le=86_400)
    """Writes since a subscription's last check trigger a new check at most this often (a
    published generation triggers one at once)."""
    alert_timeout_seconds: float = Field(default=10.0, gt=0.0, le=300)
    """A webhook POST that takes longer counts as failed (and is retried)."""
    alert_retry_seconds: float = Field(default=30.0, gt=0.0, le=86_400)
    """The first retry waits this long; each further one twice as long as the one before."""
    alert_retry_max_seconds: float = Field(default=3_600.0, gt=0.0, le=86_400)
    alert_max_attempts: int = Field(default=30, ge=1, le=1_000)
    """After this many failed attempts an event is marked `failed` (kept in the log)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    keys_file: Path | None = None
    """JSON file of hashed API keys (`clustermatch keys create`). Unset: open, loopback only."""

    # Limits of the HTTP API; each is reported with its value when exceeded.
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    max_bulk_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    max_bulk_lines: int = Field(default=20_000, ge=1)
    rate_limit_per_second: float = Field(default=10.0, ge=0.0, le=100_000.0)
    """Requests per second an API key may send on average, per worker process (0: no limit).
    An open (keyless) service has no limit."""
    rate_limit_burst: int = Field(default=60, ge=1, le=1_000_000)
    """Requests an API key may send at once before the average rate applies."""
    request_timeout_seconds: float = Field(default=30.0, gt=0.0, le=3600.0)
    """Matches and searches running longer are abandoned with 503 (see service.deadline)."""
    cors_origins: str = ""
    """Comma-separated origins allowed to call the API from a browser (CORS); empty: none, so
    browsers keep other sites from reading the API's answers."""
    audit_retention_days: int = Field(default=365, ge=1, le=36_500)
    """Audit events older than this are pruned (by a serving process, hourly)."""

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]

    @property
    def resolved_index_dir(self) -> Path:
        return self.index_dir or self.data_dir

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'store.sqlite3'}"

    def model_profile(self) -> ModelProfile:
        return ModelProfile.load(self.model)


@dataclass(frozen=True)
class ModelProfile:
    """An embedding model as recorded in `models/<name>.json`."""

    id: str
    name: str
    package: str
    module: str
    dim: int
    max_tokens: int
    chunk_tokens: int
    query_prefix: str
    passage_prefix: str
    profile_weight: float = 0.0
    """Actor matching: the weight of the profile-vector cosine this model ranks best with,
    chosen on the temporal evaluation (docs/evaluation.md); CLUSTERMATCH_PROFILE_WEIGHT
    overrides it."""
    network_weight: float = 0.0
    """Actor matching: the weight of the partner-network signal this model ranks best with,
    chosen on half A of the temporal evaluation (docs/evaluation.md);
    CLUSTERMATCH_NETWORK_WEIGHT overrides it."""
    cover_above: float | None = None
    """Procurement needs: a passage this similar to an aspect of a need covers it (calibrated per
    model with scripts/calibrate_needs.py; see service.needs)."""
    cover_margin: float | None = None
    """Procurement needs: a covering passage must also lie this close to the aspect's best."""
    weak_below: float | None = None
    """Free-text search: a best-passage cosine below this means nothing fits (calibrated per
    model: e5's unrelated texts score about 0.8, MiniLM's about 0.1)."""

    @classmethod
    def load(cls, name: str) -> ModelProfile:
        path = MODELS_DIR / f"{name}.json"
        if not path.is_file():
            known = sorted(p.stem for p in MODELS_DIR.glob("*.json"))
            raise ModelUnavailable(f"unknown model profile {name!r}; known: {', '.join(known)}")
        raw = json.loads(path.read_text(encoding="utf-8"))
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})
