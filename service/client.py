"""The CLI as a client of a running server: `clustermatch search` answers in milliseconds from a
server that has the model and the index loaded, instead of loading both for one query.

`--server auto` (the default) asks the configured address (`CLUSTERMATCH_HOST`:`PORT`) when a
server answers there within a fraction of a second; `--server URL` insists on that server;
`--server none` always answers in this process. `CLUSTERMATCH_API_KEY` is sent when set.
"""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

from service.config import Settings
from service.errors import ClusterMatchError, FieldProblem, InvalidInput, NotFound

PROBE_SECONDS = 0.3
KEY_ENV = "CLUSTERMATCH_API_KEY"


def find_server(choice: str, settings: Settings) -> str | None:
    """The base URL to ask, or None to answer locally."""
    import httpx

    if choice == "none":
        return None
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    url = f"http://{host}:{settings.port}" if choice == "auto" else choice.rstrip("/")
    try:
        up = httpx.get(f"{url}/healthz", timeout=PROBE_SECONDS).status_code == 200
    except httpx.HTTPError:
        up = False
    if not up and choice != "auto":
        raise ClusterMatchError(f"no clustermatch server answers at {url}")
    return url if up else None


def call(url: str, method: str, path: str, **request: Any) -> dict[str, Any]:
    """One API call; problems come back as the errors the local path would raise."""
    import httpx

    key = os.environ.get(KEY_ENV)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        response = httpx.request(method, f"{url}{path}", headers=headers, timeout=120, **request)
    except httpx.HTTPError as exc:
        raise ClusterMatchError(f"the server at {url} did not answer: {exc}") from None
    body: dict[str, Any] = response.json()
    if response.status_code == 422:
        raise InvalidInput([FieldProblem(e["field"], e["message"]) for e in body.get("errors", [])])
    if response.status_code == 404:
        raise NotFound(body.get("detail", "not found"))
    if response.status_code >= 400:
        raise ClusterMatchError(f"{response.status_code} {body.get('title')}: {body.get('detail')}")
    return body


def as_result(body: dict[str, Any], key: str) -> Any:
    """The JSON of a search or match response with attribute access, printable like a local
    `MatchResult`."""

    def wrap(value: Any) -> Any:
        if isinstance(value, dict):
            return SimpleNamespace(**{k: wrap(v) for k, v in value.items()})
        if isinstance(value, list):
            return [wrap(v) for v in value]
        return value

    return SimpleNamespace(
        matches=wrap(body[key]), generation=body["generation"], model=body["model"]
    )
