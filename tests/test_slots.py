"""Ranking turns (service.api.slots): how many searches and matches run at once in a worker,
and what a request that cannot get one in time is told. Counted, never timed."""

from __future__ import annotations

import threading

import anyio
import fastapi.dependencies.utils
import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.api.deps import request_deadline
from service.api.slots import Slots
from service.deadline import Deadline
from service.domain import Actor
from service.errors import TimedOut
from service.runtime import Runtime
from tests.factories import actor_data


def spent() -> Deadline:
    """A budget already used up (its clock jumps past it)."""
    ticks = iter([0.0] + [10.0] * 100)
    return Deadline(1.0, lambda: next(ticks))


def test_at_most_n_hold_a_turn_and_the_others_wait_for_one() -> None:
    turns = Slots(2)
    inside, most = 0, 0
    lock = threading.Lock()
    release = threading.Event()
    entered = threading.Semaphore(0)

    def work() -> None:
        nonlocal inside, most
        with turns.turn():
            with lock:
                inside += 1
                most = max(most, inside)
            entered.release()
            release.wait(10)
            with lock:
                inside -= 1

    threads = [threading.Thread(target=work) for _ in range(5)]
    for t in threads:
        t.start()
    for _ in range(2):
        assert entered.acquire(timeout=10)
    while turns.waiting < 3:  # the other three block on a turn
        threading.Event().wait(0.01)
    assert inside == 2
    release.set()
    for t in threads:
        t.join(10)
    assert most == 2 and inside == 0 and turns.waiting == 0
    with turns.turn(), turns.turn():  # every turn came back
        pass


def test_a_wait_past_the_budget_is_timed_out_and_frees_nothing() -> None:
    turns = Slots(1)
    with turns.turn():
        with (
            pytest.raises(TimedOut, match=r"ranking turns.*CLUSTERMATCH_RANKING_TURNS"),
            turns.turn(spent()),
        ):
            raise AssertionError("must not get a turn")
        assert turns.waiting == 0
    with turns.turn(spent()):  # a free turn is taken whatever the budget says
        pass


def test_a_freed_turn_goes_to_the_oldest_waiter_not_to_a_newcomer() -> None:
    turns = Slots(1)
    order: list[int] = []

    def work(i: int) -> None:
        with turns.turn():
            order.append(i)

    waiters = []
    with turns.turn():
        for i in range(3):  # queued one after the other, so their order is known
            waiters.append(threading.Thread(target=work, args=(i,)))
            waiters[-1].start()
            while turns.waiting < i + 1:
                threading.Event().wait(0.001)
    # The turn was handed to waiter 0 as it was given back: a request arriving now (before
    # waiter 0 has even run) finds none free, and its spent budget times it out.
    with pytest.raises(TimedOut), turns.turn(spent()):
        raise AssertionError("a newcomer must not jump the queue")
    for thread in waiters:
        thread.join(10)
    assert order == [0, 1, 2] and turns.waiting == 0


def test_the_api_answers_503_when_no_turn_frees_in_time(runtime: Runtime) -> None:
    runtime.ingestor.upsert([Actor.parse(actor_data("a0", ["laser welding of steel frames"]))])
    app = create_app(runtime)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert app.state.services.turns.n == runtime.settings.ranking_turns == 2
        app.state.services.turns = busy = Slots(1)
        with busy.turn():  # the worker's only turn is taken by a long request
            app.dependency_overrides[request_deadline] = spent
            # (a search embeds its query first, so a spent budget stops it there: the next
            # test shows that it waits for a turn too)
            for response in (
                client.post("/v1/match", json={"actor_id": "a0"}),
                client.get("/v1/actors/a0/matches"),
            ):
                assert response.status_code == 503
                assert "ranking turns" in response.json()["detail"]
            app.dependency_overrides.clear()
        assert client.get("/v1/search", params={"q": "laser welding"}).status_code == 200


def test_a_search_embeds_its_query_before_it_waits_for_a_turn(runtime: Runtime) -> None:
    """So the queries of waiting searches share one model call (micro-batching) instead of
    being embedded one by one behind the turns."""
    runtime.ingestor.upsert([Actor.parse(actor_data("a0", ["laser welding of steel frames"]))])
    app = create_app(runtime)
    queries: list[str] = []
    embedder = runtime.matcher.embedder
    embed = embedder.embed

    def counting(texts, role="passage"):  # type: ignore[no-untyped-def]
        if role == "query":
            queries.extend(texts)
        return embed(texts, role)

    embedder.embed = counting  # type: ignore[method-assign]
    with TestClient(app) as client:
        app.state.services.turns = busy = Slots(1)
        with busy.turn():
            waiter, answers = _search_waiting_for_a_turn(client, busy)
            assert queries == ["laser welding"]  # embedded while it waits
            assert answers == []
        waiter.join(30)
        assert answers == [200]


def test_a_search_explains_its_results_inside_its_turn(runtime: Runtime) -> None:
    """Key terms detect languages and lemmatise (Python, as costly as the ranking): the turn
    bounds that work as it bounds a match's, only the query's embedding comes before it."""
    runtime.ingestor.upsert([Actor.parse(actor_data("a0", ["laser welding of steel frames"]))])
    app = create_app(runtime)
    held: list[bool] = []
    explain = runtime.matcher.explain

    def explaining(result):  # type: ignore[no-untyped-def]
        try:
            with app.state.services.turns.turn(spent()):  # the worker's only turn is free?
                held.append(False)
        except TimedOut:
            held.append(True)
        return explain(result)

    runtime.matcher.explain = explaining  # type: ignore[method-assign]
    with TestClient(app) as client:
        app.state.services.turns = Slots(1)
        answer = client.get("/v1/search", params={"q": "laser welding", "explain": "true"})
        assert answer.status_code == 200
        assert held == [True]


def test_probes_answer_while_every_pool_thread_waits_for_a_turn(runtime: Runtime) -> None:
    """Under overload the thread pool is full of requests waiting for a turn. /healthz (on the
    event loop), /readyz and /metrics (on threads of their own) do not queue behind them: a
    probe that did would get a busy, healthy worker restarted or taken out of service. The
    scrape counts the queue."""
    runtime.ingestor.upsert([Actor.parse(actor_data("a0", ["laser welding of steel frames"]))])
    app = create_app(runtime)
    with TestClient(app) as client:
        client.portal.call(_pool_threads, 1)
        app.state.services.turns = busy = Slots(1)
        with busy.turn():
            # the search holds the pool's only thread while it waits
            waiter, answers = _search_waiting_for_a_turn(client, busy)
            probes: dict[str, str] = {}

            def probe() -> None:
                for path in ("/healthz", "/readyz", "/metrics"):
                    answer = client.get(path)
                    probes[path] = f"{answer.status_code} {answer.text}"

            prober = threading.Thread(target=probe)
            prober.start()
            prober.join(30)
            assert answers == [], "the search still waits"
            assert all(v.startswith("200 ") for v in probes.values()), probes
            assert '"status":"ready"' in probes["/readyz"]
            assert "clustermatch_ranking_waiting 1.0" in probes["/metrics"]
        waiter.join(30)
        assert answers == [200]
        assert "clustermatch_ranking_waiting 0.0" in client.get("/metrics").text


async def _pool_threads(n: int) -> None:
    """The app's thread pool (anyio's default limiter of its event loop) set to `n` threads."""
    anyio.to_thread.current_default_thread_limiter().total_tokens = n


def _search_waiting_for_a_turn(
    client: TestClient, turns: Slots
) -> tuple[threading.Thread, list[int]]:
    """A search sent from a thread, once it waits for one of `turns` (all held by the caller);
    its status code lands in the list when it is answered."""
    answers: list[int] = []
    waiter = threading.Thread(
        target=lambda: answers.append(
            client.get("/v1/search", params={"q": "laser welding"}).status_code
        )
    )
    waiter.start()
    while turns.waiting < 1:
        threading.Event().wait(0.01)
    return waiter, answers


def test_no_dependency_of_the_api_takes_a_pool_thread(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FastAPI runs a plain `def` dependency in the thread pool (`run_in_threadpool` in
    fastapi.dependencies.utils): one hop per dependency and request, queued under overload
    behind the requests waiting there for a ranking turn. Counted over a search, a match and
    a read (14 hops with the dependencies as plain `def`, before 8e0fe5a)."""
    runtime.ingestor.upsert([Actor.parse(actor_data("a0", ["laser welding of steel frames"]))])
    hops: list[str] = []
    hop = fastapi.dependencies.utils.run_in_threadpool

    async def counting(call, *args, **kwargs):  # type: ignore[no-untyped-def]
        hops.append(getattr(call, "__qualname__", repr(call)))
        return await hop(call, *args, **kwargs)

    monkeypatch.setattr(fastapi.dependencies.utils, "run_in_threadpool", counting)
    with TestClient(create_app(runtime)) as client:
        assert client.get("/v1/search", params={"q": "laser welding"}).status_code == 200
        assert client.post("/v1/match", json={"actor_id": "a0"}).status_code == 200
        assert client.get("/v1/actors/a0").status_code == 200
    assert hops == []
