"""Prometheus metrics of one app (its own registry, so several apps in one process never clash)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "clustermatch_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.002, 0.005, 0.01, 0.02, 0.04, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.rebuild_seconds = Histogram(
            "clustermatch_rebuild_duration_seconds",
            "Duration of index rebuilds started by this process",
            registry=self.registry,
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600),
        )
        self.index_chunks = Gauge(
            "clustermatch_index_chunks", "Chunks in the served generation", registry=self.registry
        )
        self.index_actors = Gauge(
            "clustermatch_index_actors", "Actors in the served generation", registry=self.registry
        )
        self.ranking_waiting = Gauge(
            "clustermatch_ranking_waiting",
            "Searches and matches of this worker waiting for a ranking turn now "
            "(CLUSTERMATCH_RANKING_TURNS); a queue that stays above zero asks for more workers",
            registry=self.registry,
        )
        self.connections_rebalanced = Counter(
            "clustermatch_connections_rebalanced",
            "Connections this worker closed because it held more than its share of the port's "
            "open connections (service.api.balance); the clients reconnected",
            registry=self.registry,
        )


class LatencyMiddleware:
    """Times every HTTP request and labels it with its route template (not the raw path, which
    would make one time series per actor id)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def record_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", "unmatched")
            self.metrics.latency.labels(scope["method"], template, str(status["code"])).observe(
                time.perf_counter() - started
            )
