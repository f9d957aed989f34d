"""Prometheus metrics, JSON access logs and request ids, as one pure ASGI middleware.

The middleware never touches bodies, so streamed request bodies keep streaming. Routes leave
what they learned about a request (N, C, device) in the request's state, where the middleware
reads it when the response is done. While it answers a request, the request's id is in
`service.logs.request_id`, so every line logged meanwhile carries it.
"""

from __future__ import annotations

import inspect
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import logs

REASONS = ("busy", "memory", "too_large", "invalid", "unauthorized", "timeout")
# HTTP's methods (RFC 9110 §9, RFC 5789): the metrics' method label is one of these or "other".
METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT")
)
STATUS_REASONS = {
    400: "invalid",
    401: "unauthorized",
    408: "timeout",
    413: "too_large",
    415: "invalid",
    422: "invalid",
}
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
REQUEST_ID = re.compile(r"[\w.:/+=@-]{1,128}", re.ASCII)
UNMATCHED = "unmatched"


class Metrics:
    """The service's metrics, in a registry of their own (one per app, not the global one).

    Under several worker processes (`service.supervisor` sets ``PROMETHEUS_MULTIPROC_DIR``
    before they start), prometheus_client keeps each process's values in files there, and the
    exposition is of those files, summed over the workers: counters and the histogram over every
    worker that ever ran, the in-flight gauge over the live ones (``livesum``). Otherwise it is
    this registry's, so that apps created side by side (as in tests) count apart.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess: bool = getattr(values.ValueClass, "_multiprocess", False)
        registry = self.registry
        self.requests = Counter(
            "fairloss_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "fairloss_http_request_duration_seconds",
            "Time from the request's arrival to the end of its response",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.samples = Counter(
            "fairloss_samples_scored", "Rows (N) of the batches answered 200", registry=registry
        )
        self.in_flight = Gauge(
            "fairloss_computations_in_flight",
            "Admission slots held: admitted requests whose computation has not returned",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.rejections = Counter(
            "fairloss_rejections", "Requests refused, by reason", ["reason"], registry=registry
        )
        for reason in REASONS:
            self.rejections.labels(reason)

    def reject(self, reason: str) -> None:
        self.rejections.labels(reason).inc()

    def exposition(self) -> bytes:
        """The Prometheus text exposition: of every worker's files under several workers (read
        anew on each call), else of this registry."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return generate_latest(merged)


def access_logger(level: str) -> logging.Logger:
    """The access log (``service.access``), at ``level``; where its lines go is the logging
    configuration's business (`service.logs.log_config`: JSON on stdout)."""
    logger = logging.getLogger("service.access")
    logger.setLevel(logging.getLevelNamesMapping().get(level.upper(), logging.INFO))
    return logger


def record_batch(request: Request, n: int, num_classes: int, device: str) -> None:
    """Note N, C and device of an answered batch, for the access log and the metrics."""
    request.state.n = n
    request.state.num_classes = num_classes
    request.state.device = device


def _request_id(scope: Scope) -> str:
    given = Headers(scope=scope).get("x-request-id")
    if given is not None and REQUEST_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


class RouteTemplates:
    """The app's path templates, from its OpenAPI schema, for requests answered before routing."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.patterns: list[tuple[re.Pattern[str], str]] | None = None

    def find(self, path: str) -> str:
        if self.patterns is None:
            paths = [*self.app.openapi().get("paths", {}), self.app.openapi_url, self.app.docs_url]
            self.patterns = [(compile_path(p)[0], p) for p in paths if p]
        return next((p for regex, p in self.patterns if regex.match(path)), UNMATCHED)


def _route(scope: Scope, templates: RouteTemplates) -> str:
    """The route template (``/v2/models/{name}``), never the raw path: bounded label values."""
    route = getattr(scope.get("route"), "path", None)
    return route if isinstance(route, str) else templates.find(scope["path"])


ErrorHandler = Callable[[Request, Exception], Response | Awaitable[Response]]


class ObservabilityMiddleware:
    """Request ids, metrics and one JSON access-log line per HTTP request.

    An exception that reaches it before the response has started is answered here, by the app's
    own handler for ``Exception`` (``on_error``): inside the request, so the handler's log line
    has the request's id, and through this middleware, so the 500 has ``X-Request-ID`` (Starlette's
    outermost ServerErrorMiddleware would send it without one).
    """

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        templates: RouteTemplates,
        logger: logging.Logger,
        on_error: ErrorHandler,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.templates = templates
        self.logger = logger
        self.on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = _request_id(scope)
        state: dict[str, Any] = {**scope.get("state", {}), "request_id": request_id}
        scope["state"] = state
        status: int | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append("X-Request-ID", request_id)
            await send(message)

        token = logs.request_id.set(request_id)
        reset = True
        try:
            try:
                await self.app(scope, receive, send_with_id)
            except Exception as exc:
                if status is not None:
                    # Too late for a 500: the server drops the connection and logs the error.
                    # The id stays set so that its line has it too: under uvicorn, each request
                    # runs in a task (and a context) of its own.
                    reset = False
                    raise
                response = self.on_error(Request(scope, receive), exc)
                if inspect.isawaitable(response):
                    response = await response
                await response(scope, receive, send_with_id)
        finally:
            self._done(scope, state, status or 500, time.perf_counter() - start)
            if reset:
                logs.request_id.reset(token)

    def _done(self, scope: Scope, state: dict[str, Any], status: int, duration: float) -> None:
        route = _route(scope, self.templates)
        method = scope["method"]
        # A label from a fixed set: a server that passes any token as a method (uvicorn with
        # h11 does) would otherwise grow a series for each one a client makes up.
        label = method if method in METHODS else "other"
        self.metrics.requests.labels(route, label, str(status)).inc()
        self.metrics.latency.labels(route, label).observe(duration)
        if status == 200 and "n" in state:
            self.metrics.samples.inc(state["n"])
        if status in STATUS_REASONS:
            self.metrics.reject(STATUS_REASONS[status])
        fields = {
            "request_id": state["request_id"],
            "method": method,
            "route": route,
            "status": status,
            "duration_s": round(duration, 6),
            "n": state.get("n"),
            "num_classes": state.get("num_classes"),
            "device": state.get("device"),
        }
        self.logger.info("%s %s %s", method, route, status, extra={"fields": fields})
