"""Bridge reports between two sides (fake embedder): pairs, connecting and one-sided themes, the
HTML page and its plot, the CLI and the JSON endpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.bridges import Side, parse_side
from service.cli import main
from service.domain import Actor, Owner, Viewer
from service.errors import InvalidInput
from service.runtime import Runtime
from tests.factories import actor_data, make_actor

HYDROGEN = "hydrogen electrolyser stacks with membrane electrodes for green steel plants"


@pytest.fixture
def regions(runtime: Runtime) -> Runtime:
    runtime.ingestor.upsert(
        [
            make_actor("at-h2", [HYDROGEN + " in Linz"], country="AT", region="AT31"),
            make_actor(
                "at-h2b", ["hydrogen electrolyser testing for trucks"], country="AT", region="AT34"
            ),
            make_actor(
                "at-rope",
                ["ski lift ropeways and cable cars for alpine resorts"],
                country="AT",
                region="AT33",
            ),
            make_actor(
                "at-rope2",
                ["ropeways maintenance for cable cars in alpine valleys"],
                country="AT",
                region="AT32",
            ),
            make_actor(
                "it-h2",
                [HYDROGEN + " near Torino"],
                country="IT",
                region="ITC1",
                clusters=["piemonte-energy"],
            ),
            make_actor("it-h2b", ["hydrogen electrolyser membranes for buses"], country="IT"),
            make_actor(
                "it-oil",
                ["olive oil pressing and bottling for cooperatives"],
                country="IT",
                region="ITI1",
            ),
            make_actor(
                "it-oil2",
                ["olive oil quality testing and pressing machines"],
                country="IT",
                region="ITF4",
            ),
            make_actor("de-x", [HYDROGEN + " in Bremen"], country="DE"),
        ]
    )
    runtime.reindexer.run()
    return runtime


def test_sides_are_parsed_from_prefixes_or_their_shape() -> None:
    assert parse_side("at", "from") == Side("country", "AT")
    assert parse_side("UK", "from") == Side("country", "GB")
    assert parse_side("AT31", "from") == Side("region", "AT31")
    assert parse_side("country:IT", "from") == Side("country", "IT")
    assert parse_side("region:at3", "from") == Side("region", "AT3")
    assert parse_side("piemonte-energy", "from") == Side("cluster", "piemonte-energy")
    assert parse_side("XX", "from") == Side("cluster", "XX"), "no country code: a cluster id"
    assert parse_side("cluster:AT31", "from") == Side("cluster", "AT31")
    with pytest.raises(InvalidInput, match="not a country code"):
        parse_side("country:XX", "from")


def test_pairs_and_themes_between_two_countries(regions: Runtime) -> None:
    report = regions.bridges.report(
        Side("country", "AT"), Side("country", "IT"), regions.index.snapshot()
    )
    assert (report.a_actors, report.b_actors) == (4, 4)
    best = report.pairs[0]
    assert (best.a.id, best.b.id) == ("at-h2", "it-h2")
    assert best.a.name == "Actor at-h2" and "Torino" in (best.b_passage.text or "")
    assert best.a_passage.document_kind == "description"
    assert all(p.a.country == "AT" and p.b.country == "IT" for p in report.pairs)
    connecting = [t.term for t in report.connecting]
    assert {"hydrogen", "electrolyser"} & set(" ".join(connecting).split())
    assert all(t.a_actors and t.b_actors for t in report.connecting)
    assert report.connecting[0].pairs >= 2, "shared by the passages of matched pairs"
    only_a = " ".join(t.term for t in report.only_a)
    only_b = " ".join(t.term for t in report.only_b)
    assert "ropeway" in only_a and "olive" in only_b
    assert "olive" not in only_a and "hydrogen" not in only_a + only_b
    assert report.a_kinds == {"description": 4}


def test_a_region_against_a_cluster(regions: Runtime) -> None:
    report = regions.bridges.report(
        parse_side("AT3", "from"), parse_side("piemonte-energy", "to"), regions.index.snapshot()
    )
    assert (report.a_actors, report.b_actors) == (4, 1)
    assert [p.b.id for p in report.pairs][:1] == ["it-h2"]
    with pytest.raises(InvalidInput, match="no actor"):
        regions.bridges.report(
            Side("country", "FR"), Side("country", "IT"), regions.index.snapshot()
        )


def test_private_text_is_neither_quoted_nor_counted(runtime: Runtime) -> None:
    hidden = actor_data("at-secret", ["public note on cable cars"], country="AT")
    hidden["documents"].append(
        {
            "id": "plan",
            "kind": "self_assessment",
            "visibility": "private",
            "text": "confidential tritium breeding blanket roadmap",
        }
    )
    runtime.ingestor.upsert([Actor.parse(hidden)], owner=Owner("agency-a"))
    runtime.ingestor.upsert([make_actor("it-1", ["cable cars for tourism"], country="IT")])
    runtime.reindexer.run()
    sides = Side("country", "AT"), Side("country", "IT")
    outsider = runtime.bridges.report(*sides, runtime.index.snapshot(), viewer=Viewer("other"))
    owner = runtime.bridges.report(*sides, runtime.index.snapshot(), viewer=Viewer("agency-a"))
    assert "tritium" not in json.dumps([t.term for t in outsider.only_a])
    assert outsider.a_kinds == {"description": 1}
    assert owner.a_kinds == {"description": 1, "self_assessment": 1}


def test_the_cli_writes_a_self_contained_page_and_its_plot(
    regions: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.html"
    code = main(
        ["report", "bridges", "--from", "AT", "--to", "IT", "--out", str(out), "--json"], regions
    )
    assert code == 0
    written = json.loads(capsys.readouterr().out)
    assert written["plot"] == str(tmp_path / "report.png") and written["pairs"] >= 1
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64," in page
    assert "@media print" in page and "http://" not in page and "https://" not in page
    assert "Actor at-h2" in page and "Actor it-h2" in page
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["report", "bridges", "--from", "AT", "--to", "IT", "--out", "r.pdf"], regions) == 2


def test_the_json_endpoint(regions: Runtime) -> None:
    client = TestClient(create_app(regions))
    found = client.get("/v1/reports/bridges", params={"from": "AT", "to": "IT", "pairs": 2})
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["from"] == {"kind": "country", "value": "AT", "actors": 4}
    assert len(body["pairs"]) == 2
    pair = body["pairs"][0]
    assert {"a", "b", "score", "a_passage", "b_passage", "key_terms", "a_also"} <= set(pair)
    assert {"connecting", "only_from", "only_to"} <= set(body)
    page = client.get("/v1/reports/bridges", params={"from": "AT", "to": "IT", "format": "html"})
    assert page.headers["content-type"].startswith("text/html")
    assert "data:image/png;base64," in page.text
    bad = client.get("/v1/reports/bridges", params={"from": "country:XX", "to": "IT"})
    assert bad.status_code == 422
