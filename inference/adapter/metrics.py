"""Prometheus metrics for the adapter (`GET /metrics`), recorded by a plain ASGI middleware.

One registry per app, so several apps in one process (tests) do not collide. Route labels come from
a fixed set: unknown paths share the label "other", so scanners cannot blow up the series count.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

ASGIApp = Callable[..., Any]
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class AdapterMetrics:
    def __init__(self, inflight: Callable[[], int]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "adapter_http_requests", "HTTP requests answered", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "adapter_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.texts = Counter("adapter_embedded_texts", "Texts embedded", registry=self.registry)
        self.tokens = Counter("adapter_prompt_tokens", "Tokens the model used", registry=self.registry)
        self.triton_errors = Counter(
            "adapter_triton_errors", "Triton calls that failed", ["kind"], registry=self.registry
        )
        inflight_gauge = Gauge(
            "adapter_triton_inflight_requests",
            "Requests sent to Triton, not yet answered",
            registry=self.registry,
        )
        inflight_gauge.set_function(lambda: float(inflight()))

    def record_embeddings(self, texts: int, tokens: int) -> None:
        self.texts.inc(texts)
        self.tokens.inc(tokens)


class MetricsMiddleware:
    """Counts and times every HTTP request by route and status, without Starlette's BaseHTTPMiddleware."""

    def __init__(self, app: ASGIApp, metrics: AdapterMetrics, routes: Iterable[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = frozenset(routes)
        self._latency = {route: metrics.latency.labels(route) for route in [*self.routes, "other"]}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in self.routes else "other"
        started = time.perf_counter()
        status = 500  # if the app dies before answering, the server answers 500

        async def send_and_note(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self._latency[route].observe(time.perf_counter() - started)
            self.metrics.requests.labels(route, str(status)).inc()
