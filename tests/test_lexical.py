"""BM25 as postings: the generation's scores equal bm25s' (and, per audience, the formula over
exactly the statistics that audience may be weighted with); a query touches only its terms'
postings; the live delta's scores equal a rebuild over its live passages, and one append costs
the same whatever the delta holds."""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pytest

from service.domain import OPERATOR, Owner, Viewer
from service.errors import CorruptArtifact
from service.lexical import (
    K1,
    PUBLIC,
    Audience,
    B,
    DeltaLexical,
    GenerationLexical,
    audience_of,
    tokenize,
)
from service.runtime import Runtime
from tests.factories import make_actor

WORDS = [
    "laser", "welding", "hydrogen", "composite", "blade", "turbine", "sensor", "battery",
    "F03D", "1/06", "co2", "PEM", "the", "und", "of", "recycling", "robot", "coating", "x",
]  # fmt: skip
OWNERS = [
    Owner("agency-a"),
    Owner("agency-a", ("alps",)),
    Owner("agency-b", ("north", "alps")),
    Owner("agency-c", ("north",)),
]
VIEWERS = [
    OPERATOR,
    Viewer("agency-a"),
    Viewer("agency-b", frozenset({"north"})),
    Viewer("agency-c", frozenset({"alps"})),
    Viewer("nobody"),
]

Passage = tuple[str, int, Owner]


def text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 12)))


def passages(rng: random.Random, n: int) -> list[Passage]:
    return [(text(rng), rng.choice((0, 0, 1, 2)), rng.choice(OWNERS)) for _ in range(n)]


def build(found: Sequence[Passage]) -> GenerationLexical:
    return GenerationLexical.build(
        len(found),
        np.arange(len(found)),
        [t for t, _, _ in found],
        np.array([v for _, v, _ in found], dtype=np.int8),
        [o for _, _, o in found],
    )


def dense(result: tuple[np.ndarray, np.ndarray], size: int) -> np.ndarray:
    out = np.zeros(size, dtype=np.float64)
    out[result[1]] = result[0]
    return out


def reference(
    found: Sequence[Passage | None], viewer: Viewer, query: str, base: Sequence[str] = ()
) -> np.ndarray:
    """The formula, spelled out: each passage the viewer may see, weighted with the public
    passages (and `base`, the generation's public ones for a delta) plus, if it is not public,
    its own audience's passages. `None` is a removed passage."""
    tokens = [tokenize([p[0]])[0] if p else [] for p in found]
    audiences: list[Audience | None] = [audience_of(p[1], p[2]) if p else None for p in found]
    public = [t for t, a in zip(tokens, audiences, strict=True) if a == PUBLIC]
    public += tokenize(base)
    (wanted,) = tokenize([query])
    scores = np.zeros(len(found))
    for i, audience in enumerate(audiences):
        if audience is None:
            continue
        level, owner = audience
        if level and viewer.level(owner) < level:
            continue
        corpus = list(public)
        if audience != PUBLIC:
            corpus += [t for t, a in zip(tokens, audiences, strict=True) if a == audience]
        n, total = len(corpus), sum(len(t) for t in corpus)
        mean = total / n if n and total else 1.0
        counts = Counter(tokens[i])
        for token in wanted:
            if token in counts:
                df = sum(token in t for t in corpus)
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                norm = K1 * ((1 - B) + B * len(tokens[i]) / mean)
                scores[i] += idf * counts[token] / (norm + counts[token])
    return scores


def queries(rng: random.Random) -> list[str]:
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4))) for _ in range(25)] + [
        "hydrogen hydrogen PEM",
        "unknown words only",
    ]


@pytest.mark.parametrize("seed", range(4))
def test_public_scores_equal_bm25s(seed: int) -> None:
    import bm25s

    rng = random.Random(seed)
    found = [(t, 0, Owner()) for t, _, _ in passages(rng, rng.randint(5, 120))]
    ours = build(found)
    model = bm25s.BM25(k1=K1, b=B, method="lucene")
    model.index(tokenize([t for t, _, _ in found]), show_progress=False)
    for query in queries(rng):
        (tokens,) = tokenize([query])
        known = [t for t in tokens if t in model.vocab_dict]
        expected = model.get_scores(known) if known else np.zeros(len(found))
        got = dense(ours.search(query, len(found), OPERATOR), len(found))
        assert np.allclose(got, expected, rtol=1e-5, atol=1e-6), query


@pytest.mark.parametrize("seed", range(4))
def test_audience_scores_equal_the_formula_over_what_each_viewer_may_see(seed: int) -> None:
    rng = random.Random(100 + seed)
    found = passages(rng, rng.randint(10, 80))
    ours = build(found)
    for query in queries(rng):
        for viewer in VIEWERS:
            got = dense(ours.search(query, len(found), viewer), len(found))
            assert np.allclose(got, reference(found, viewer, query), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_delta_scores_equal_a_rebuild_over_its_live_passages(seed: int) -> None:
    rng = random.Random(200 + seed)
    generation = passages(rng, rng.randint(0, 40))
    delta = DeltaLexical(build(generation) if generation else None)
    live: list[Passage | None] = []
    for step in range(60):
        if live and rng.random() < 0.2:
            gone = rng.randrange(len(live))
            delta.remove(gone)
            live[gone] = None
        else:
            passage = passages(rng, 1)[0]
            delta.append(len(live), *passage)
            live.append(passage)
        if step % 10 == 9:
            base = [t for t, v, _ in generation if v == 0]
            for query in queries(rng)[:8]:
                for viewer in VIEWERS:
                    got = dense(delta.search(query, len(live), viewer), len(live))
                    expected = reference(live, viewer, query, base)
                    assert np.allclose(got, expected, rtol=1e-5, atol=1e-6), (query, viewer)


def test_a_query_touches_only_the_postings_of_its_terms() -> None:
    rng = random.Random(7)
    common = [f"{text(rng)} common" for _ in range(2000)]
    found = [(t, 0, Owner()) for t in common] + [("rare PEM stack", 0, Owner())]
    index = build(found)
    before = index.postings_touched
    _, positions = index.search("rare", 10, OPERATOR)
    assert positions.tolist() == [2000]
    assert index.postings_touched - before == 1, "one passage holds 'rare': one posting"
    before = index.postings_touched
    index.search("rare common", 10, OPERATOR)
    assert index.postings_touched - before == 2001
    before = index.postings_touched
    index.search("nothing known", 10, OPERATOR)
    assert index.postings_touched == before


def test_one_append_costs_the_same_at_ten_or_two_thousand_delta_passages() -> None:
    rng = random.Random(8)
    costs = []
    for size in (10, 2000):
        delta = DeltaLexical(build(passages(rng, 50)))
        for position in range(size):
            delta.append(position, *passages(rng, 1)[0])
        before = delta.updates
        delta.append(size, "laser welding of composite blades for a turbine", 2, OWNERS[2])
        costs.append(delta.updates - before)
        before = delta.updates
        delta.remove(size)
        costs.append(delta.updates - before)
    assert costs[:2] == costs[2:], costs
    assert costs[0] > 0


def test_a_generation_serves_its_postings_from_files_and_checks_them(runtime: Runtime) -> None:
    runtime.ingestor.upsert(
        [make_actor(f"a{i}", [f"offshore wind blade {i}", "PEM stack"]) for i in range(8)]
    )
    runtime.reindexer.run()
    generation = runtime.index.get()
    assert generation.lexical is not None, "built at publish, loaded from the generation"
    assert generation.manifest.lexical_checksum
    found = runtime.matcher.search("blade 3", limit=3).matches
    assert found[0].actor.id == "a3"

    folder = runtime.generations.generations_dir / generation.manifest.generation
    weights = folder / "lexical" / "weights.npy"
    original = weights.read_bytes()
    weights.write_bytes(original[:-4] + b"\0\0\0\0")
    with pytest.raises(CorruptArtifact):
        runtime.generations.load(model_id=generation.manifest.model_id, dim=generation.manifest.dim)
    weights.write_bytes(original)

    # A generation published before BM25 files existed: built from the store on load, same scores.
    for path in (folder / "lexical").iterdir():
        path.unlink()
    (folder / "lexical").rmdir()
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.pop("lexical_checksum")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    old = Runtime(runtime.settings, embedder=runtime.embedder)
    try:
        assert old.index.get().lexical is None
        again = old.matcher.search("blade 3", limit=3).matches
        assert [(m.actor.id, m.score) for m in again] == [(m.actor.id, m.score) for m in found]
    finally:
        old.close()


def test_stop_words_are_spacys_lists_read_without_importing_spacy() -> None:
    """A worker's first search must not import spaCy (and with it thinc and torch)."""
    import subprocess
    import sys

    probe = (
        "import sys; from service.lexical import stop_words; words = stop_words(); "
        "print(len(words), 'spacy' in sys.modules, 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    count, spacy_loaded, torch_loaded = done.stdout.split()
    assert (spacy_loaded, torch_loaded) == ("False", "False")
    from spacy.lang.de.stop_words import STOP_WORDS as DE
    from spacy.lang.en.stop_words import STOP_WORDS as EN
    from spacy.lang.it.stop_words import STOP_WORDS as IT
    from spacy.lang.ro.stop_words import STOP_WORDS as RO
    from spacy.lang.sv.stop_words import STOP_WORDS as SV

    from service.lexical import stop_words

    assert stop_words() == frozenset(EN | DE | IT | SV | RO) and int(count) == len(stop_words())
