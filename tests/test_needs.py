"""Procurement needs: aspects, suppliers with evidence per aspect, consortia by set cover (fake
embedder: texts that share words are similar)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.cli import main
from service.domain import Actor, Owner, Viewer
from service.needs import Coverage, Need, propose_teams, split_aspects
from service.runtime import Runtime
from tests.factories import make_actor
from tests.needs_data import NEED_EN, UNCOVERED, need_actors


@pytest.fixture
def stocked(runtime: Runtime) -> Runtime:
    runtime.ingestor.upsert([Actor.parse(a) for a in need_actors()])
    runtime.reindexer.run()
    return runtime


def test_aspects_are_sentences_with_fragments_merged() -> None:
    aspects = split_aspects(NEED_EN, "en")
    assert len(aspects) == 4
    assert aspects[0].startswith("Tram fleet maintenance. The city needs vibration sensors")
    assert aspects[2].endswith("open interface. See annex two.")
    assert aspects[UNCOVERED].startswith("Underwater welding")
    many = " ".join(f"Sentence number {i} has exactly seven words." for i in range(40))
    assert len(split_aspects(many, "en")) == 24, "at most 24 aspects: neighbours merge"


def test_suppliers_cover_aspects_with_evidence_and_a_consortium_covers_the_need(
    stocked: Runtime,
) -> None:
    result = stocked.needs.match(Need(NEED_EN, title="Tram fleet"), limit=5, team_size=3)
    suppliers = {s.actor.id: s for s in result.suppliers}
    assert "needs-sensors" not in suppliers or not suppliers["needs-sensors"].covers, (
        "an actor that needs the same thing is no supplier of it"
    )
    assert suppliers["sensors"].covers == (0,)
    assert suppliers["ml-lab"].covers == (1,)
    assert suppliers["planning-software"].covers == (2,)
    (evidence,) = suppliers["sensors"].evidence
    assert evidence.aspect == 0 and "bogies" in evidence.evidence.text

    best = result.consortia[0]
    assert {m.actor.id for m in best.members} == {"sensors", "ml-lab", "planning-software"}
    assert {m.actor.id: m.covers for m in best.members} == {
        "sensors": (0,),
        "ml-lab": (1,),
        "planning-software": (2,),
    }
    assert best.covered == (0, 1, 2) and best.uncovered == (UNCOVERED,)

    pair = stocked.needs.match(Need(NEED_EN), team_size=2).consortia[0]
    assert len(pair.members) == 2 and len(pair.covered) == 2 and len(pair.uncovered) == 2


def test_filters_restrict_the_suppliers(stocked: Runtime) -> None:
    from service.store import ActorFilter

    result = stocked.needs.match(Need(NEED_EN), filters=ActorFilter(countries=("AT",)))
    assert {s.actor.country for s in result.suppliers} == {"AT"}
    assert all(m.actor.country == "AT" for c in result.consortia for m in c.members)


def test_private_text_is_never_evidence_for_another_tenant(runtime: Runtime) -> None:
    data = need_actors()[0]
    data["documents"][0]["visibility"] = "private"
    data["documents"].append(
        {"id": "public", "kind": "description", "text": "Sensors for trams and their wheels."}
    )
    runtime.ingestor.upsert([Actor.parse(data)], owner=Owner("agency-a"))
    runtime.reindexer.run()
    outsider = runtime.needs.match(Need(NEED_EN), viewer=Viewer("agency-b"))
    owner = runtime.needs.match(Need(NEED_EN), viewer=Viewer("agency-a"))
    (theirs,) = outsider.suppliers
    (ours,) = owner.suppliers
    assert theirs.covers == ours.covers == (0,), "visibility changes what is shown, never scores"
    assert {e.evidence.document_id for e in theirs.evidence} == {"public"}
    assert {e.evidence.document_id for e in ours.evidence} == {"d0"}


def test_greedy_cover_prefers_new_aspects_then_better_evidence() -> None:
    scores = np.array(  # rows: aspects; columns: actors
        [
            [0.9, 0.8, 0.0, 0.0],
            [0.9, 0.0, 0.0, 0.0],
            [0.0, 0.7, 0.6, 0.0],
            [0.0, 0.0, 0.6, 0.0],
        ],
        dtype=np.float32,
    )
    teams = propose_teams(scores, Coverage(0.5).matrix(scores), team_size=3)
    # From actor 0 (two aspects, the best evidence): actor 2 adds two aspects, actor 1 one.
    # From actor 1: actors 0 and 2 each add one, and then make actor 1 redundant: the same
    # team again. From actor 2: actor 0 again.
    assert teams == [[0, 2]]
    assert propose_teams(scores, Coverage(0.95).matrix(scores), 3) == [], "nobody covers"
    narrow = Coverage(0.5, margin=0.05).matrix(scores)
    assert narrow[0].tolist() == [True, False, False, False], "0.8 is not within 0.05 of 0.9"


def test_over_http(stocked: Runtime) -> None:
    client = TestClient(create_app(stocked))
    body = {
        "need": {
            "title": "Tram fleet",
            "text": NEED_EN,
            "cpv_codes": ["34630000", "72212000-4"],
            "country": "at",
            "region": "AT31",
        },
        "limit": 3,
        "team_size": 3,
    }
    response = client.post("/v1/needs/match", json=body)
    assert response.status_code == 200, response.text
    found = response.json()
    assert set(found) >= {"suppliers", "consortia", "aspects", "cover_threshold"}
    assert len(found["suppliers"]) == 3 and len(found["aspects"]) == 4
    supplier = found["suppliers"][0]
    assert set(supplier) == {"actor", "score", "covers", "evidence", "same_passage"}
    assert {"aspect", "text", "document_id", "score"} <= set(supplier["evidence"][0])
    consortium = found["consortia"][0]
    assert consortium["uncovered"] == [UNCOVERED]
    assert set(consortium["members"][0]) == {"actor", "covers", "evidence"}

    bad = client.post("/v1/needs/match", json=body | {"team_size": 5})
    assert bad.status_code == 422
    body["need"]["cpv_codes"] = ["3463"]
    assert client.post("/v1/needs/match", json=body).status_code == 422


def test_the_cli(stocked: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    need = tmp_path / "need.txt"
    need.write_text(NEED_EN, encoding="utf-8")
    assert main(["need", "--file", str(need), "--limit", "3"], stocked) == 0
    shown = capsys.readouterr().out
    assert "consortium 1: covers 3/4, uncovered 3" in shown and "Bogie Sensing GmbH" in shown
    assert main(["need", "--text", NEED_EN, "--json", "--country", "AT"], stocked) == 0
    found = json.loads(capsys.readouterr().out)
    assert {s["actor"]["country"] for s in found["suppliers"]} == {"AT"}
    assert main(["need"], stocked) == 2, "neither --text nor --file"


def test_a_member_the_others_make_redundant_leaves_the_team() -> None:
    scores = np.array([[0.0, 0.9], [0.6, 0.8], [0.0, 0.7]], dtype=np.float32)  # 3 aspects x 2
    # Actor 1 alone covers every aspect actor 0 covers: no consortium, actor 1 answers alone.
    assert propose_teams(scores, Coverage(0.5).matrix(scores), team_size=3) == []


def test_a_specialist_ranked_low_on_the_whole_need_still_joins_a_consortium(
    stocked: Runtime,
) -> None:
    clones = [
        make_actor(
            f"sensor-{i}",
            [
                f"Vibration sensors mounted on tram bogies measure the wear of wheels and rails, "
                f"and machine learning models forecast failures, variant {i}."
            ],
        )
        for i in range(45)
    ]
    stocked.ingestor.upsert(clones)
    stocked.reindexer.run()
    result = stocked.needs.match(Need(NEED_EN), limit=45)
    ranked = [s.actor.id for s in result.suppliers]
    assert "planning-software" not in ranked[:40], "the planning specialist ranks low overall"
    best = result.consortia[0]
    assert "planning-software" in {m.actor.id for m in best.members}
    assert {0, 1, 2} <= set(best.covered)
