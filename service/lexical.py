"""BM25 over the same chunks as the vector index, so exact terms, acronyms and patent classes
(`F03D 1/06`, `PEM`, `CFRP`) are findable even where embeddings blur them.

Built in memory from the store when a generation is loaded (beside the FAISS index, before the
swap), covering the generation's chunks; passages written since are found by vectors until the
next rebuild. Tokens are lower-cased words that may carry `/ . -` inside (so `1/06` and `co2`
survive); stop words of the five project languages are dropped; no stemming, because stems of
five languages would collide and technical terms are what this index is for.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt

from service.index.base import ChunkSelection, IdArray

TOKEN_PATTERN = r"(?u)\b\w[\w/.-]*\w\b|\b\w\b"


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


class LexicalIndex:
    """BM25 over chunk texts, addressed by the same int64 chunk ids as the vector index."""

    def __init__(self, ids: IdArray, model: Any | None) -> None:
        self.ids = ids
        self._model = model
        """None when no passage has a single indexable word (bm25s cannot index that)."""
        self._position = {int(i): n for n, i in enumerate(ids)}

    @classmethod
    def build(cls, ids: IdArray, texts: Sequence[str]) -> LexicalIndex:
        tokens = tokenize(texts) if len(texts) else []
        model = None
        if any(tokens):  # passages of only digits, stop words or symbols leave nothing to index
            model = _bm25s().BM25()
            model.index(tokens, show_progress=False)
        return cls(np.asarray(ids, dtype=np.int64), model)

    def __len__(self) -> int:
        return len(self.ids)

    def search(
        self, query: str, k: int, selection: ChunkSelection | None = None
    ) -> tuple[npt.NDArray[np.float32], IdArray]:
        """Top-k chunk ids by BM25 (only positive scores), honouring the selection."""
        (tokens,) = tokenize([query])
        if not tokens or self._model is None:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        mask = None
        if selection is not None and not selection.is_everything:
            mask = np.ones(len(self.ids), dtype=np.float32)
            if selection.allow is not None:
                mask[~np.isin(self.ids, selection.allow)] = 0.0
            if selection.deny is not None:
                mask[np.isin(self.ids, selection.deny)] = 0.0
        k = min(k, len(self.ids))
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
