"""The boundary every embedding backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Role = Literal["query", "passage"]
"""Asymmetric models (e5) embed queries and passages with different prefixes; MiniLM ignores it."""

Vectors = npt.NDArray[np.float32]

INT8_SUFFIX = "+onnx-int8"
"""Appended to a model's id by its int8 ONNX copy: its vectors differ, so its caches and indexes
are its own, but it is the same model (the same calibrations hold, within its parity gate)."""


def base_model_id(model_id: str) -> str:
    """The model an embedder's id names, without a quantisation suffix."""
    return model_id.removesuffix(INT8_SUFFIX)


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of shape (len(texts), dim)."""

    @property
    def model_id(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str], role: Role = "passage") -> Vectors: ...

    def count_tokens(self, text: str) -> int:
        """Tokens the model would see for `text`, special tokens included (for chunking)."""
        ...


def warm_up(embedder: Embedder) -> None:
    """Load and run `embedder` once now, if it can (`warm_up` is optional: not in the protocol)."""
    warm = getattr(embedder, "warm_up", None)
    if callable(warm):
        warm()


def l2_normalise(vectors: npt.NDArray[np.floating]) -> Vectors:
    out = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    out /= norms
    return out
