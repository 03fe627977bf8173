"""Ingest: per-line errors with line numbers, valid lines kept, long texts chunked whole."""

from __future__ import annotations

import json

from service.runtime import Runtime
from tests.factories import actor_data


def test_bad_lines_reported_good_lines_stored(runtime: Runtime) -> None:
    bad_kind = actor_data("b", ["text"]) | {"kind": "startup"}
    empty_text = actor_data("c", ["text"])
    empty_text["documents"][0]["text"] = ""
    lines = [
        json.dumps(actor_data("a", ["wind turbines"])),
        "{not json",
        json.dumps(bad_kind),
        "",
        json.dumps(empty_text),
        json.dumps(actor_data("d", ["solar cells"], country="DE")),
        json.dumps(actor_data("a", ["wind turbines, replaced"])),
    ]
    report = runtime.ingestor.ingest_lines(lines)
    assert report.created == 2 and report.replaced == 1
    assert [(e.line, e.actor_id) for e in report.errors] == [(2, None), (3, "b"), (5, "c")]
    assert "kind" in report.errors[1].message and "startup" in report.errors[1].message
    assert "documents[0].text" in report.errors[2].message
    assert [w.line for w in report.warnings] == [7]
    assert runtime.store.counts().actors == 2
    stored = runtime.store.get_actor("a")
    assert stored is not None and stored.documents[0].text == "wind turbines, replaced"


def test_long_workshop_note_is_chunked_not_truncated(runtime: Runtime) -> None:
    sentences = [f"Sentence {i} describes competence number {i} in detail." for i in range(400)]
    note = " ".join(sentences)
    data = actor_data("w", [note])
    data["documents"][0]["kind"] = "workshop_note"
    runtime.ingestor.ingest_lines([json.dumps(data)])
    chunks = runtime.store.chunks_of_actors(["w"])
    assert len(chunks) > 10
    limit = runtime.profile.chunk_tokens
    assert all(runtime.embedder.count_tokens(c.text) <= limit for c in chunks)
    joined = " ".join(c.text for c in chunks)
    for i in (0, 137, 399):
        assert f"Sentence {i} describes" in joined, "no sentence is lost"


def test_language_is_detected_when_absent(runtime: Runtime) -> None:
    data = actor_data("de", ["x"])
    data["documents"][0] = {
        "id": "d0",
        "kind": "self_assessment",
        "text": "Wir entwickeln Sensorsysteme für die Zustandsüberwachung von Windkraftanlagen.",
    }
    runtime.ingestor.ingest_lines([json.dumps(data)])
    actor = runtime.store.get_actor("de")
    assert actor is not None and actor.documents[0].language == "de"
