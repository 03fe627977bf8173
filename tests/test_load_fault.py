"""scripts/load_fault.py, test-sized: a real server (fake embedder) under 16 clients for a few
seconds while rebuilds are published by other processes, one rebuild is SIGKILLed at a failpoint
and the server itself is SIGKILLed and restarted; every check of the script must hold. The
checker's own verdicts are tested on hand-made calls, so a violation cannot go unseen."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from service.config import CHECKOUT_DIR


def load_script() -> ModuleType:
    path = CHECKOUT_DIR / "scripts" / "load_fault.py"
    spec = importlib.util.spec_from_file_location("load_fault", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["load_fault"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


lf = load_script()


def test_the_checker_sees_a_deleted_actor_returned_after_its_delete() -> None:
    deleted = {"x": 10.0}
    before = lf.Call("search", 9.0, 10.5, 200, returned=("x",))  # started before: allowed
    after = lf.Call("match", 10.2, 10.4, 200, returned=("y", "x"))
    assert lf.deleted_returned([before, after], deleted) == [
        {"op": "match", "actor": "x", "after_s": pytest.approx(0.2)}
    ]


def test_the_checker_excuses_only_the_restart_window() -> None:
    window = lf.Window(5.0, 8.0)
    calls = [
        lf.Call("search", 4.0, 5.5, None, problem="RemoteProtocolError"),  # in flight at kill
        lf.Call("put", 6.0, 6.1, None, problem="ConnectError"),
        lf.Call("search", 9.0, 9.1, 500, problem="boom"),
        lf.Call("get", 9.0, 9.1, 404, problem="acknowledged actor missing"),
        lf.Call("match", 9.0, 9.2, 200),
    ]
    verdict = lf.judge(calls, window)
    assert verdict["inside_restart_window"] == {"requests": 2, "failed": 2}
    assert (verdict["5xx"], verdict["failed_connections"], verdict["unexpected"]) == (1, 0, 2)
    assert verdict["by_op"]["get"]["4xx"] == 1


def test_the_checker_reads_background_errors_from_the_server_log(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text(
        "INFO uvicorn: started\n"
        "ERROR clustermatch.serving: index watcher: could not refresh\n"
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\n'
        "sqlite3.IntegrityError: UNIQUE constraint failed\n"
        "WARNING clustermatch.api: something else\n",
        encoding="utf-8",
    )
    assert lf.logged_errors(log) == [
        "ERROR clustermatch.serving: index watcher: could not refresh | "
        "sqlite3.IntegrityError: UNIQUE constraint failed"
    ]


@pytest.mark.slow
def test_load_with_rebuilds_a_killed_rebuild_and_a_restart_loses_nothing(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    code = lf.main(
        [
            "--module",
            "tests.fake_cli",
            "--seconds",
            "6",
            "--clients",
            "16",
            "--seed-actors",
            "30",
            "--rebuild-gap",
            "0.5",
            "--kill-rebuild",
            "1",
            "--restart-at",
            "0.6",
            "--data-dir",
            str(tmp_path / "run"),
            "--out",
            str(out),
        ]
    )
    result = json.loads(out.read_text())
    assert code == 0, result["problems"]
    assert all(result["by_op"][op]["requests"] > 0 for op in lf.OPS), result["by_op"]
    assert result["rebuilds"]["counts"].get("killed") == 1
    assert result["rebuilds"]["counts"].get("published", 0) >= 1
    assert result["restart_window_s"] is not None
    store = result["store_after_rebuild"]
    assert store["acknowledged_present"] > 0 and store["acknowledged_deleted"] > 0
