"""The CLI end to end on the fake embedder: ingest -> reindex -> search/match, human and JSON."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from service.cli import main
from service.runtime import Runtime
from tests.factories import actor_data


def write_profiles(path: Path) -> Path:
    rows = [
        actor_data("wind-at", ["offshore wind turbine blades"], country="AT"),
        actor_data("wind-de", ["wind turbine blade composites"], country="DE"),
        actor_data("wind-at2", ["wind turbine blade testing"], country="AT", kind="research"),
        actor_data("bread", ["sourdough bakery"], country="IT"),
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n", encoding="utf-8")
    return path


def test_ingest_reindex_search_match(
    runtime: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ingest", str(write_profiles(tmp_path / "p.jsonl"))], runtime) == 2
    captured = capsys.readouterr()
    assert "line 5:" in captured.err and "stored 4 actors" in captured.out

    assert main(["reindex", "--json"], runtime) == 0
    report = json.loads(capsys.readouterr().out)
    # The writes were embedded as they were stored (matchable at once), so the build reuses them.
    assert report["chunks"] == 4 and report["embedded"] == 0 and report["reused"] == 4
    assert main(["reindex", "--json"], runtime) == 0
    assert json.loads(capsys.readouterr().out)["embedded"] == 0, "unchanged store: all cached"

    assert main(["search", "wind turbine blade", "--limit", "2", "--country", "at"], runtime) == 0
    out = capsys.readouterr().out
    assert "wind-at" in out and "wind-de" not in out and "bread" not in out

    assert main(["match", "wind-at", "--exclude-same", "country", "--json"], runtime) == 0
    ids = [m["actor"]["id"] for m in json.loads(capsys.readouterr().out)["matches"]]
    assert ids[0] == "wind-de" and "wind-at" not in ids and "wind-at2" not in ids


def test_errors_are_one_clear_line(runtime: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "anything"], runtime) == 0, "an empty store is no error"
    assert "clustermatch demo" in capsys.readouterr().err, "but it says how to load data"
    assert main(["search", "anything", "--country", "Germany"], runtime) == 2
    assert "--country[0]: 'Germany' is not an ISO 3166" in capsys.readouterr().err
    assert main(["ingest", "/nonexistent.jsonl"], runtime) == 2
    assert "not a readable file" in capsys.readouterr().err


def test_demo_refuses_a_filled_store(
    runtime: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = tmp_path / "demo.jsonl.gz"
    with gzip.open(demo, "wt", encoding="utf-8") as handle:
        handle.write(json.dumps(actor_data("x", ["wind"])) + "\n")
    assert main(["demo", "--file", str(demo)], runtime) == 0
    assert runtime.generations.current_id() is not None
    assert main(["demo", "--file", str(demo)], runtime) == 1
    assert "already holds 1 actors" in capsys.readouterr().err
    assert main(["demo", "--if-empty", "--file", str(demo)], runtime) == 0


def test_long_steps_report_progress_without_a_terminal(
    runtime: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    import service.cli

    monkeypatch.setattr(service.cli, "PROGRESS_EVERY", 0.0)
    assert main(["ingest", str(write_profiles(tmp_path / "p.jsonl"))], runtime) == 2
    err = capsys.readouterr().err
    assert "ingest: 1/5 lines" in err and "ingest: 5/5 lines, done in" in err
    assert main(["reindex"], runtime) == 0
    assert "reindex: 4/4 chunks, done in" in capsys.readouterr().err
