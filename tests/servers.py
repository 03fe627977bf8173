"""Real server processes for the tests that need one: `clustermatch serve` (or the fake-model CLI)
on a free loopback port, waited for until `/readyz` answers, and always stopped.

One helper for every such test, so that a server which does not come up in time is stopped too
(under load the old copies of this code leaked servers that lived on after their test failed).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import unused_port
from tests.factories import actor_data

WIND = "offshore wind turbine blades made of glass fibre composites"
STARTUP_SECONDS = 120.0
"""Long enough for a model load on a loaded two-core machine."""


def run_cli(env: Mapping[str, str], *args: str) -> str:
    """`python -m service.cli <args>` to completion; its stdout (it must succeed)."""
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", *args], env=dict(env), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def seed_wind_store(env: Mapping[str, str], profiles: Path) -> None:
    """The small store the multi-process tests serve: four near-copies of one wind-blade
    passage and a bakery, ingested and indexed by the CLI (other processes than the servers)."""
    rows = [actor_data(f"w{i}", [f"{WIND}, variant {i}"]) for i in range(4)]
    rows.append(actor_data("bakery", ["sourdough bread and pastry"]))
    profiles.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    run_cli(env, "ingest", str(profiles))
    run_cli(env, "reindex")


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    url: str

    def wait_ready(self, timeout: float = STARTUP_SECONDS) -> None:
        """Until `/readyz` is 200; fails (without stopping it) if the process exits or the time
        runs out."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "the server did not start"
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, and SIGKILL if it has not ended within `timeout` seconds."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def start(
    env: Mapping[str, str],
    *args: str,
    module: str = "service.cli",
    port: int | None = None,
    cwd: Path | None = None,
    capture_stderr: bool = False,
) -> ServerProcess:
    """`python -m <module> serve <args> --port P --log-level warning`, not waited for."""
    port = port or unused_port()
    command: Sequence[str] = [
        sys.executable,
        "-m",
        module,
        "serve",
        *args,
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(
        command,
        env=dict(env),
        cwd=cwd,
        stderr=subprocess.PIPE if capture_stderr else None,
        text=True,
    )
    return ServerProcess(process, f"http://127.0.0.1:{port}")


@contextmanager
def running(
    env: Mapping[str, str], *args: str, module: str = "service.cli", port: int | None = None
) -> Iterator[ServerProcess]:
    """A started and ready server for the block, stopped after it whatever happens (a server
    that never became ready included)."""
    server = start(env, *args, module=module, port=port)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
