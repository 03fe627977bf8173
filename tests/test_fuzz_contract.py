"""Schemathesis against the app with API keys configured: every operation of the OpenAPI, with
generated valid and invalid requests (bounded, fixed seed), all checks. A failure is a place
where the service and its published contract disagree (or a 5xx)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from schemathesis.core.failures import FailureGroup  # noqa: E402

from service.api.app import create_app  # noqa: E402
from service.config import Settings  # noqa: E402
from service.embedding.fake import FakeEmbedder  # noqa: E402
from service.keys import KeyFile  # noqa: E402
from service.runtime import Runtime  # noqa: E402
from service.text import load_language_detector  # noqa: E402
from tests.factories import make_actor  # noqa: E402

SEED = 20261201
EXAMPLES = 40


def _app(root: Path) -> tuple[object, str]:
    # No rate limit: the fuzzer sends thousands of requests with one key, each must reach its
    # route (429 itself is documented on every keyed operation and tested in test_abuse.py).
    settings = Settings(
        data_dir=root / "data",
        keys_file=root / "keys.json",
        watch_seconds=60,
        rate_limit_per_second=0,
    )
    key = KeyFile(root / "keys.json").create(("read", "write", "admin"), tenant="fuzz")
    runtime = Runtime(settings, embedder=FakeEmbedder())
    runtime.ingestor.upsert(
        [make_actor(f"a{i}", [f"offshore wind blade composites {i}"]) for i in range(6)]
    )
    runtime.reindexer.run()
    # What the first write, search and explanation would load (language detector, BM25, the
    # key terms' corpus), loaded here: on a busy machine it takes longer than the client's 10 s
    # read timeout.
    load_language_detector()
    runtime.matcher.explain(runtime.matcher.search("offshore wind"))
    return create_app(runtime), key


@schemathesis.serializer("application/x-ndjson")
def _ndjson(_: Any, value: Any) -> bytes:
    """The bulk endpoint's NDJSON body: the schema says a string, sent as UTF-8 text. A generated
    non-string (a negative case) has no text form at all; it goes as bytes that are not UTF-8,
    which the server must refuse."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return b"\xff" + json.dumps(value).encode()


ROOT = Path(__import__("tempfile").mkdtemp(prefix="cm-fuzz-"))
APP, KEY = _app(ROOT)
config = schemathesis.Config.from_dict(
    {"seed": SEED, "generation": {"max-examples": EXAMPLES, "mode": "all"}}
)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP, config=config)


BASELINE = json.loads((Path(__file__).parent / "fuzz-baseline.json").read_text(encoding="utf-8"))
ACCEPTED = tuple(item["message"] for item in BASELINE["accepted_rejections"])
CONSEQUENCES = tuple(item["message"] for item in BASELINE["consequences"])


def _baselined(failure: Exception, body: str) -> bool:
    """A "schema-valid request rejected" whose every reason is a rule in the baseline file."""
    if "Schema-valid request rejected" not in str(getattr(failure, "title", "")):
        return False
    try:
        problems = json.loads(body).get("errors") or []
    except ValueError:
        return False
    messages = [p["message"] for p in problems]
    causes = [m for m in messages if not any(c in m for c in CONSEQUENCES)]
    return bool(causes) and all(any(a in m for a in ACCEPTED) for m in causes)


def _literal_on_the_wire(failure: Exception, case: Any) -> bool:
    """A known schemathesis false positive (schemathesis issues #2312, #2900): a "negative" query
    value generated as JSON `true`, `false`, `null`, `[]` or `{}` travels as a string, which a
    string parameter (a cluster id, say) rightly accepts. Only when nothing else was negated
    but the Authorization header, which this test always sends."""
    text = str(failure)
    if "Schema-violating request accepted" not in str(getattr(failure, "title", "")):
        return False
    components = [line.strip() for line in text.splitlines() if line.strip().startswith("- ")]
    others = [
        c
        for c in components
        if not c.startswith(("- query:", "- header: violates `required` (was Authorization)"))
    ]
    values = [
        v for raw in (case.query or {}).values() for v in (raw if isinstance(raw, list) else [raw])
    ]
    literal = ("true", "false", "null", "[]", "{}")
    # Any value that is not a string (an empty or nested array, an object: seen as `tenant=[]`)
    # travels as a string too.
    containers = any(raw == [] or isinstance(raw, dict) for raw in (case.query or {}).values())
    return not others and (
        containers or any(not isinstance(v, str) or v in literal for v in values)
    )


@schema.parametrize()
def test_the_api_keeps_its_published_contract(case: Any) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    response = case.call(headers=headers)
    try:
        case.validate_response(response, headers=headers)
    except FailureGroup as group:
        left = [
            f
            for f in group.exceptions
            if not _baselined(f, response.text) and not _literal_on_the_wire(f, case)
        ]
        if left:
            raise FailureGroup(left, str(group)) from None
