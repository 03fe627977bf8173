"""Shared key terms: why a query passage and a matched passage belong together, in words.

Candidate terms are runs of content words (not stop words, not numbers) cut into 1- to 3-grams,
compared by their lemmas (spaCy lookup lemmatizer, per language), so "turbines" meets "turbine".
A shared term is ranked by how much it contributes: the summed inverse document frequency of its
words over the indexed passages, so "electrolyser membrane" outranks "project" or "development".
Without trained pipelines the lemmas are rough (see docs/design notes); compounds such as
"Rotorblätter" only meet themselves.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable, Iterable

from service.text.pipelines import get_pipeline

MAX_NGRAM = 3
MIN_CHARS = 3


def candidate_terms(text: str, language: str) -> dict[str, str]:
    """Lemma key -> surface form, for every 1-3-gram inside a run of content words."""
    doc = get_pipeline(language)(text)
    terms: dict[str, str] = {}
    run: list[tuple[str, str]] = []

    def flush() -> None:
        for size in range(1, MAX_NGRAM + 1):
            for start in range(len(run) - size + 1):
                part = run[start : start + size]
                key = " ".join(lemma for lemma, _ in part)
                terms.setdefault(key, " ".join(surface for _, surface in part))
        run.clear()

    for token in doc:
        content = token.is_alpha and not token.is_stop and len(token.text) >= MIN_CHARS
        if content:
            run.append(((token.lemma_ or token.text).lower(), token.text))
        else:
            flush()
    flush()
    return terms


class KeyTerms:
    """Ranks shared terms by IDF over a corpus read once, lazily, from `corpus()`."""

    def __init__(self, corpus: Callable[[], Iterable[tuple[str, str]]]) -> None:
        self._corpus = corpus
        self._idf: dict[str, float] | None = None
        self._default_idf = 1.0
        self._lock = threading.Lock()

    def _weights(self) -> dict[str, float]:
        if self._idf is None:
            with self._lock:
                if self._idf is None:
                    frequency: Counter[str] = Counter()
                    passages = 0
                    for text, language in self._corpus():
                        passages += 1
                        words = {k for k in candidate_terms(text, language) if " " not in k}
                        frequency.update(words)
                    self._default_idf = math.log(1 + passages)
                    self._idf = {w: math.log(1 + passages / (1 + n)) for w, n in frequency.items()}
        return self._idf

    def weight(self, term: str) -> float:
        idf = self._weights()
        return sum(idf.get(word, self._default_idf) for word in term.split())

    def shared(
        self,
        query_text: str,
        query_language: str,
        text: str,
        language: str,
        top: int = 5,
    ) -> list[str]:
        """The terms both passages use, most telling first; a term sharing a word with one
        already picked is left out ("rotor" adds nothing once "composite rotor blade" is shown,
        nor does "blade tip" once it overlaps)."""
        found = candidate_terms(text, language)
        common = set(candidate_terms(query_text, query_language)) & set(found)
        ranked = sorted(common, key=lambda t: (-self.weight(t), t))
        return [found[t] for t in non_overlapping(ranked, top)]


def non_overlapping(ranked: Iterable[str], top: int) -> list[str]:
    """The first `top` terms of `ranked`, none sharing a word with one picked before."""
    picked: list[str] = []
    used: set[str] = set()
    for term in ranked:
        words = set(term.split())
        if words & used:
            continue
        used |= words
        picked.append(term)
        if len(picked) == top:
            break
    return picked
