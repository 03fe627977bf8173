"""A deterministic, model-free embedder for fast tests.

It hashes lower-cased words (and word bigrams) into a fixed number of buckets, so texts that share
words are similar and unrelated texts are not: enough for tests of ranking, filters and indexes to
mean something, without loading a model. Never used by the service itself.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Sequence

import numpy as np

from service.embedding.base import Role, Vectors, l2_normalise

_WORD = re.compile(r"\w+", re.UNICODE)


class FakeEmbedder:
    def __init__(self, dim: int = 64, model_id: str = "fake/hashing-bow") -> None:
        self._dim = dim
        self._model_id = model_id
        self.calls = 0
        self.texts_embedded = 0

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dim(self) -> int:
        return self._dim

    def count_tokens(self, text: str) -> int:
        return len(_WORD.findall(text)) + 2  # +2 like [CLS] and [SEP]

    def embed(self, texts: Sequence[str], role: Role = "passage") -> Vectors:
        self.calls += 1
        self.texts_embedded += len(texts)
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = [w.lower() for w in _WORD.findall(text)]
            for token in words + [f"{a} {b}" for a, b in itertools.pairwise(words)]:
                digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
                bucket = int.from_bytes(digest[:4], "little") % self._dim
                sign = 1.0 if digest[4] & 1 else -1.0
                out[row, bucket] += sign
            if not words:
                out[row, 0] = 1.0
        return l2_normalise(out)
