"""Prometheus metrics for one app, and the ASGI middleware that records requests.

Each app owns its registry, so two apps in one process (as in tests) never share or
double-register series.
"""

from __future__ import annotations

import time
from collections.abc import Collection

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Labels must stay few: unknown paths and methods are folded into one value each.
_METHODS = frozenset(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests",
            "HTTP requests answered, by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "http_request_duration_seconds",
            "Time from receiving a request to sending the last byte of its answer.",
            ["route", "method"],
            buckets=_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.inference_seconds = Histogram(
            "inference_duration_seconds",
            "Model inference time per image, without decoding or encoding.",
            buckets=_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.inferences_in_flight = Gauge(
            "inferences_in_flight",
            "Segment requests admitted and waiting for, or running, inference.",
            registry=self.registry,
        )
        self.queue_rejections = Counter(
            "inference_queue_rejections",
            "Segment requests refused with 503 because the inference queue was full.",
            registry=self.registry,
        )

    async def endpoint(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class MetricsMiddleware:
    """Counts and times every HTTP request, including those that end in an error."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Collection[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            route = scope["path"] if scope["path"] in self.routes else "unmatched"
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.request_seconds.labels(route, method).observe(
                time.perf_counter() - started
            )
