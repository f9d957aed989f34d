"""/metrics, JSON access logs, request ids, and the time limit that keeps its slot."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import orjson
import pytest
from asgi_lifespan import LifespanManager
from prometheus_client.parser import text_string_to_metric_families

import service.routes.score as score_route
from service.app import create_app
from service.json_codec import Reply, score_body
from service.logs import JsonFormatter, RequestIdFilter
from service.settings import Settings
from tests.conftest import README_EXAMPLE, assert_no_leak

BUSY = {
    "type": "/problems/server-busy",
    "title": "Server busy",
    "status": 503,
    "detail": "The server is computing as many requests as it takes at once (1); retry shortly.",
}
TIMED_OUT = {
    "type": "/problems/request-timed-out",
    "title": "Request timed out",
    "status": 503,
    "detail": "The request took longer than this server's limit of 0.2 s: send fewer rows a "
    "request (the Python client splits them into chunks), or raise FAIRLOSS_REQUEST_TIMEOUT_S "
    "on the server.",
}


class Lines(logging.Handler):
    """The service's log lines, as the JSON objects that `python -m service` writes."""

    def __init__(self) -> None:
        super().__init__()
        self.addFilter(RequestIdFilter())
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(orjson.loads(self.format(record)))

    def of(self, logger: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["logger"] == logger]


@pytest.fixture
def access_log() -> Iterator[Lines]:
    handler = Lines()
    logger = logging.getLogger("service")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition, keyed by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return samples(response.text)


def requests_total(route: str, method: str, status: int) -> Any:
    labels = (("method", method), ("route", route), ("status", str(status)))
    return ("fairloss_http_requests_total", labels)


def rejections(reason: str) -> Any:
    return ("fairloss_rejections_total", (("reason", reason),))


IN_FLIGHT = ("fairloss_computations_in_flight", ())
SAMPLES = ("fairloss_samples_scored_total", ())


@pytest.mark.anyio
async def test_metrics_start_at_zero_with_every_rejection_reason(client: httpx.AsyncClient) -> None:
    metrics = await scrape(client)
    for reason in ("busy", "too_large", "invalid", "unauthorized", "timeout"):
        assert metrics[rejections(reason)] == 0
    assert metrics[IN_FLIGHT] == 0
    assert metrics[SAMPLES] == 0


@pytest.mark.anyio
async def test_a_scored_batch_is_counted_by_route_status_and_samples(
    client: httpx.AsyncClient,
) -> None:
    for _ in range(2):
        assert (await client.post("/score", json=README_EXAMPLE)).status_code == 200
    three = {"labels": [0, 1, 0], "candidates": [{"name": "a", "logits": [[1, 0]] * 3}]}
    assert (await client.post("/compare", json=three)).status_code == 200
    metrics = await scrape(client)
    assert metrics[requests_total("/score", "POST", 200)] == 2
    assert metrics[requests_total("/compare", "POST", 200)] == 1
    assert metrics[SAMPLES] == 2 + 2 + 3
    latency = (
        "fairloss_http_request_duration_seconds_count",
        (("method", "POST"), ("route", "/score")),
    )
    assert metrics[latency] == 2
    inf = ("fairloss_http_request_duration_seconds_bucket",
           (("le", "+Inf"), ("method", "POST"), ("route", "/score")))  # fmt: skip
    assert metrics[inf] == 2


@pytest.mark.anyio
async def test_routes_are_labelled_by_template_not_by_path(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v2/models/nope")).status_code == 404
    assert (await client.get("/no/such/thing")).status_code == 404
    metrics = await scrape(client)
    assert metrics[requests_total("/v2/models/{model_name}", "GET", 404)] == 1
    assert metrics[requests_total("unmatched", "GET", 404)] == 1


class TestRejections:
    @pytest.fixture
    def settings(self) -> Settings:
        return Settings(max_body_bytes=200)

    @pytest.mark.anyio
    async def test_refusals_are_counted_by_reason(self, client: httpx.AsyncClient) -> None:
        big = {"logits": [[0.5, 0.25]] * 40, "labels": [0] * 40}
        assert (await client.post("/score", json=big)).status_code == 413
        assert (await client.post("/score", content=b"{")).status_code == 400
        assert (await client.post("/score", json={"logits": [], "labels": []})).status_code == 422
        text = await client.post("/score", content=b"x", headers={"content-type": "text/plain"})
        assert text.status_code == 415
        metrics = await scrape(client)
        assert metrics[rejections("too_large")] == 1
        assert metrics[rejections("invalid")] == 3
        assert metrics[rejections("busy")] == 0


@pytest.mark.anyio
async def test_each_request_gets_one_json_access_line(
    client: httpx.AsyncClient, access_log: Lines
) -> None:
    response = await client.post("/score", json=README_EXAMPLE, headers={"X-Request-ID": "run-7.a"})
    assert response.headers["x-request-id"] == "run-7.a"
    bad = await client.post("/score", json={"logits": [[1.0]], "labels": [0]})
    assert bad.status_code == 422
    first, second = access_log.of("service.access")
    assert set(first) == {
        "time", "level", "logger", "message", "request_id", "method", "route", "status",
        "duration_s", "n", "num_classes", "device",
    }  # fmt: skip
    assert (first["level"], first["message"]) == ("INFO", "POST /score 200")
    assert first["request_id"] == "run-7.a"
    assert (first["method"], first["route"], first["status"]) == ("POST", "/score", 200)
    assert (first["n"], first["num_classes"], first["device"]) == (2, 3, "cpu")
    assert 0 < first["duration_s"] < 60
    assert second["request_id"] == bad.headers["x-request-id"]
    assert (second["status"], second["n"], second["device"]) == (422, None, None)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "given", [None, b"", b"has space", b"x" * 129, b"semi;colon", "\u00fcn".encode("latin-1")]
)
async def test_a_missing_or_unsafe_request_id_is_replaced(
    client: httpx.AsyncClient, access_log: Lines, given: bytes | None
) -> None:
    headers = [] if given is None else [(b"x-request-id", given)]
    response = await client.get("/healthz", headers=headers)
    generated = response.headers["x-request-id"]
    assert generated.encode() != given
    assert len(generated) == 32
    assert int(generated, 16) >= 0
    assert access_log.of("service.access")[0]["request_id"] == generated


@pytest.mark.anyio
async def test_request_ids_are_unique(client: httpx.AsyncClient) -> None:
    ids = {(await client.get("/healthz")).headers["x-request-id"] for _ in range(20)}
    assert len(ids) == 20


@pytest.mark.anyio
async def test_an_unexpected_error_is_logged_counted_and_not_leaked(
    client: httpx.AsyncClient, access_log: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any) -> bytes:
        raise RuntimeError("secret detail in /work/main/service/scoring.py")

    monkeypatch.setattr(score_route, "score_body", broken)
    # The transport raises what the app lets out: the middleware must answer, not re-raise.
    response = await client.post("/score", json=README_EXAMPLE, headers={"X-Request-ID": "e-1"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "e-1"
    assert response.json() == {
        "type": "/problems/internal-error",
        "title": "Internal error",
        "status": 500,
        "detail": "The server failed to answer this request.",
    }
    assert_no_leak(response.text)
    (error,) = access_log.of("service.errors")
    assert (error["level"], error["request_id"]) == ("ERROR", "e-1")
    assert "RuntimeError: secret detail" in error["exception"]
    (access,) = access_log.of("service.access")
    assert (access["request_id"], access["status"]) == ("e-1", 500)
    metrics = await scrape(client)
    assert metrics[requests_total("/score", "POST", 500)] == 1
    assert metrics[IN_FLIGHT] == 0


@pytest.fixture
async def slow_client(
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[httpx.AsyncClient, threading.Event]]:
    """One slot, a 0.2 s limit, and a /score whose computation (in a worker thread, however
    small its body) waits for ``release``."""
    release = threading.Event()
    real = score_body

    def slow(*args: Any) -> Reply:
        assert release.wait(timeout=30)
        return real(*args)

    monkeypatch.setattr(score_route, "score_body", slow)
    app = create_app(Settings(max_concurrency=1, request_timeout_s=0.2, inline_bytes=0))
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://test"
        ) as http,
    ):
        yield http, release
        release.set()


@pytest.mark.anyio
async def test_a_timed_out_computation_keeps_its_slot_until_it_returns(
    slow_client: tuple[httpx.AsyncClient, threading.Event],
) -> None:
    client, release = slow_client
    with anyio.fail_after(10):
        timed_out = await client.post("/score", json=README_EXAMPLE)
    assert timed_out.status_code == 503
    assert timed_out.headers["retry-after"] == "1"
    assert timed_out.json() == TIMED_OUT
    metrics = await scrape(client)
    assert metrics[IN_FLIGHT] == 1
    assert metrics[rejections("timeout")] == 1

    busy = await client.post("/score", json=README_EXAMPLE)
    assert busy.status_code == 503
    assert busy.json() == BUSY
    assert (await scrape(client))[rejections("busy")] == 1

    release.set()
    with anyio.fail_after(10):
        while (await scrape(client))[IN_FLIGHT] != 0:
            await anyio.sleep(0.02)
    answered = await client.post("/score", json=README_EXAMPLE)
    assert answered.status_code == 200
    assert answered.json()["n"] == 2


@pytest.mark.anyio
async def test_a_body_that_never_ends_times_out_and_frees_its_slot(
    slow_client: tuple[httpx.AsyncClient, threading.Event],
) -> None:
    client, _ = slow_client

    async def trickle() -> AsyncIterator[bytes]:
        yield b'{"logits": '
        await anyio.sleep(5)
        yield b"[]}"

    with anyio.fail_after(4):
        response = await client.post("/score", content=trickle())
    assert response.status_code == 503
    assert response.json() == TIMED_OUT
    assert (await scrape(client))[IN_FLIGHT] == 0
