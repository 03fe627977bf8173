"""How similar is a passage that answers an aspect of a need, per model? (`cover_above` in
models/*.json)

Two samples, both written by the project:
- the test need (tests/needs_data.py; English, and German for a multilingual model): each
  aspect's similarity to the passage written to answer it, and the best similarity to any other
  actor's passage;
- the hard cross-lingual set (data/crosslingual/hard.jsonl, English): statements of one topic
  group (they share vocabulary, and a buyer asking for one would often take another) against
  statements of other groups.

Prints the distributions; the threshold is chosen between "answers" and "does not".

    python scripts/calibrate_needs.py all-minilm-l6-v2
    python scripts/calibrate_needs.py multilingual-e5-small
"""

from __future__ import annotations

import json
import sys

import numpy as np

from service.config import CHECKOUT_DIR, ModelProfile
from service.embedding.sentence_transformers import SentenceTransformerEmbedder
from service.needs import split_aspects
from tests.needs_data import NEED_DE, NEED_EN, UNCOVERED, need_actors

ANSWERS = {0: "sensors", 1: "ml-lab", 2: "planning-software"}


def main(name: str) -> None:
    profile = ModelProfile.load(name)
    embedder = SentenceTransformerEmbedder(profile)
    actors = {
        a["id"]: [d["text"] for d in a["documents"] if d.get("intent") != "need"]
        for a in need_actors()
    }
    needs = {"en": NEED_EN} | ({"de": NEED_DE} if "multilingual" in name else {})
    for language, text in needs.items():
        aspects = split_aspects(text, language)
        q = embedder.embed(aspects, role="passage")
        for i in range(len(aspects)):
            best = {}
            for actor, texts in actors.items():
                best[actor] = float((q[i : i + 1] @ embedder.embed(texts, role="passage").T).max())
            answer = ANSWERS.get(i)
            others = max(v for k, v in best.items() if k != answer)
            mark = "uncovered" if i == UNCOVERED else f"{answer} {best[answer]:.3f}"
            print(f"{language} aspect {i}: {mark}; best other {others:.3f}")
    rows = [json.loads(line) for line in (CHECKOUT_DIR / "data/crosslingual/hard.jsonl").open()]
    vectors = embedder.embed([r["en"] for r in rows], role="passage")
    sims = vectors @ vectors.T
    groups = np.array([r["group"] for r in rows])
    same = groups[:, None] == groups[None, :]
    np.fill_diagonal(same, False)
    other = groups[:, None] != groups[None, :]
    for label, mask in (("same group", same), ("other groups", other)):
        values = sims[mask]
        print(
            f"hard set, {label}: "
            + ", ".join(f"p{p} {np.percentile(values, p):.3f}" for p in (5, 25, 50, 75, 95, 99))
        )


if __name__ == "__main__":
    main(sys.argv[1])
