"""The API's share of telemetry: a request id for every request, request counts and latencies by
route template and status, `/metrics` for Prometheus, and the tracing instrumentation.

Counted by route template (`/v1/members/{member_number}`), never the raw path: a path carries
member numbers and would make a series per member. A request no route serves counts under
`unmatched`.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from functools import cache

from fastapi import FastAPI
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from activities.metrics import HTTP_LATENCY, HTTP_REQUESTS, REPLAYS
from api.routing import route_for
from schemas import telemetry

REQUEST_ID_HEADER = "X-Request-ID"
REPLAYED_HEADER = "Idempotent-Replayed"  # set by api/idempotency.py on a stored answer
UNMATCHED = "unmatched"
access_log = logging.getLogger("bankflow.access")


_REQUEST_ID_RAW = REQUEST_ID_HEADER.lower().encode("latin-1")


def _request_id(scope: Scope) -> str:
    """The caller's X-Request-ID when it is a sane one, else a new id. Read off the raw headers:
    Starlette's Headers mapping decodes every header to find one, on every request."""
    offered: bytes | None = next((v for k, v in scope["headers"] if k == _REQUEST_ID_RAW), None)
    if offered is not None:
        text = offered.decode("latin-1")
        if telemetry.REQUEST_ID_PATTERN.fullmatch(text):
            return text
    return uuid.uuid4().hex


# A metric's child per label set, as prometheus_client's labels() finds it (checking and joining
# the label values on every call); the routes and statuses are few, so these stay small.
@cache
def _latency(method: str, route: str) -> Histogram:
    return HTTP_LATENCY.labels(method, route)


@cache
def _requests(method: str, route: str, status: int) -> Counter:
    return HTTP_REQUESTS.labels(method, route, str(status))


class TelemetryMiddleware:
    """Outermost layer: sets the request id (logs, `X-Request-ID` on the answer) and measures the
    whole request as the client sees it, including every other layer's refusals."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        token = telemetry.REQUEST_ID.set(request_id)
        user_token = telemetry.USER_ID.set(None)  # set by the auth dependency, for this request
        info = route_for(scope)
        route = info.template if info is not None else UNMATCHED
        method = scope["method"]
        status = 500  # what the server answers when the app raises before starting a response
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers[REQUEST_ID_HEADER] = request_id
                if headers.get(REPLAYED_HEADER) == "true":
                    REPLAYS.labels("api_request").inc()
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            _latency(method, route).observe(elapsed)
            _requests(method, route, status).inc()
            # The route template, not the path: no member number in a log line.
            access_log.info(
                "%s %s %d",
                method,
                route,
                status,
                extra={"method": method, "route": route, "status": status,
                       "duration_ms": round(elapsed * 1000, 1)},
            )  # fmt: skip
            telemetry.USER_ID.reset(user_token)
            telemetry.REQUEST_ID.reset(token)


def registry() -> CollectorRegistry:
    """What `/metrics` shows: this process's metrics, or, when several API processes serve one
    port (api.serve sets PROMETHEUS_MULTIPROC_DIR for them), the sum over all of them, whichever
    process the scrape reaches."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        combined = CollectorRegistry()
        multiprocess.MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
        return combined
    return REGISTRY


async def metrics_endpoint(request: Request) -> Response:
    """Prometheus exposition (no personal data: see activities/metrics)."""
    del request
    return Response(generate_latest(registry()), media_type=CONTENT_TYPE_LATEST)


def install(app: FastAPI, *, serve_metrics: bool) -> None:
    """Call after every other middleware: this one must be outermost."""
    if serve_metrics:
        app.add_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)
    telemetry.instrument_app(app)
    app.add_middleware(TelemetryMiddleware)
