"""Sentence-aware chunking of profile texts into pieces that fit the embedding model.

Token counting, the part that costs (the MiniLM tokenizer needs ~2 µs per token, far more than
spaCy's sentence splitting): each sentence is counted once, alone, and a chunk's size is taken as
the sum of its sentences' counts without their special tokens, plus the special tokens once. For
WordPiece (MiniLM) that sum is exact, because its pre-tokenizer splits at whitespace and
punctuation anyway; SentencePiece models are additive at spaces too, nearly always. To keep the
`max_tokens` promise for any tokenizer, every chunk of two or more sentences is counted once more,
whole, before it is returned, and re-packed exactly in the rare case the sum was too low. Counting
the joined candidate after every added sentence instead was ~15x slower on 12-sentence texts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial

from tokenizers import Tokenizer

from service.text.pipelines import get_pipeline, resolve_language

CountTokens = Callable[[str], int]

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")

# Texts up to max_tokens * this many chars are first counted whole: if they fit, they are the only
# chunk and skip spaCy (most short statements). Longer texts rarely fit, so they skip the count.
# Either way the chunks are the same; the bound only decides which route is cheaper.
_FAST_PATH_CHARS_PER_TOKEN = 6


def tokenizer_counter(tokenizer_json_path: str) -> CountTokens:
    """A token counter for a HuggingFace `tokenizer.json`, special tokens included.

    Truncation and padding are switched off: the all-MiniLM-L6-v2 `tokenizer.json` has both set
    to 128, so a naive `len(encode(text).ids)` answers 128 for every text.
    """
    tokenizer = Tokenizer.from_file(tokenizer_json_path)
    tokenizer.no_truncation()
    tokenizer.no_padding()

    def count_tokens(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=True).ids)

    return count_tokens


@dataclass(frozen=True, slots=True)
class _Unit:
    """A sentence, or a window of a sentence too long for one chunk.

    `space_after` records whether the input had whitespace after it, `tokens` its token count
    without special tokens.
    """

    text: str
    space_after: bool
    whole_sentence: bool
    tokens: int = 0


def _join(units: Sequence[_Unit]) -> str:
    # Keeps the input's own spacing: a sentence boundary inside "end.Next" gains no space.
    parts = [unit.text + (" " if unit.space_after else "") for unit in units]
    return "".join(parts).rstrip()


def _join_slice(units: Sequence[_Unit], start: int, size: int) -> str:
    return _join(units[start : start + size])


def _text_slice(text: str, start: int, size: int) -> str:
    return text[start : start + size]


def _paragraphs(text: str) -> list[str]:
    """Whitespace-normalised paragraphs; a blank line also ends a sentence (headings, lists)."""
    paragraphs = (" ".join(block.split()) for block in _PARAGRAPH_BREAK.split(text))
    return [paragraph for paragraph in paragraphs if paragraph]


def _segments(paragraph: str, limit: int) -> Iterator[tuple[str, bool]]:
    """Pieces of at most `limit` chars (spaCy's max_length), cut at a space where possible.

    Yields (piece, space_after). Inputs are capped far below spaCy's limit, so this is a guard,
    not a code path real texts take.
    """
    while len(paragraph) > limit:
        cut = paragraph.rfind(" ", 0, limit + 1)
        if cut <= 0:
            yield paragraph[:limit], False
            paragraph = paragraph[limit:]
        else:
            yield paragraph[:cut], True
            paragraph = paragraph[cut + 1 :]
    yield paragraph, True


class Chunker:
    """Packs consecutive sentences into chunks of at most `max_tokens` tokens (specials included).

    Each chunk after the first begins with the last whole sentence(s) of the previous chunk, as
    long as they come to at most `overlap_tokens` tokens (special tokens not counted), so that a
    statement cut at a chunk border still appears whole in one chunk. A sentence longer than
    `max_tokens` is cut at word boundaries (a single word too long for a chunk, at characters);
    nothing is ever dropped. Whitespace is normalised to single spaces.
    """

    def __init__(
        self, count_tokens: CountTokens, max_tokens: int, overlap_tokens: int = 32
    ) -> None:
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be positive, got {max_tokens}")
        if not 0 <= overlap_tokens < max_tokens:
            raise ValueError(f"overlap_tokens must be in [0, max_tokens), got {overlap_tokens}")
        self._count = count_tokens
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens
        self._special_tokens: int | None = None  # counted on first use: constructor stays cheap

    def chunk(self, text: str, language: str) -> list[str]:
        """Chunks of one text; `language` picks the sentence splitter (unknown codes: "xx")."""
        return self.chunk_many([(text, language)])[0]

    def chunk_many(self, texts: Sequence[tuple[str, str]]) -> list[list[str]]:
        """Chunks of many (text, language) pairs, in input order, one `nlp.pipe` per language."""
        results: list[list[str]] = [[] for _ in texts]
        by_language: dict[str, list[tuple[int, list[str]]]] = {}
        fast_path_chars = self.max_tokens * _FAST_PATH_CHARS_PER_TOKEN
        for index, (text, language) in enumerate(texts):
            paragraphs = _paragraphs(text)
            if not paragraphs:
                continue
            whole = " ".join(paragraphs)
            if len(whole) <= fast_path_chars and self._fits(whole):
                results[index] = [whole]
                continue
            code = resolve_language(language)
            by_language.setdefault(code, []).append((index, paragraphs))
        for code, items in by_language.items():
            for index, sentences in self._sentences(code, items):
                results[index] = self._pack(self._units(sentences))
        return results

    def _sentences(
        self, code: str, items: list[tuple[int, list[str]]]
    ) -> Iterator[tuple[int, list[tuple[str, bool]]]]:
        """(sentence, space_after) of each text, from one `nlp.pipe` stream over all paragraphs."""
        nlp = get_pipeline(code)
        # Only sentence boundaries are needed here; the lemmatizer would be wasted work.
        disable = [name for name in nlp.pipe_names if name != "sentencizer"]
        segments = (
            (segment, (index, space_after))
            for index, paragraphs in items
            for paragraph in paragraphs
            for segment, space_after in _segments(paragraph, nlp.max_length)
        )
        current_index = -1
        sentences: list[tuple[str, bool]] = []
        for doc, (index, space_after) in nlp.pipe(segments, as_tuples=True, disable=disable):
            if index != current_index:
                if sentences:
                    yield current_index, sentences
                current_index, sentences = index, []
            spans = list(doc.sents)
            for span in spans[:-1]:
                sentences.append((span.text, bool(span[-1].whitespace_)))
            sentences.append((spans[-1].text, space_after))
        if sentences:
            yield current_index, sentences

    def _units(self, sentences: list[tuple[str, bool]]) -> Iterator[_Unit]:
        """Counted sentences; those too long for a chunk come as windows that fit."""
        specials = self._specials()
        for text, space_after in sentences:
            count = self._count(text)
            if count <= self.max_tokens:
                yield _Unit(text, space_after, whole_sentence=True, tokens=count - specials)
            else:
                yield from self._windows(text, space_after)

    def _pack(self, units: Iterator[_Unit]) -> list[str]:
        """Greedy packing: add units while the chunk's summed count fits, then start the next."""
        budget = self.max_tokens - self._specials()
        chunks: list[str] = []
        current: list[_Unit] = []
        used = 0
        for unit in units:
            if current and used + unit.tokens <= budget:
                current.append(unit)
                used += unit.tokens
                continue
            if current:
                chunks.extend(self._checked(current))
                current = self._carry_over(current)
                used = sum(carried.tokens for carried in current)
                # The overlap must not push the new unit out of the chunk: shed it from the front.
                while current and used + unit.tokens > budget:
                    used -= current.pop(0).tokens
            current.append(unit)
            used += unit.tokens
        if current:
            chunks.extend(self._checked(current))
        return chunks

    def _checked(self, units: list[_Unit]) -> list[str]:
        """The chunk of `units`, counted whole; re-packed exactly if the summed count was low."""
        text = _join(units)
        if len(units) == 1 or self._fits(text):
            return [text]
        chunks = []
        start = 0
        while start < len(units):
            size, _ = self._longest_fit(partial(_join_slice, units, start), len(units) - start)
            chunks.append(_join_slice(units, start, size))
            start += size
        return chunks

    def _carry_over(self, chunk: list[_Unit]) -> list[_Unit]:
        """The last whole sentences of `chunk` that together stay within `overlap_tokens`."""
        tail: list[_Unit] = []
        total = 0
        for unit in reversed(chunk):
            if not unit.whole_sentence or total + unit.tokens > self.overlap_tokens:
                break
            tail.insert(0, unit)
            total += unit.tokens
        return tail

    def _windows(self, sentence: str, space_after: bool) -> Iterator[_Unit]:
        """Cuts an over-long sentence at spaces into the longest windows that fit."""
        specials = self._specials()
        words = [_Unit(word, True, whole_sentence=False) for word in sentence.split(" ")]
        words[-1] = _Unit(words[-1].text, space_after, whole_sentence=False)
        # Every word costs at least one token, so no window can hold more words than this.
        max_words = max(1, self.max_tokens - specials)
        start = 0
        while start < len(words):
            upper = min(max_words, len(words) - start)
            size, count = self._longest_fit(partial(_join_slice, words, start), upper)
            if count > self.max_tokens:  # a single word too long for a chunk
                yield from self._character_windows(words[start])
            else:
                text = _join_slice(words, start, size)
                trailing = words[start + size - 1].space_after
                yield _Unit(text, trailing, whole_sentence=False, tokens=count - specials)
            start += size

    def _character_windows(self, word: _Unit) -> Iterator[_Unit]:
        """Cuts a single word too long for a chunk (a URL, a base64 blob) at characters."""
        specials = self._specials()
        text = word.text
        start = 0
        while start < len(text):
            size, count = self._longest_fit(partial(_text_slice, text, start), len(text) - start)
            end = start + size
            trailing = word.space_after and end == len(text)
            yield _Unit(text[start:end], trailing, whole_sentence=False, tokens=count - specials)
            start = end

    def _longest_fit(self, piece: Callable[[int], str], upper: int) -> tuple[int, int]:
        """Largest n in [1, upper] whose `piece(n)` fits, with its count (binary search).

        Counts grow with n, so bisection applies. Returns n = 1 even when `piece(1)` does not
        fit, so that callers always make progress; the count tells them.
        """
        low, high = 1, upper
        low_count: int | None = None
        while low < high:
            middle = (low + high + 1) // 2
            count = self._count(piece(middle))
            if count <= self.max_tokens:
                low, low_count = middle, count
            else:
                high = middle - 1
        if low_count is None:
            low_count = self._count(piece(low))
        return low, low_count

    def _fits(self, text: str) -> bool:
        return self._count(text) <= self.max_tokens

    def _specials(self) -> int:
        if self._special_tokens is None:
            self._special_tokens = self._count("")
        return self._special_tokens
