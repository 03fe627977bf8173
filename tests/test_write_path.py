"""What one write costs the store, counted (statements and transactions, never seconds): a PUT
reads and writes its own rows only, whatever the live delta and the store already hold."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.config import Settings
from service.embedding.fake import FakeEmbedder
from service.runtime import Runtime
from tests.factories import actor_data, make_actor

PUT_STATEMENTS = 22
"""owner check 1; the write 8 (old hashes, delete, actor, documents, chunks, change count,
audit, BEGIN IMMEDIATE); the delta 6 (one read: chunks, cached vectors, sectors, clusters,
actors; then the new vectors); the answer 3 (the actor's chunks, the change count; no news
probe: the write's own delta read just looked, `delta_probe_seconds`); and a BEGIN for each of
the 6 transactions except the write's, counted with it above (4 + 2)."""
PUT_TRANSACTIONS = 6


class Statements:
    """Every statement the store's engine sends, by kind (BEGIN, SELECT, INSERT, ...)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.seen: list[str] = []
        sa.event.listen(engine, "before_cursor_execute", self._note)

    def _note(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.seen.append(statement)

    def during(self, action: Any) -> Counter[str]:
        start = len(self.seen)
        action()
        return Counter(s.split()[0].upper() for s in self.seen[start:])


@pytest.fixture
def served(settings: Settings) -> Iterator[tuple[Runtime, TestClient]]:
    # A probe for other processes' chunks at most once an hour: the counts below do not depend
    # on how slow the machine is (at the default 0.25 s a PUT slower than that would probe).
    # The same for the app's background loops (the watcher every 2 s, alert checks every 5 s):
    # the engine counts their statements too, and 300 PUTs on a slow machine outlast both.
    settings = settings.model_copy(
        update={
            "delta_probe_seconds": 3600.0,
            "watch_seconds": 3600.0,
            "alert_check_seconds": 3600.0,
        }
    )
    runtime = Runtime(settings, embedder=FakeEmbedder())
    runtime.ingestor.upsert([make_actor(f"seed-{i}", [f"seed text {i}"]) for i in range(20)])
    runtime.reindexer.run()
    runtime.index.reload()  # serving the generation, as a server's watcher would
    with TestClient(create_app(runtime)) as client:
        yield runtime, client
    runtime.close()


def put(client: TestClient, actor_id: str, texts: list[str]) -> None:
    body = actor_data(actor_id, texts)
    del body["id"]
    response = client.put(f"/v1/actors/{actor_id}", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["matchable"] == {"as_query": True, "as_candidate": True}


def test_a_put_costs_the_same_statements_with_a_small_or_a_large_delta(
    served: tuple[Runtime, TestClient],
) -> None:
    runtime, client = served
    counted = Statements(runtime.sql_store.engine)
    embedder = runtime.embedder
    assert isinstance(embedder, FakeEmbedder)
    put(client, "warm", ["warm one", "warm two"])  # first-use work (compiled statements, ...)

    def one(i: int) -> tuple[Counter[str], int]:
        texts = embedder.texts_embedded
        kinds = counted.during(lambda: put(client, f"w{i}", [f"passage {i} a", f"passage {i} b"]))
        return kinds, embedder.texts_embedded - texts

    early, early_texts = one(0)
    for i in range(1, 300):
        put(client, f"w{i}", [f"passage {i} a", f"passage {i} b"])
    late, late_texts = one(300)
    assert runtime.index.delta_size() > 600
    assert early == late, "the delta's size changes no statement a PUT sends"
    assert early_texts == late_texts == 2, "and the PUT embeds its own two passages, once"
    assert sum(early.values()) == PUT_STATEMENTS, early
    assert early["BEGIN"] == PUT_TRANSACTIONS, early


def test_the_delta_reads_what_is_new_in_one_transaction(
    served: tuple[Runtime, TestClient],
) -> None:
    runtime, _ = served
    counted = Statements(runtime.sql_store.engine)
    assert runtime.index.delta_size() == 0
    actor = make_actor("x", ["new text"])
    runtime.store.upsert_actors([(actor, runtime.prepare(actor))])  # stored, not yet embedded
    kinds = counted.during(lambda: runtime.index.refresh_delta(embed=False))
    assert kinds["BEGIN"] == 2, "the news probe, then one read of chunks, vectors and actors"
    assert runtime.index.delta_size() == 0, "without embedding, a chunk lacking a vector waits"
    kinds = counted.during(lambda: runtime.index.refresh_delta(embed=True))
    assert kinds["BEGIN"] == 2 and kinds["INSERT"] == 1, "one read, one write of the vectors"
    assert runtime.index.delta_size() == 1
    kinds = counted.during(lambda: runtime.index.refresh_delta(embed=False))
    assert sum(kinds.values()) == 2, "nothing new: the probe only (BEGIN, max)"
