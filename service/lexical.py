"""BM25 over the same chunks as the vector index, so exact terms, acronyms and patent classes
(`F03D 1/06`, `PEM`, `CFRP`) are findable even where embeddings blur them.

Tokens are lower-cased words that may carry `/ . -` inside (so `1/06` and `co2` survive); stop
words of the five project languages are dropped; no stemming, because stems of five languages
would collide and technical terms are what this index is for. Scores are bm25s' "lucene" formula
(k1 1.5, b 0.75): for each query token (a repeated one counted each time)
`idf * tf / (tf + k1 * (1 - b + b * length / mean length))`, `idf = log(1 + (N - df + .5) /
(df + .5))`.

**Audiences.** BM25 scores depend on corpus statistics (how many passages hold a word, how long
they are), so statistics over every passage would let a private passage move the scores of public
ones: a viewer could confirm a guess about hidden text by watching its own results. Every passage
therefore belongs to one audience (public; one tenant's private passages; the network passages of
one owner and its networks), and its weights are computed from the statistics of the public
passages plus, for a non-public audience, its own audience's passages. A query consults only the
audiences the viewer belongs to: a passage the viewer may not see changes no statistic its scores
are made of. Weighting every audience *alongside* the public statistics also keeps raw scores of
different audiences comparable (fused as if they were, a fresh passage would rank below its
near-copies).

**Two indexes, one formula.**
- `GenerationLexical`: the generation's postings, built once at publish time (service.reindex)
  into `lexical/` beside the read model, checksummed in the manifest and memory-mapped on load,
  so every worker shares the pages and starts without tokenising anything. A sorted vocabulary,
  CSR postings (term -> chunk positions of the read model, with float32 weights precomputed from
  their audience's statistics), the audience of each position. A query adds only the postings of
  its own tokens into a score buffer and takes top-k over the positions it touched; the viewer's
  audiences and the request's filter mask are gathers over those positions. A generation
  published before these files existed gets them built in memory from the store when it is
  loaded (service.serving).
- `DeltaLexical`: the live delta's, append-only. A written passage adds its raw term counts to
  the postings of its tokens and its length and document frequencies to its audience's counters;
  a deleted or superseded one is masked and its counts are subtracted. Weights are computed at
  query time over the query tokens' postings, with the generation's public statistics plus the
  delta's current ones. So one write costs the same at 10 or 20,000 delta chunks, and a query's
  scores equal those of a rebuild over the live delta.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from service.domain import Owner, Viewer
from service.fsutil import fsync_path

TOKEN_PATTERN = r"(?u)\b\w[\w/.-]*\w\b|\b\w\b"
K1, B = 1.5, 0.75
"""bm25s' defaults (method "lucene"); the evaluation's BM25 baseline uses bm25s itself, and
tests/test_lexical.py checks these scores against it."""
FOLDER = "lexical"
FORMAT = 1

Bools = npt.NDArray[np.bool_]
Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float32]
Audience = tuple[int, Owner]
"""(visibility level, owner): the public audience is `(0, Owner())`, whose owner is never
consulted."""
PUBLIC: Audience = (0, Owner())

_TOKEN = re.compile(TOKEN_PATTERN)


STOP_WORD_LANGUAGES = ("en", "de", "it", "sv", "ro")


@cache
def stop_words() -> frozenset[str]:
    """spaCy's stop-word lists of the five project languages. They are plain data modules
    (`STOP_WORDS = set(...)`, no imports), read here without importing the spaCy package:
    `import spacy.lang.en.stop_words` imports spaCy, thinc and torch (1.7 s and their heap), which
    a worker's first search paid (BENCHMARKS.md, one million chunks)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("spacy")  # locates the package without importing it
    assert spec is not None and spec.submodule_search_locations, "spaCy is not installed"
    root = Path(next(iter(spec.submodule_search_locations)))
    words: set[str] = set()
    for language in STOP_WORD_LANGUAGES:
        namespace: dict[str, object] = {}
        path = root / "lang" / language / "stop_words.py"
        exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), namespace)
        found = namespace["STOP_WORDS"]
        assert isinstance(found, set)
        words |= found
    return frozenset(words)


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """What bm25s.tokenize(lower=True, token_pattern=TOKEN_PATTERN, stopwords=...) returns, without
    its per-text rebuild of the stop-word set."""
    stops = stop_words()
    return [[t for t in _TOKEN.findall(text.lower()) if t not in stops] for text in texts]


def audience_of(visibility: int, owner: Owner) -> Audience:
    """The audience a passage of this visibility code and owner is weighted with."""
    if visibility <= 0:
        return PUBLIC
    if visibility == 1:
        return (1, Owner(owner.tenant, tuple(sorted(owner.networks))))
    return (2, Owner(owner.tenant))


def visible_audiences(audiences: Sequence[Audience], viewer: Viewer) -> Bools | None:
    """Which audiences the viewer belongs to (None for the operator: all of them)."""
    if viewer.tenant is None:
        return None
    return np.array(
        [level == 0 or viewer.level(owner) >= level for level, owner in audiences], dtype=np.bool_
    )


def idf(documents: Any, found: Any) -> Any:
    """bm25s' "lucene" idf (scalars or arrays)."""
    return np.log(1 + (documents - found + 0.5) / (found + 0.5))


def tf_part(tf: Any, length: Any, mean_length: Any) -> Any:
    return tf / (tf + K1 * ((1 - B) + B * length / mean_length))


def _top(scores: Floats, positions: Ints, k: int) -> tuple[Floats, Ints]:
    """The best `k` by score (positive ones only), ties by position: a partition, then a sort of
    the few that can make it."""
    keep = scores > 0
    scores, positions = scores[keep], positions[keep]
    if k <= 0 or not len(scores):
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    if len(scores) > k:
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        near = np.flatnonzero(scores >= kth)
        scores, positions = scores[near], positions[near]
    best = np.lexsort((positions, -scores))[:k]
    return scores[best].astype(np.float32), positions[best].astype(np.int64)


# --- the generation's postings --------------------------------------------------------------


class Terms:
    """A sorted vocabulary in one UTF-8 blob with offsets (memory-mappable, nothing to build on
    load); a lookup is a bisection."""

    def __init__(self, blob: npt.NDArray[np.uint8], offsets: Ints) -> None:
        self.blob = blob
        self.offsets = offsets
        self._bytes = blob.data
        """The blob sliced as bytes: a bisection step is a slice, not a numpy object."""

    @classmethod
    def of(cls, sorted_words: Sequence[bytes]) -> Terms:
        offsets = np.zeros(len(sorted_words) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(w) for w in sorted_words])
        blob = np.frombuffer(b"".join(sorted_words), dtype=np.uint8)
        return cls(blob, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def _word(self, i: int) -> bytes:
        return self._bytes[self.offsets[i] : self.offsets[i + 1]].tobytes()

    def find(self, word: str) -> int:
        """The term id of `word`, -1 where unknown."""
        wanted = word.encode()
        lo, hi = 0, len(self)
        while lo < hi:
            mid = (lo + hi) // 2
            if self._word(mid) < wanted:
                lo = mid + 1
            else:
                hi = mid
        return lo if lo < len(self) and self._word(lo) == wanted else -1


@dataclass(eq=False)
class GenerationLexical:
    """BM25 postings over the read model's chunk positions (see the module docstring)."""

    terms: Terms
    term_start: Ints
    """The postings of term `t` are `term_start[t]:term_start[t + 1]`."""
    positions: npt.NDArray[np.int32]
    weights: Floats
    audience_of: npt.NDArray[np.int32]
    """Per read-model position its audience (index into `audiences`), -1 where not indexed."""
    audiences: list[Audience]
    public_documents: int
    public_length: int
    public_df: npt.NDArray[np.int32]
    """Per term how many public passages hold it (what the delta is weighted alongside)."""

    def __post_init__(self) -> None:
        self._buffers: list[Floats] = []
        """Score buffers not in use, one float per position, all zero: a query takes one and
        gives it back, so a worker holds as many as it ran lexical queries at once, not one
        per thread it ever had."""
        self.postings_touched = 0
        """Postings a query added into its score buffer, summed (tests count work with it)."""

    # --- building --------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        size: int,
        positions: Ints,
        texts: Sequence[str],
        visibility: npt.NDArray[np.int8],
        owners: Sequence[Owner],
    ) -> GenerationLexical:
        """Postings over `size` positions, of which `positions` have texts, visibility codes
        and owners (same order)."""
        code: dict[Audience, int] = {PUBLIC: 0}
        part = np.array(
            [
                code.setdefault(audience_of(int(v), o), len(code))
                for v, o in zip(np.asarray(visibility).tolist(), owners, strict=True)
            ],
            dtype=np.int64,
        )
        tokens = tokenize(texts)
        documents = len(tokens)
        lengths = np.array([len(t) for t in tokens], dtype=np.int64)
        vocabulary: dict[str, int] = {}
        term_of_token = np.array(
            [vocabulary.setdefault(w, len(vocabulary)) for doc in tokens for w in doc],
            dtype=np.int64,
        )
        del tokens
        # One posting per distinct (term, passage), its count the term frequency.
        doc_of_token = np.repeat(np.arange(documents, dtype=np.int64), lengths)
        pairs, tf = np.unique(term_of_token * max(documents, 1) + doc_of_token, return_counts=True)
        del term_of_token, doc_of_token
        term, doc = pairs // max(documents, 1), pairs % max(documents, 1)
        parts = len(code)
        post_part = part[doc]
        public = part == 0
        public_documents, public_length = int(public.sum()), int(lengths[public].sum())
        public_df = np.bincount(term[post_part == 0], minlength=len(vocabulary))
        _, inverse, counts = np.unique(
            term * parts + post_part, return_inverse=True, return_counts=True
        )
        own_df = counts[inverse]
        own_documents = np.bincount(part, minlength=parts)
        own_length = np.bincount(part, weights=lengths, minlength=parts)
        non_public = post_part != 0
        n = public_documents + np.where(non_public, own_documents[post_part], 0)
        total = public_length + np.where(non_public, own_length[post_part], 0)
        df = np.where(non_public, public_df[term] + own_df, own_df)
        mean = np.where(total > 0, total / np.maximum(n, 1), 1.0)
        weights = (idf(n, df) * tf_part(tf, lengths[doc], mean)).astype(np.float32)
        # The vocabulary sorted by its UTF-8 bytes (code point order), postings by term then
        # passage.
        words = [w.encode() for w in vocabulary]
        order = sorted(range(len(words)), key=words.__getitem__)
        rank = np.zeros(len(words), dtype=np.int64)
        rank[np.array(order, dtype=np.int64)] = np.arange(len(words))
        by = np.lexsort((doc, rank[term])) if len(term) else np.zeros(0, np.int64)
        term_start = np.zeros(len(words) + 1, dtype=np.int64)
        term_start[1:] = np.cumsum(np.bincount(rank[term], minlength=len(words)))
        audience = np.full(size, -1, dtype=np.int32)
        audience[np.asarray(positions, dtype=np.int64)] = part
        return cls(
            terms=Terms.of([words[i] for i in order]),
            term_start=term_start,
            positions=np.asarray(positions, dtype=np.int64)[doc[by]].astype(np.int32),
            weights=weights[by],
            audience_of=audience,
            audiences=sorted(code, key=code.__getitem__),
            public_documents=public_documents,
            public_length=public_length,
            public_df=public_df[np.array(order, dtype=np.int64)].astype(np.int32),
        )

    # --- persistence -----------------------------------------------------------------------

    _ARRAYS = ("term_start", "positions", "weights", "audience_of", "public_df")

    def save(self, generation_dir: Path) -> None:
        folder = generation_dir / FOLDER
        folder.mkdir()
        arrays = {name: getattr(self, name) for name in self._ARRAYS}
        arrays |= {"term_blob": self.terms.blob, "term_offsets": self.terms.offsets}
        for name, array in arrays.items():
            path = folder / f"{name}.npy"
            np.save(path, array)
            fsync_path(path)
        meta = {
            "format": FORMAT,
            "audiences": [[level, o.tenant, list(o.networks)] for level, o in self.audiences],
            "public_documents": self.public_documents,
            "public_length": self.public_length,
        }
        path = folder / "meta.json"
        path.write_text(json.dumps(meta), encoding="utf-8")
        fsync_path(path)
        fsync_path(folder)

    @classmethod
    def exists(cls, generation_dir: Path) -> bool:
        return (generation_dir / FOLDER / "meta.json").is_file()

    @classmethod
    def load(cls, generation_dir: Path) -> GenerationLexical:
        folder = generation_dir / FOLDER

        def array(name: str) -> Any:
            # A plain ndarray over the mapping (np.memmap's Python-level slicing costs
            # microseconds per posting list and per bisection step).
            return np.asarray(np.load(folder / f"{name}.npy", mmap_mode="r"))

        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        return cls(
            terms=Terms(array("term_blob"), array("term_offsets")),
            audiences=[(level, Owner(t, tuple(n))) for level, t, n in meta["audiences"]],
            public_documents=int(meta["public_documents"]),
            public_length=int(meta["public_length"]),
            **{name: array(name) for name in cls._ARRAYS},
        )

    # --- queries ---------------------------------------------------------------------------

    def public_frequency(self, token: str) -> int:
        t = self.terms.find(token)
        return int(self.public_df[t]) if t >= 0 else 0

    def search(
        self, query: str, k: int, viewer: Viewer, allowed: Bools | None = None
    ) -> tuple[Floats, Ints]:
        """The best `k` positions by BM25 among the passages the viewer may see (and, with
        `allowed`, a mask over positions, only allowed ones), best first."""
        (tokens,) = tokenize([query])
        try:
            buffer = self._buffers.pop()  # atomic under the GIL, like the append below
        except IndexError:
            buffer = np.zeros(len(self.audience_of), dtype=np.float32)
        at, scores = self._accumulate(tokens, buffer)
        self._buffers.append(buffer)  # not after an error: it may hold scores
        keep = np.ones(len(at), dtype=np.bool_)
        visible = visible_audiences(self.audiences, viewer)
        if visible is not None and not visible.all():
            keep &= visible[self.audience_of[at]]
        if allowed is not None:
            keep &= allowed[at]
        return _top(scores[keep], at[keep], k)

    def _accumulate(self, tokens: list[str], buffer: Floats) -> tuple[Ints, Floats]:
        """The positions the tokens' postings touch, each once, and their summed weights;
        `buffer` is left all zero."""
        touched: list[npt.NDArray[np.int32]] = []
        for token, repeats in Counter(tokens).items():
            t = self.terms.find(token)
            if t < 0:
                continue
            start, end = int(self.term_start[t]), int(self.term_start[t + 1])
            hit = self.positions[start:end]
            touched.append(hit[buffer[hit] == 0])  # weights are > 0: zero means not yet touched
            buffer[hit] += self.weights[start:end] * np.float32(repeats)
            self.postings_touched += end - start
        if not touched:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        at: Ints = np.concatenate(touched).astype(np.int64)
        scores = buffer[at]
        buffer[at] = 0.0
        return at, scores


def for_readmodel(readmodel: Any, ids: Ints, texts: Sequence[str]) -> GenerationLexical:
    """The generation's BM25 over the passages `ids` (chunk ids, with their `texts`) that its
    read model holds; owners and visibility come from the read model."""
    positions = readmodel.positions_of_ids(np.asarray(ids, dtype=np.int64))
    kept = np.flatnonzero(positions >= 0)
    positions = positions[kept]
    rows = readmodel.chunk_actor[positions]
    present, owner_of = np.unique(rows, return_inverse=True)
    owner_rows = [readmodel.owner(int(r)) for r in present.tolist()]
    return GenerationLexical.build(
        len(readmodel.chunk_ids),
        positions,
        [texts[i] for i in kept.tolist()],
        readmodel.chunk_visibility[positions],
        [owner_rows[i] for i in owner_of.tolist()],
    )


# --- the live delta's postings ----------------------------------------------------------------


class _Column:
    """An append-only numpy column (amortised O(1) appends; a `view()` taken stays valid)."""

    def __init__(self, dtype: type) -> None:
        self._buffer: npt.NDArray[Any] = np.zeros(64, dtype=dtype)
        self.n = 0

    def append(self, value: Any) -> None:
        if self.n == len(self._buffer):
            bigger = np.zeros(2 * len(self._buffer), dtype=self._buffer.dtype)
            bigger[: self.n] = self._buffer[: self.n]
            self._buffer = bigger
        self._buffer[self.n] = value
        self.n += 1

    def view(self) -> npt.NDArray[Any]:
        return self._buffer


class DeltaLexical:
    """BM25 over the live delta's passages, addressed by delta position, in O(change): see the
    module docstring. One writer at a time (the delta lock); readers need no lock, because a
    passage's length and audience are written before its postings, and a posting's count before
    its position."""

    def __init__(self, generation: GenerationLexical | None) -> None:
        self._generation = generation
        self._postings: dict[str, tuple[list[int], list[int]]] = {}
        """Token -> (delta positions, term counts), in append order."""
        self._length = _Column(np.int64)
        self._audience = _Column(np.int64)
        self._alive = _Column(np.bool_)
        self._terms_of: list[dict[str, int]] = []
        self._code: dict[Audience, int] = {PUBLIC: 0}
        self.audiences: list[Audience] = [PUBLIC]
        self._documents: list[int] = [0]
        self._total_length: list[int] = [0]
        self._df: dict[str, dict[int, int]] = {}
        """Token -> audience -> live passages holding it."""
        self.updates = 0
        """Counters and postings written by appends and removals (tests count work with it)."""

    def __len__(self) -> int:
        return self._length.n

    def append(self, position: int, text: str, visibility: int, owner: Owner) -> None:
        """Index the passage at delta `position` (the next one: positions are appended in
        order)."""
        assert position == len(self), "delta positions are appended in order"
        (tokens,) = tokenize([text])
        counts = Counter(tokens)
        key = audience_of(visibility, owner)
        part = self._code.get(key)
        if part is None:
            part = self._code[key] = len(self.audiences)
            self.audiences.append(key)
            self._documents.append(0)
            self._total_length.append(0)
        self._length.append(len(tokens))
        self._audience.append(part)
        self._alive.append(True)
        self._terms_of.append(counts)
        self._count(part, counts, len(tokens), +1)
        for token, tf in counts.items():
            found, frequencies = self._postings.setdefault(token, ([], []))
            frequencies.append(tf)  # before the position: a reader takes as many as positions
            found.append(position)
        self.updates += len(counts)

    def remove(self, position: int) -> None:
        """A deleted or superseded passage: masked, and its counts leave the statistics."""
        alive = self._alive.view()
        if position >= len(self) or not alive[position]:
            return
        alive[position] = False
        counts = self._terms_of[position]
        self._count(
            int(self._audience.view()[position]), counts, int(self._length.view()[position]), -1
        )

    def _count(self, part: int, counts: dict[str, int], length: int, sign: int) -> None:
        self._documents[part] += sign
        self._total_length[part] += sign * length
        for token in counts:
            by_part = self._df.setdefault(token, {})
            by_part[part] = by_part.get(part, 0) + sign
        self.updates += 1 + len(counts)

    def search(self, query: str, k: int, viewer: Viewer) -> tuple[Floats, Ints]:
        """The best `k` live delta positions by BM25 among the passages the viewer may see."""
        (tokens,) = tokenize([query])
        generation = self._generation
        base_documents = generation.public_documents if generation else 0
        base_length = generation.public_length if generation else 0
        documents = np.array(self._documents, dtype=np.float64)
        lengths = np.array(self._total_length, dtype=np.float64)
        public_documents = base_documents + documents[0]
        public_length = base_length + lengths[0]
        # Every audience is weighted with the public passages plus its own (the public one with
        # the public passages alone).
        n = public_documents + documents
        total = public_length + lengths
        n[0], total[0] = public_documents, public_length
        mean = np.where(total > 0, total / np.maximum(n, 1), 1.0)
        found_at: list[Ints] = []
        found_scores: list[npt.NDArray[np.float64]] = []
        for token, repeats in Counter(tokens).items():
            entry = self._postings.get(token)
            if entry is None:
                continue
            count = len(entry[0])
            at = np.array(entry[0][:count], dtype=np.int64)
            tf = np.array(entry[1][:count], dtype=np.float64)
            by_part = self._df.get(token, {})
            df = np.array([by_part.get(p, 0) for p in range(len(self.audiences))], dtype=np.float64)
            public_df = (generation.public_frequency(token) if generation else 0) + df[0]
            df = public_df + df
            df[0] = public_df
            part = self._audience.view()[at]
            length = self._length.view()[at]
            weight = idf(n[part], df[part]) * tf_part(tf, length, mean[part])
            found_at.append(at)
            found_scores.append(weight.astype(np.float32) * np.float32(repeats))
        if not found_at:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        at = np.concatenate(found_at)
        keep = self._alive.view()[at]
        visible = visible_audiences(self.audiences, viewer)
        if visible is not None:
            keep &= visible[self._audience.view()[at]]
        positions, inverse = np.unique(at[keep], return_inverse=True)
        scores = np.zeros(len(positions), dtype=np.float32)
        np.add.at(scores, inverse, np.concatenate(found_scores)[keep])
        return _top(scores, positions, k)
