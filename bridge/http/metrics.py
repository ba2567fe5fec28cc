"""Prometheus metrics of the bridge's API: request counts and latency per route.

Labels are the route *template* (never the raw path or query: search text and tokens must not
end up in a monitoring system), the method and the status. Metrics are served by a separate
application bound to 127.0.0.1 only, so they are never published through the reverse proxy.
"""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

from bridge.http.errors import Handler


class BridgeMetrics:
    """One registry per application, so that several apps (tests) never collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "caducee_bridge_http_requests",
            "HTTP requests answered by the bridge API.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "caducee_bridge_http_request_duration_seconds",
            "Time to answer an HTTP request of the bridge API.",
            ("method", "route"),
            registry=self.registry,
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


METRICS: web.AppKey[BridgeMetrics] = web.AppKey("caducee_metrics", BridgeMetrics)


def route_label(request: web.Request) -> str:
    """The matched route's template, or a fixed word for unmatched paths (bounded labels)."""
    if request.match_info.http_exception is not None:
        return "unmatched"
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Sits outside the error middleware, so it sees the final status of every answer."""
    metrics = request.app[METRICS]
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        route = route_label(request)
        metrics.latency.labels(request.method, route).observe(time.perf_counter() - started)
        metrics.requests.labels(request.method, route, str(status)).inc()


def create_metrics_app(metrics: BridgeMetrics) -> web.Application:
    """The loopback-only metrics application (`GET /metrics`)."""

    async def serve_metrics(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", serve_metrics)
    return app
