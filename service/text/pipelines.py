"""spaCy pipelines per language, built on first use and kept for the life of the process.

No trained spaCy pipeline for German, Italian, Swedish or Romanian is installable offline
(docs: MODELS.md), so every language gets the same shape: `spacy.blank(lang)` + the rule-based
`sentencizer` + the lookup lemmatizer where spacy-lookups-data has a `lemma_lookup` table for
that language (de, it, sv, ro, en and most other European languages; not fi, el, pl, sk, sl, bg,
et, lv, ga). Codes spaCy does not know fall back to the multi-language blank pipeline "xx".

The pipelines are shared by all threads. Only the tokenizer touches shared state (it adds new
strings to the pipeline's vocabulary), so a long-running process grows slowly with the vocabulary
it has seen.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import re
import sys
import threading
from collections.abc import Sequence
from functools import lru_cache
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spacy.language import Language

# spaCy itself is imported inside the functions below (through `_spacy()`), so that a process
# that never touches text does not pay for it.

FALLBACK_LANGUAGE = "xx"

# spaCy's default limit (1,000,000 chars) guards the memory of parsers and NER models. A blank
# pipeline with a sentencizer and a lookup lemmatizer stays small on such texts, and our inputs
# are capped at 100,000 chars, so we keep the limit but state it: callers with longer text must
# split it (the Chunker does).
MAX_LENGTH = 1_000_000

_LANGUAGE_CODE = re.compile(r"[a-z]{2,3}")

_pipelines: dict[str, Language] = {}
_build_locks: dict[str, threading.Lock] = {}
_build_locks_guard = threading.Lock()


class _HideTorch(importlib.abc.MetaPathFinder):
    """Makes `import torch` fail in one thread, for the length of one import of spaCy.

    thinc (spaCy's ML library) imports torch whenever it is installed, for wrappers of PyTorch
    models that blank pipelines never use: +122 MiB of heap and ~1.6 s per process (onnx-fp32
    server, bench_memory.py). thinc catches the ImportError and sets `has_torch = False`, which
    changes nothing for a sentencizer and a lookup lemmatizer. Other threads are not affected:
    a torch backend loading in parallel imports torch as usual, and so does anything later.
    """

    def __init__(self) -> None:
        self.thread = threading.get_ident()

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if threading.get_ident() == self.thread and fullname.partition(".")[0] == "torch":
            raise ModuleNotFoundError(f"torch is hidden while spaCy loads: {fullname}")
        return None


_spacy_lock = threading.Lock()


def _spacy() -> ModuleType:
    """`import spacy`, without torch unless torch is imported already (or is imported by another
    thread meanwhile: then thinc finds it, as it always did)."""
    with _spacy_lock:  # held for one import; after that a dictionary look-up
        if "spacy" not in sys.modules:
            hide = _HideTorch()
            sys.meta_path.insert(0, hide)
            try:
                import spacy  # noqa: F401
            finally:
                sys.meta_path.remove(hide)
    return sys.modules["spacy"]


def resolve_language(lang: str) -> str:
    """The spaCy language code used for `lang` ("de-AT" -> "de"); "xx" when spaCy lacks it."""
    primary = re.split(r"[-_]", lang.strip().lower(), maxsplit=1)[0]
    return _resolve(primary)


@lru_cache(maxsize=256)
def _resolve(code: str) -> str:
    # The regex comes first: spaCy imports `spacy.lang.<code>`, and arbitrary input has no
    # business reaching importlib.
    if not _LANGUAGE_CODE.fullmatch(code):
        return FALLBACK_LANGUAGE
    _spacy()
    from spacy.util import get_lang_class

    try:
        get_lang_class(code)
    except ImportError:
        return FALLBACK_LANGUAGE
    return code


def has_lemma_tables(code: str) -> bool:
    """Whether spacy-lookups-data ships the table the lookup lemmatizer needs for `code`."""
    _spacy()
    from spacy.util import registry

    if code not in registry.lookups:
        return False
    tables: dict[str, object] = registry.lookups.get(code)
    return "lemma_lookup" in tables


def get_pipeline(lang: str) -> Language:
    """The cached pipeline for `lang` (any code; unknown ones share the "xx" pipeline)."""
    code = resolve_language(lang)
    nlp = _pipelines.get(code)
    if nlp is not None:
        return nlp
    # One lock per language: building Swedish (~2 s of table loading) must not hold up a
    # request that needs the already-built German pipeline.
    with _build_locks_guard:
        lock = _build_locks.setdefault(code, threading.Lock())
    with lock:
        nlp = _pipelines.get(code)
        if nlp is None:
            nlp = _build(code)
            _pipelines[code] = nlp
    return nlp


def _build(code: str) -> Language:
    spacy = _spacy()
    try:
        nlp = spacy.blank(code)
    except ImportError:
        # A few languages (ja, ko, th, vi, ...) need extra tokenizer packages we do not install.
        return get_pipeline(FALLBACK_LANGUAGE)
    nlp.max_length = MAX_LENGTH
    nlp.add_pipe("sentencizer")
    if has_lemma_tables(code):
        # "lookup" mode: the default "rule" mode needs part-of-speech tags, which a blank
        # pipeline does not have.
        nlp.add_pipe("lemmatizer", config={"mode": "lookup"})
    nlp.initialize()  # loads the lemma tables from spacy-lookups-data; no network involved
    return nlp
