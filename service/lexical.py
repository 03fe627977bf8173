"""BM25 over the same chunks as the vector index, so exact terms, acronyms and patent classes
(`F03D 1/06`, `PEM`, `CFRP`) are findable even where embeddings blur them.

Built in memory from the store when a generation is loaded (beside the FAISS index, before the
swap), covering the generation's chunks; passages written since get a small index of their own
(the live delta's, service.serving). Tokens are lower-cased words that may carry `/ . -` inside
(so `1/06` and `co2` survive); stop words of the five project languages are dropped; no
stemming, because stems of five languages would collide and technical terms are what this index
is for.

BM25 scores depend on corpus statistics (how many passages hold a word, how long they are), so
one index over every passage would let a private passage move the scores of public ones: a
viewer could confirm a guess about hidden text by watching its own results. `AudienceLexical`
therefore keeps one BM25 index per audience (public; one tenant's private passages; the network
passages of one owner and its networks) and a query consults only the audiences the viewer
belongs to: a passage the viewer may not see changes no statistic its scores are made of.

Raw BM25 scores of indexes with their own statistics are not comparable (fused as if they were,
a fresh passage ranked below its near-copies in the generation). So every part but the
generation's public one is weighted *alongside* public statistics (`CorpusStats`): a private or
network part with the public passages plus its own, the live delta's parts with the generation's
public passages plus their own. Public statistics are what every viewer sees, so this keeps both
promises: comparable scores, and no score made of a passage its viewer may not see.
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

from service.domain import Owner, Viewer
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
        mask = None
        if selection is not None and not selection.is_everything:
            mask = np.ones(len(self.ids), dtype=np.float32)
            if selection.allow is not None:
                mask[~np.isin(self.ids, selection.allow)] = 0.0
            if selection.deny is not None:
                mask[np.isin(self.ids, selection.deny)] = 0.0
        return self.search_tokens(tokens, k, mask)

    def search_tokens(
        self, tokens: list[str], k: int, mask: npt.NDArray[np.float32] | None = None
    ) -> tuple[npt.NDArray[np.float32], IdArray]:
        """`search` for a tokenised query; `mask` (one weight per id, 0 or 1) leaves ids out."""
        if not tokens or (self._model is None and self._weighted is None):
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
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


Bools = npt.NDArray[np.bool_]
Ints = npt.NDArray[np.int64]


class AudienceLexical:
    """BM25 per audience over passages addressed by position (into the read model's chunks, or
    the live delta's); see the module docstring for why."""

    def __init__(
        self, parts: list[tuple[int, Owner, LexicalIndex]], public_stats: CorpusStats
    ) -> None:
        self.parts = parts
        """(visibility code, owner, BM25 over that audience's passages, labelled by position);
        the public part's owner is never consulted."""
        self.public_stats = public_stats
        """The public statistics every part is weighted with (what a delta is weighted
        alongside)."""

    @classmethod
    def build(
        cls,
        positions: Ints,
        texts: Sequence[str],
        visibility: npt.NDArray[np.int8],
        owner_of: Ints,
        owners: Sequence[Owner],
        alongside: CorpusStats | None = None,
    ) -> AudienceLexical:
        """Passages at `positions` with their texts, visibility codes and owners (`owner_of`
        indexes `owners`). Without `alongside` (a generation) the public part keeps its own
        statistics; with it (the live delta), every part is weighted alongside those public
        statistics too."""
        private_group: dict[str, int] = {}
        network_group: dict[tuple[str, tuple[str, ...]], int] = {}
        audience: list[tuple[int, Owner]] = [(0, Owner())]
        private_of = np.zeros(len(owners), dtype=np.int64)
        network_of = np.zeros(len(owners), dtype=np.int64)
        for i, owner in enumerate(owners):  # per owner, not per passage
            networks = tuple(sorted(owner.networks))
            if owner.tenant not in private_group:
                private_group[owner.tenant] = len(audience)
                audience.append((2, Owner(owner.tenant)))
            if (owner.tenant, networks) not in network_group:
                network_group[(owner.tenant, networks)] = len(audience)
                audience.append((1, Owner(owner.tenant, networks)))
            private_of[i] = private_group[owner.tenant]
            network_of[i] = network_group[(owner.tenant, networks)]
        owner_of = np.asarray(owner_of, dtype=np.int64)
        vis = np.asarray(visibility)
        group = np.where(
            vis <= 0, 0, np.where(vis == 1, network_of[owner_of], private_of[owner_of])
        )
        parts = []
        public = alongside or CorpusStats(0, 0, {})
        for g in np.unique(group).tolist():  # 0, the public part, first
            members = np.flatnonzero(group == g)
            level, owner = audience[g]
            chosen = [texts[i] for i in members.tolist()]
            weigh_with = alongside if g == 0 else public
            index = LexicalIndex.build(positions[members], chosen, alongside=weigh_with)
            if g == 0:
                public = public.plus(index.stats)
            parts.append((level, owner, index))
        return cls(parts, public)

    def __len__(self) -> int:
        return sum(len(index) for _, _, index in self.parts)

    def search(
        self, query: str, k: int, viewer: Viewer, allowed: Bools | None = None
    ) -> tuple[npt.NDArray[np.float32], Ints]:
        """The best `k` positions by BM25 among the passages the viewer may see (and, with
        `allowed`, a mask over positions, only allowed ones), best first."""
        (tokens,) = tokenize([query])
        found_scores: list[npt.NDArray[np.float32]] = []
        found: list[Ints] = []
        for level, owner, index in self.parts:
            if level > 0 and viewer.level(owner) < level:
                continue
            mask = None
            if allowed is not None:
                mask = allowed[index.ids].astype(np.float32)
                if not mask.any():
                    continue
            scores, positions = index.search_tokens(tokens, k, mask)
            found_scores.append(scores)
            found.append(positions)
        if not found:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        scores = np.concatenate(found_scores)
        positions = np.concatenate(found)
        best = np.lexsort((positions, -scores))[:k]
        return scores[best], positions[best]
