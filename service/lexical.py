"""BM25 over the same chunks as the vector index, so exact terms, acronyms and patent classes
(`F03D 1/06`, `PEM`, `CFRP`) are findable even where embeddings blur them.

Built in memory from the store when a generation is loaded (beside the FAISS index, before the
swap), covering the generation's chunks. Passages written since get a small index of their own
(the live delta's, service.serving), weighted with the statistics of the generation and the delta
together (`CorpusStats`): its scores are then the generation's, as the passage will score after
the next rebuild. (Raw BM25 scores of two indexes with their own statistics are not comparable;
fused as if they were, a fresh passage ranked below its near-copies in the generation.)

Tokens are lower-cased words that may carry `/ . -` inside (so `1/06` and `co2` survive); stop
words of the five project languages are dropped; no stemming, because stems of five languages
would collide and technical terms are what this index is for.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import chain
from typing import Any

import numpy as np
import numpy.typing as npt

from service.index.base import ChunkSelection, IdArray

TOKEN_PATTERN = r"(?u)\b\w[\w/.-]*\w\b|\b\w\b"
K1, B = 1.5, 0.75
"""bm25s' defaults (method "lucene"), which the generation's index uses; the delta's weighting
below must use the same."""


@cache
def _bm25s() -> Any:
    """bm25s, imported on first use; it sets its own logger to DEBUG on import and logs every
    index build there, so its level is lowered after the import, not before."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


@cache
def stop_words() -> frozenset[str]:
    from spacy.lang.de.stop_words import STOP_WORDS as DE
    from spacy.lang.en.stop_words import STOP_WORDS as EN
    from spacy.lang.it.stop_words import STOP_WORDS as IT
    from spacy.lang.ro.stop_words import STOP_WORDS as RO
    from spacy.lang.sv.stop_words import STOP_WORDS as SV

    return frozenset(EN | DE | IT | SV | RO)


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    tokens: list[list[str]] = _bm25s().tokenize(
        list(texts),
        token_pattern=TOKEN_PATTERN,
        stopwords=list(stop_words()),
        return_ids=False,
        show_progress=False,
    )
    return tokens


@dataclass(frozen=True)
class CorpusStats:
    """What a passage's BM25 weights depend on besides the passage: how many passages there are,
    their total length in tokens, and how many passages hold each token."""

    documents: int
    length: int
    frequencies: Mapping[str, int]

    @classmethod
    def of(cls, tokens: Sequence[Sequence[str]]) -> CorpusStats:
        frequencies = Counter(chain.from_iterable(set(doc) for doc in tokens))
        return cls(len(tokens), sum(len(doc) for doc in tokens), frequencies)

    def plus(self, other: CorpusStats) -> CorpusStats:
        merged = Counter(self.frequencies)
        merged.update(other.frequencies)
        return CorpusStats(self.documents + other.documents, self.length + other.length, merged)

    def idf(self, token: str) -> float:
        found = self.frequencies.get(token, 0)
        return math.log(1 + (self.documents - found + 0.5) / (found + 0.5))

    @property
    def mean_length(self) -> float:
        return self.length / self.documents if self.documents else 1.0


class _Weighted:
    """BM25 (bm25s' "lucene" formula) over a few passages, with the weights they get as part
    of a larger corpus described by `stats`. A sparse passages x tokens matrix of precomputed
    weights; a query is one sparse product."""

    def __init__(self, tokens: Sequence[Sequence[str]], stats: CorpusStats) -> None:
        from scipy import sparse  # type: ignore[import-untyped]

        self.vocabulary: dict[str, int] = {}
        rows: list[int] = []
        columns: list[int] = []
        weights: list[float] = []
        mean = stats.mean_length or 1.0
        for row, doc in enumerate(tokens):
            norm = K1 * ((1 - B) + B * len(doc) / mean)
            for token, tf in Counter(doc).items():
                columns.append(self.vocabulary.setdefault(token, len(self.vocabulary)))
                rows.append(row)
                weights.append(stats.idf(token) * tf / (norm + tf))
        self.matrix = sparse.csr_matrix(
            (np.array(weights, dtype=np.float32), (rows, columns)),
            shape=(len(tokens), len(self.vocabulary)),
        )

    def scores(self, query: Sequence[str]) -> npt.NDArray[np.float32]:
        counts = Counter(t for t in query if t in self.vocabulary)
        vector = np.zeros(len(self.vocabulary), dtype=np.float32)
        for token, n in counts.items():
            vector[self.vocabulary[token]] = n  # bm25s counts a repeated query token each time
        return np.asarray(self.matrix @ vector, dtype=np.float32)


class LexicalIndex:
    """BM25 over chunk texts, addressed by the same int64 chunk ids as the vector index."""

    def __init__(
        self,
        ids: IdArray,
        model: Any | None,
        stats: CorpusStats | None = None,
        weighted: _Weighted | None = None,
    ) -> None:
        self.ids = ids
        self._model = model
        """None when no passage has a single indexable word (bm25s cannot index that)."""
        self._weighted = weighted
        """Set instead of `_model` when built `alongside` another index's statistics."""
        self.stats = stats or CorpusStats(0, 0, {})
        """This index's own statistics (what another index is weighted alongside)."""
        self._position = {int(i): n for n, i in enumerate(ids)}

    @classmethod
    def build(
        cls, ids: IdArray, texts: Sequence[str], alongside: CorpusStats | None = None
    ) -> LexicalIndex:
        """BM25 over `texts`; with `alongside`, weighted as if they were part of the corpus
        those statistics describe (plus themselves), so its scores compare with that corpus's
        index."""
        tokens = tokenize(texts) if len(texts) else []
        stats = CorpusStats.of(tokens)
        ids = np.asarray(ids, dtype=np.int64)
        if alongside is not None:
            return cls(ids, None, stats, _Weighted(tokens, alongside.plus(stats)))
        model = None
        if any(tokens):  # passages of only digits, stop words or symbols leave nothing to index
            model = _bm25s().BM25(k1=K1, b=B, method="lucene")
            model.index(tokens, show_progress=False)
        return cls(ids, model, stats)

    def __len__(self) -> int:
        return len(self.ids)

    def search(
        self, query: str, k: int, selection: ChunkSelection | None = None
    ) -> tuple[npt.NDArray[np.float32], IdArray]:
        """Top-k chunk ids by BM25 (only positive scores), honouring the selection."""
        (tokens,) = tokenize([query])
        if not tokens or (self._model is None and self._weighted is None):
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        mask = None
        if selection is not None and not selection.is_everything:
            mask = np.ones(len(self.ids), dtype=np.float32)
            if selection.allow is not None:
                mask[~np.isin(self.ids, selection.allow)] = 0.0
            if selection.deny is not None:
                mask[np.isin(self.ids, selection.deny)] = 0.0
        k = min(k, len(self.ids))
        if self._weighted is not None:
            return self._top(self._weighted.scores(tokens), k, mask)
        assert self._model is not None
        try:
            positions, scores = self._model.retrieve(
                # n_threads=0: in this thread; any other value starts a thread pool per query
                [tokens],
                k=k,
                show_progress=False,
                weight_mask=mask,
                n_threads=0,
            )
        except ValueError:  # every query token is unknown to the corpus
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        keep = scores[0] > 0
        return scores[0][keep].astype(np.float32), self.ids[positions[0][keep]]

    def _top(
        self, scores: npt.NDArray[np.float32], k: int, mask: npt.NDArray[np.float32] | None
    ) -> tuple[npt.NDArray[np.float32], IdArray]:
        if mask is not None:
            scores = scores * mask
        if k <= 0 or not len(scores):
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        best = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        best = best[np.argsort(-scores[best], kind="stable")]
        best = best[scores[best] > 0]
        return scores[best].astype(np.float32), self.ids[best]
