"""sentence-transformers on torch (CPU), loading weights only from an installed package.

The constructor is cheap; the model loads on first use (or `warm_up()`), so importing and wiring
the service costs nothing until a vector is needed. Token counting needs only `tokenizer.json`, so
ingesting and chunking never pay for loading the model.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from service.config import ModelProfile
from service.embedding.base import Role, Vectors, l2_normalise
from service.errors import ModelUnavailable

# No model hub is reachable: make every Hugging Face library fail fast instead of retrying.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def model_path(profile: ModelProfile) -> Path:
    """The folder with the model files, from the package named in the profile."""
    try:
        module = importlib.import_module(profile.module)
    except ImportError as exc:
        raise ModelUnavailable(
            f"model package {profile.package!r} is not installed (import {profile.module!r} "
            f"failed); run `make install`"
        ) from exc
    path = Path(str(module.get_model_path()))
    if not (path / "config.json").is_file():
        raise ModelUnavailable(f"model package {profile.package!r} has no model files at {path}")
    return path


class SentenceTransformerEmbedder:
    def __init__(self, profile: ModelProfile, threads: int = 2, batch_size: int = 32) -> None:
        self.profile = profile
        self._threads = threads
        self._batch_size = batch_size
        self._model: Any = None
        self._count: Callable[[str], int] | None = None
        # torch on 2 cores gains nothing from parallel encode calls; serialising them keeps
        # latency predictable and avoids oversubscribing the cores.
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self.profile.id

    @property
    def dim(self) -> int:
        return self.profile.dim

    def warm_up(self) -> None:
        self._load()

    def _load(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    import torch
                    import transformers
                    from sentence_transformers import SentenceTransformer

                    # Loading is silent: progress bars belong to our long jobs, not to a 0.1 s load.
                    transformers.logging.set_verbosity_error()
                    transformers.logging.disable_progress_bar()
                    torch.set_num_threads(self._threads)
                    model = SentenceTransformer(str(model_path(self.profile)), device="cpu")
                    model.max_seq_length = self.profile.max_tokens
                    if model.get_embedding_dimension() != self.profile.dim:
                        raise ModelUnavailable(
                            f"model {self.profile.id} has dimension "
                            f"{model.get_embedding_dimension()}, profile says {self.profile.dim}"
                        )
                    self._model = model
        return self._model

    def count_tokens(self, text: str) -> int:
        if self._count is None:
            from service.text.chunking import tokenizer_counter

            self._count = tokenizer_counter(str(model_path(self.profile) / "tokenizer.json"))
        return self._count(text)

    def embed(self, texts: Sequence[str], role: Role = "passage") -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        prefix = self.profile.query_prefix if role == "query" else self.profile.passage_prefix
        model = self._load()
        with self._lock:
            # encode() sorts by length internally, which keeps padding per batch small.
            vectors = model.encode(
                [prefix + t for t in texts],
                batch_size=self._batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return l2_normalise(vectors)
