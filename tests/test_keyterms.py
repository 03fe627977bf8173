"""Shared key terms: lemmatised, ranked by how telling they are, in the text's own language.

The passages are written by the project for this test.
"""

from __future__ import annotations

from service.runtime import Runtime
from service.text.keyterms import KeyTerms, candidate_terms
from tests.factories import make_actor

CORPUS = [
    ("The project develops new methods.", "en"),
    ("The project studies new markets.", "en"),
    ("A project on turbine blade erosion.", "en"),
    ("Electrolyser membranes for hydrogen.", "en"),
]


def test_candidates_are_lemmatised_content_ngrams() -> None:
    terms = candidate_terms("Offshore wind turbines with composite rotor blades", "en")
    assert "turbine" in terms and terms["turbine"] == "turbines"
    assert "composite rotor blade" in terms
    assert "with" not in " ".join(terms), "stop words break runs and are never terms"


def test_shared_terms_rank_rare_words_first() -> None:
    key_terms = KeyTerms(lambda: CORPUS)
    shared = key_terms.shared(
        "A project testing turbine blades against erosion",
        "en",
        "This project measures erosion of turbine blades offshore",
        "en",
    )
    assert shared[0] in ("turbine blades", "erosion")
    assert "project" in shared and shared.index("project") > shared.index("erosion")
    assert "turbine" not in shared, "a word inside a shown phrase is not repeated"


def test_german_terms_use_the_german_pipeline() -> None:
    terms = candidate_terms("Wir entwickeln Sensoren für Windkraftanlagen", "de")
    assert "windkraftanlagen" in terms or "windkraftanlage" in terms
    assert not any(t.startswith("für") for t in terms)


def test_explain_adds_key_terms_to_evidence(runtime: Runtime) -> None:
    runtime.ingestor.upsert(
        [
            make_actor("h2", ["Electrolyser membranes for green hydrogen production"]),
            make_actor("bread", ["Sourdough bread production"]),
        ]
    )
    runtime.reindexer.run()
    result = runtime.matcher.explain(runtime.matcher.search("hydrogen electrolyser", limit=1))
    (evidence,) = result.matches[0].evidence
    assert (
        set(evidence.key_terms) >= {"hydrogen"} and evidence.query_text == "hydrogen electrolyser"
    )
