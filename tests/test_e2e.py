"""End to end over real HTTP: a `python -m service` process, or FAIRLOSS_E2E_URL (e.g. a container).

Only HTTP here, no import of the app: scripts/image-test.sh runs this file against an image.
The server may run several worker processes (``/info``'s ``server.workers``; locally,
``FAIRLOSS_WORKERS=2 pytest tests/test_e2e.py``): the limits hold in each, and /metrics sums.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from tests.pinning import pinned_sync_clients

README_EXAMPLE: dict[str, Any] = {
    "logits": [[0.34, 0.33, 0.33], [0.49, 0.51, 0.0]],
    "labels": [0, 0],
}
JSON = {"content-type": "application/json"}
LEAKS = ("Traceback", "/work", ".py", "service.", "fairloss.")


@pytest.fixture(scope="module")
def http(live_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_url, timeout=30.0) as client:
        yield client


@pytest.fixture(scope="module")
def info(http: httpx.Client) -> dict[str, Any]:
    response = http.get("/info")
    assert response.status_code == 200
    result: dict[str, Any] = response.json()
    return result


@pytest.fixture(scope="module")
def limits(info: dict[str, Any]) -> dict[str, int]:
    result: dict[str, int] = info["limits"]
    return result


@pytest.fixture(scope="module")
def workers(info: dict[str, Any]) -> int:
    count: int = info["server"]["workers"]
    assert count >= 1
    return count


def assert_readme_example(http: httpx.Client) -> None:
    response = http.post("/score", json=README_EXAMPLE)
    assert response.status_code == 200, response.text
    columns = response.json()["per_sample"]
    assert [round(v, 4) for v in columns["ce"]] == [1.0920, 0.9681]
    assert [round(v, 4) for v in columns["total"]] == [1.0920, 1.3014]
    assert columns["correct"] == [True, False]


def assert_problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert {"type", "title", "status", "detail"} <= set(body)
    for leak in LEAKS:
        assert leak not in response.text, response.text


def test_health_and_readiness(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").json() == {"status": "ready"}
    assert http.get("/openapi.json").json()["info"]["title"] == "FairLoss scoring service"


def test_score_readme_example(http: httpx.Client) -> None:
    assert_readme_example(http)


def test_compare_readme_example(http: httpx.Client) -> None:
    body = {
        "labels": README_EXAMPLE["labels"],
        "candidates": [{"name": "model-a", "logits": README_EXAMPLE["logits"]}],
    }
    response = http.post("/compare", json=body)
    assert response.status_code == 200, response.text
    violations = response.json()["candidates"][0]["violations"]
    assert violations["ce"] == {"count": 1, "pairs": 1, "examples": [[0, 1]]}
    assert violations["total"] == {"count": 0, "pairs": 1, "examples": []}


def bad_requests(limits: dict[str, int]) -> list[tuple[str, dict[str, Any], int]]:
    """(path, keyword arguments of httpx.Client.post, expected status), one per kind.

    The element limit is left to the in-process tests, where it can be set low.
    """
    too_big = b" " * (limits["max_body_bytes"] + 1)
    good = '"logits": [[1.0, 2.0], [3.0, 0.5]], "labels": [0, 1]'

    def chunks() -> Iterator[bytes]:
        step = 1 << 20
        for k in range(0, len(too_big), step):
            yield too_big[k : k + step]

    def raw(text: str) -> dict[str, Any]:
        return {"content": text.encode(), "headers": JSON}

    return [
        ("/score", {"content": b"{not json", "headers": JSON}, 400),
        ("/score", raw("[1, 2]"), 400),
        ("/score", raw('"text"'), 400),
        ("/score", {"content": b'{"logits": "\xff"}', "headers": JSON}, 400),
        ("/score", raw('{"logits": [[NaN, 1.0]], "labels": [0]}'), 422),
        ("/score", raw('{"logits": [[1e400, 1.0]], "labels": [0]}'), 422),
        ("/score", raw('{"logits": [[1e39, 1.0]], "labels": [0]}'), 422),
        ("/score", raw('{"logits": [[1.0, 2.0], [1.0]], "labels": [0, 0]}'), 422),
        ("/score", raw('{"logits": [[1.0, 2.0], 3], "labels": [0, 0]}'), 422),
        ("/score", raw('{"logits": [], "labels": []}'), 422),
        ("/score", raw('{"logits": [[1.0], [2.0]], "labels": [0, 0]}'), 422),
        ("/score", raw('{"logits": [[true, 1.0]], "labels": [0]}'), 422),
        ("/score", raw('{"logits": [[1.0, 2.0]], "labels": [0.0]}'), 422),
        ("/score", raw('{"logits": [[1.0, 2.0]], "labels": ["0"]}'), 422),
        ("/score", raw('{"logits": [[1.0, 2.0]], "labels": [2]}'), 422),
        ("/score", raw('{"logits": [[1.0, 2.0]], "labels": [0, 1]}'), 422),
        ("/score", raw("{" + good + ', "unknown": 1}'), 422),
        ("/score", raw("{" + good + ', "smooth_max_beta": 0}'), 422),
        ("/score", raw("{" + good + ', "label_smoothing": "0.1"}'), 422),
        ("/score", raw("{" + good + ', "class_weights": [1.0]}'), 422),
        ("/score", raw("{" + good + ', "device": "tpu"}'), 422),
        ("/score", raw("{" + good + ', "device": "cuda:99"}'), 422),
        ("/score", {"content": too_big, "headers": JSON}, 413),
        ("/score", {"content": chunks(), "headers": JSON}, 413),
        ("/score", {"content": b"{}", "headers": {"content-type": "text/plain"}}, 415),
        ("/score", {"data": {"logits": "1"}}, 415),
        ("/compare", raw('{"labels": [0], "candidates": []}'), 422),
        (
            "/compare",
            {
                "json": {
                    "labels": [0],
                    "candidates": [
                        {"name": "a", "logits": [[1.0, 2.0]]},
                        {"name": "a", "logits": [[1.0, 2.0]]},
                    ],
                }
            },
            422,
        ),
        (
            "/compare",
            {
                "json": {
                    "labels": [0],
                    "candidates": [
                        {"name": "a", "logits": [[1.0, 2.0]]},
                        {"name": "b", "logits": [[1.0, 2.0, 3.0]]},
                    ],
                }
            },
            422,
        ),
        ("/compare", raw("[]"), 400),
    ]


def test_burst_of_bad_requests_leaves_the_server_answering(
    http: httpx.Client, limits: dict[str, int]
) -> None:
    for path, kwargs, status in bad_requests(limits):
        assert_problem(http.post(path, **kwargs), status)
    assert_readme_example(http)
    assert http.get("/healthz").status_code == 200


def metric(http: httpx.Client, sample: str) -> float:
    """The value of one sample (name and labels, as exposed) of /metrics; 0 when absent."""
    found = re.search(rf"^{re.escape(sample)} (\S+)$", http.get("/metrics").text, re.MULTILINE)
    return float(found[1]) if found else 0.0


def wait_for_slots_held(http: httpx.Client, slots: int, timeout_s: float = 20.0) -> None:
    """Until the server's in-flight gauge (summed over its workers) shows ``slots`` held
    (probing /score would race)."""
    gauge = re.compile(r"^fairloss_computations_in_flight (\S+)$", re.MULTILINE)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        match = gauge.search(http.get("/metrics").text)
        assert match is not None, "the server exports fairloss_computations_in_flight"
        if float(match[1]) >= slots:
            return
        time.sleep(0.05)
    raise AssertionError(f"{slots} held requests were not all admitted within {timeout_s} s")


def test_every_worker_answers_and_metrics_count_them_all(
    live_url: str, http: httpx.Client, workers: int
) -> None:
    """Connections pinned to each worker: /metrics counts every worker's requests."""
    scored = 'fairloss_http_requests_total{method="POST",route="/score",status="200"}'
    before = metric(http, scored)
    with ExitStack() as stack:
        pinned, pids = pinned_sync_clients(stack, live_url, 1, workers)
        for k, own in enumerate(pinned):
            for _ in range(k + 1):  # a different count from each worker
                assert own.post("/score", json=README_EXAMPLE).status_code == 200
    assert len(set(pids)) == workers
    assert metric(http, scored) - before == workers * (workers + 1) // 2


def test_busy_server_answers_503_then_recovers(
    live_url: str, http: httpx.Client, limits: dict[str, int], workers: int
) -> None:
    """Every worker's slots held (connections pinned to each), so that the next request is
    refused whichever worker takes it."""
    slots = limits["max_concurrency"]
    if slots * workers > 64:
        pytest.skip(f"{workers} x max_concurrency {slots} is too many requests to hold open here")
    release = threading.Event()
    head = json.dumps(README_EXAMPLE).encode()

    def slow_body() -> Iterator[bytes]:
        yield head[:10]
        release.wait(timeout=20)
        yield head[10:]

    def hold(own: httpx.Client) -> httpx.Response:
        return own.post("/score", content=slow_body(), headers=JSON)

    with ExitStack() as stack:
        pinned, _ = pinned_sync_clients(stack, live_url, slots, workers)
        with ThreadPoolExecutor(max_workers=len(pinned)) as pool:
            held = [pool.submit(hold, own) for own in pinned]
            try:
                wait_for_slots_held(http, len(pinned))
                busy = http.post("/score", json=README_EXAMPLE)
            finally:
                release.set()
            answers = [future.result(timeout=30) for future in held]
    assert_problem(busy, 503)
    assert int(busy.headers["retry-after"]) >= 0
    assert [a.status_code for a in answers] == [200] * len(pinned)
    assert_readme_example(http)
