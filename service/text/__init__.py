"""Text processing: language identification, spaCy pipelines per language, sentence chunking.

Nothing heavy happens at import time: the language detector and each spaCy pipeline are built on
first use (or explicitly, e.g. `load_language_detector()` at service start-up).
"""

from service.text.chunking import Chunker, CountTokens, tokenizer_counter
from service.text.language import (
    SUPPORTED_LANGUAGES,
    detect_language,
    detect_languages,
    load_language_detector,
)
from service.text.pipelines import (
    FALLBACK_LANGUAGE,
    get_pipeline,
    has_lemma_tables,
    resolve_language,
)

__all__ = [
    "FALLBACK_LANGUAGE",
    "SUPPORTED_LANGUAGES",
    "Chunker",
    "CountTokens",
    "detect_language",
    "detect_languages",
    "get_pipeline",
    "has_lemma_tables",
    "load_language_detector",
    "resolve_language",
    "tokenizer_counter",
]
