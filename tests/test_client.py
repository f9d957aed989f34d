"""`fairloss_client`: chunking under the server's limits, retries, and exact merging."""

from __future__ import annotations

import email.utils
import math
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import torch

import fairloss
from fairloss.bootstrap import Bootstrap
from fairloss.errors import InputError
from fairloss.replicates import with_replicates
from fairloss.uncertainty import differences, discordant, intervals
from fairloss_client import AsyncClient, Client, Retry, ServiceError
from fairloss_client.bodies import typed_array
from fairloss_client.plan import Job, Limits
from fairloss_client.results import (
    decode_columns,
    merge_comparisons,
    merge_scores,
    score_result,
)
from fairloss_wire.typed_arrays import encode
from service.errors import ProblemError, input_problem
from service.json_codec import compare_body, score_body
from tests.conftest import README_EXAMPLE, running_server

FAST_RETRY = Retry(attempts=4, backoff_s=0.001, max_backoff_s=0.01)


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with running_server({"FAIRLOSS_MAX_BODY_BYTES": str(64 * 1024)}) as server:
        yield server.url


def batch(n: int, num_classes: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((n, num_classes)) * 3).astype(np.float32)
    return logits, rng.integers(0, num_classes, n)


def single_request(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """The whole batch in one request, sent past the chunking client."""
    response = httpx.post(
        url + path, content=orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), timeout=60
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_million_rows_in_chunks_match_the_core_in_process(capsys):
    """The must-show: 1,000,000 x 10 through a running server, with the progress bar."""
    logits, labels = batch(1_000_000, 10, seed=7)
    z, y = torch.from_numpy(logits), torch.from_numpy(labels)
    with (
        running_server({"FAIRLOSS_MAX_BODY_BYTES": str(8 * 1024 * 1024)}) as server,
        Client(server.url, progress=True, concurrency=4) as client,
    ):
        mean = client.score(logits, labels)
        total = client.score(logits, labels, reduction="sum", per_sample=False)

    assert mean.chunks >= 8
    assert mean.n == 1_000_000
    assert mean.reduced["total"] == pytest.approx(float(fairloss.fair_loss(z, y)), rel=1e-6)
    assert total.reduced["total"] == pytest.approx(
        float(fairloss.fair_loss(z, y, reduction="sum")), rel=1e-6
    )
    terms = fairloss.fair_loss_terms(z, y)
    for name in ("ce", "penalty", "total"):
        np.testing.assert_allclose(mean.per_sample[name], getattr(terms, name), rtol=1e-6)
        assert mean.per_sample[name].dtype == np.float32
    assert total.per_sample == {}
    bar = capsys.readouterr().err
    assert "score: 100%" in bar
    assert "1.00M/1.00M" in bar


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_chunked_score_merges_to_the_single_request(server_url, reduction):
    logits, labels = batch(301, seed=1)
    labels[::7] = -1
    options: dict[str, Any] = {
        "reduction": reduction,
        "ignore_index": -1,
        "class_weights": [1.0, 2.0, 0.5, 1.0, 3.0],
        "label_smoothing": 0.1,
        "extra_columns": ["pll"],
    }
    whole = single_request(server_url, "/score", {"logits": logits, "labels": labels, **options})
    with Client(server_url, max_chunk_rows=40, retry=FAST_RETRY) as client:
        result = client.score(torch.from_numpy(logits), torch.from_numpy(labels), **options)

    assert result.chunks == 8
    assert (result.n, result.num_classes, result.reduction) == (301, 5, reduction)
    assert result.sums.count == whole["sums"]["count"] == 301 - 43
    assert result.sums.correct == whole["sums"]["correct"]
    assert result.sums.bin_count == tuple(whole["sums"]["bins"]["count"])
    for name in ("ce", "penalty", "total"):
        assert result.reduced[name] == pytest.approx(whole["reduced"][name], rel=1e-12)
    for name, value in whole["metrics"].items():
        assert result.metrics[name] == pytest.approx(value, rel=1e-12)
    assert set(result.per_sample) == set(whole["per_sample"])
    for name, column in whole["per_sample"].items():
        mine = result.per_sample[name]
        np.testing.assert_array_equal(mine, np.asarray(column, dtype=mine.dtype))


def test_chunked_compare_counts_violations_across_chunks(server_url):
    logits, labels = batch(400, seed=2)
    noisy = logits + np.random.default_rng(3).standard_normal(logits.shape).astype(np.float32)
    candidates = {"sharp": logits, "noisy": noisy}
    body = {
        "labels": labels,
        "candidates": [{"name": k, "logits": v} for k, v in candidates.items()],
    }
    whole = single_request(server_url, "/compare", body)
    with Client(server_url, max_chunk_rows=30, retry=FAST_RETRY) as client:
        result = client.compare(candidates, labels)

    assert result.ranking == whole["ranking"]
    assert [c.name for c in result.candidates] == ["sharp", "noisy"]
    for mine, theirs in zip(result.candidates, whole["candidates"], strict=True):
        assert mine.chunks == 14
        assert mine.reduced == pytest.approx(
            {k: theirs["reduced"][k] for k in ("ce", "penalty", "total")}, rel=1e-12
        )
        assert set(mine.violations) == set(theirs["violations"])
        for criterion, counted in theirs["violations"].items():
            got = mine.violations[criterion]
            assert (got.count, got.pairs) == (counted["count"], counted["pairs"])
            assert [list(pair) for pair in got.examples] == counted["examples"]
    assert result.candidates[0].violations["ce"].count > 0


def test_readme_example_through_the_client(server_url):
    with Client(server_url) as client:
        result = client.compare({"model-a": README_EXAMPLE["logits"]}, README_EXAMPLE["labels"])
    (only,) = result.candidates
    assert only.violations["ce"].count == 1
    assert only.violations["ce"].examples == [(0, 1)]
    assert only.violations["total"].count == 0
    assert only.per_sample["ce"].round(4).tolist() == pytest.approx([1.0920, 0.9681])
    assert only.per_sample["total"].round(4).tolist() == pytest.approx([1.0920, 1.3014])
    assert only.metrics["accuracy"] == 0.5


@pytest.mark.anyio
async def test_async_client_gives_what_the_sync_client_gives(server_url):
    logits, labels = batch(250, seed=4)
    with Client(server_url, max_chunk_rows=60) as client:
        expected = client.score(logits, labels)
    async with AsyncClient(server_url, max_chunk_rows=60, concurrency=3) as client:
        result = await client.score(logits, labels)
        compared = await client.compare({"a": logits, "b": logits[:, ::-1]}, labels)
    assert result.chunks == 5
    assert result.sums == expected.sums
    for name, column in expected.per_sample.items():
        np.testing.assert_array_equal(result.per_sample[name], column)
    assert compared.candidates[0].sums == expected.sums
    assert compared.ranking["total"] == ["a", "b"]


def test_progress_bar_is_off_when_not_on_a_terminal(server_url, capsys):
    with Client(server_url) as client:
        client.score(*batch(10))
    assert capsys.readouterr().err == ""


def test_workers_never_exceed_the_servers_concurrency_limit():
    statuses: list[int] = []

    class Counting(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            response = super().handle_request(request)
            statuses.append(response.status_code)
            return response

    env = {"FAIRLOSS_MAX_CONCURRENCY": "1", "FAIRLOSS_RETRY_AFTER_S": "0"}
    with (
        running_server(env) as server,
        Client(server.url, concurrency=8, max_chunk_rows=50, transport=Counting()) as client,
    ):
        result = client.score(*batch(500))
    assert result.chunks == 10
    assert statuses == [200] * 11


# A stand-in server: the service's own scoring functions behind an httpx.MockTransport, so that
# 503s, dropped connections and small limits can be scripted exactly.

Script = list[Callable[[httpx.Request], httpx.Response] | None]


def scripted(
    script: Script,
    seen: list[httpx.Request],
    max_body_bytes: int = 1 << 20,
    max_elements: int = 1 << 20,
    max_concurrency: int = 4,
    server: dict[str, int] | None = None,
) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/info":
            limits = {
                "max_body_bytes": max_body_bytes,
                "max_elements": max_elements,
                "max_concurrency": max_concurrency,
            }
            info = {"limits": limits} if server is None else {"limits": limits, "server": server}
            return httpx.Response(200, json=info)
        seen.append(request)
        step = script.pop(0) if script else None
        if step is not None:
            return step(request)
        handler = score_body if request.url.path == "/score" else compare_body
        try:
            return httpx.Response(200, content=handler(request.content, "cpu", max_elements).body)
        except (ProblemError, InputError) as error:
            problem = input_problem(error) if isinstance(error, InputError) else error
            body = {"title": problem.title, "status": problem.status, "detail": problem.detail}
            return httpx.Response(problem.status, json=body)

    return httpx.MockTransport(handle)


def busy(retry_after: str | None) -> Callable[[httpx.Request], httpx.Response]:
    headers: dict[bytes, bytes] = (
        {} if retry_after is None else {b"Retry-After": retry_after.encode()}
    )
    problem = {"type": "/problems/server-busy", "title": "Server busy", "status": 503}
    return lambda _: httpx.Response(503, headers=headers, json={**problem, "detail": "busy"})


def dropped(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    waited: list[float] = []
    monkeypatch.setattr("fairloss_client.client.time.sleep", waited.append)
    return waited


def test_503_is_retried_after_its_retry_after(sleeps):
    seen: list[httpx.Request] = []
    transport = scripted([busy("2"), busy("1"), busy(None)], seen)
    with Client("http://fake", transport=transport, retry=Retry(4, 0.5, 8.0)) as client:
        result = client.score(README_EXAMPLE["logits"], README_EXAMPLE["labels"])
    assert len(seen) == 4
    assert len({r.content for r in seen}) == 1
    assert sleeps[0] >= 2.0
    assert sleeps[1] >= 1.0
    assert 1.0 <= sleeps[2] <= 2.0
    assert result.per_sample["ce"].round(4).tolist() == pytest.approx([1.0920, 0.9681])


def test_a_request_past_the_servers_time_limit_is_not_sent_again(sleeps):
    """A timed-out request would only run as long again, and each try starts another
    computation on the server: its 503 is raised at once, not retried."""
    seen: list[httpx.Request] = []
    problem = {"type": "/problems/request-timed-out", "title": "Request timed out", "status": 503}
    timed_out = lambda _: httpx.Response(  # noqa: E731
        503, headers={"Retry-After": "1"}, json={**problem, "detail": "took too long"}
    )
    transport = scripted([timed_out], seen)
    with (
        Client("http://fake", transport=transport, retry=FAST_RETRY) as client,
        pytest.raises(ServiceError, match="took too long"),
    ):
        client.score(README_EXAMPLE["logits"], README_EXAMPLE["labels"])
    assert len(seen) == 1
    assert sleeps == []


def test_connection_errors_are_retried_with_growing_waits(sleeps):
    seen: list[httpx.Request] = []
    transport = scripted([dropped, dropped], seen)
    with Client("http://fake", transport=transport, retry=Retry(3, 1.0, 60.0)) as client:
        result = client.score(README_EXAMPLE["logits"], README_EXAMPLE["labels"])
    assert len(seen) == 3
    assert 0.5 <= sleeps[0] <= 1.0
    assert 1.0 <= sleeps[1] <= 2.0
    assert result.sums.count == 2


def test_attempts_are_bounded(sleeps):
    seen: list[httpx.Request] = []
    transport = scripted([busy("0")] * 10, seen)
    with (
        Client("http://fake", transport=transport, retry=Retry(3, 0.01)) as client,
        pytest.raises(ServiceError, match=r"^HTTP 503 for rows 0\.\.1: busy$") as caught,
    ):
        client.score(README_EXAMPLE["logits"], README_EXAMPLE["labels"])
    assert len(seen) == 3
    assert len(sleeps) == 2
    assert caught.value.status == 503
    assert caught.value.problem["title"] == "Server busy"


def test_retries_stop_at_the_bound_on_total_time(sleeps):
    seen: list[httpx.Request] = []
    transport = scripted([busy("0")] * 10, seen)
    with (
        Client("http://fake", transport=transport, retry=Retry(50, 0.01, total_s=0)) as client,
        pytest.raises(ServiceError, match=r"^HTTP 503 for rows 0\.\.1: busy$"),
    ):
        client.score(README_EXAMPLE["logits"], README_EXAMPLE["labels"])
    assert len(seen) == 1
    assert sleeps == []


@pytest.mark.anyio
async def test_the_async_client_honours_retry_after_too(monkeypatch):
    waited: list[float] = []

    async def sleep(seconds: float) -> None:
        waited.append(seconds)

    transport = scripted([busy("3")], [])
    async with AsyncClient("http://fake", transport=transport, retry=FAST_RETRY) as client:
        client.sleep = sleep
        result = await client.score(README_EXAMPLE["logits"], README_EXAMPLE["labels"])
    assert waited == [3.0]
    assert result.sums.count == 2


def test_connection_errors_past_the_attempts_are_raised(sleeps):
    seen: list[httpx.Request] = []
    transport = scripted([dropped] * 3, seen)
    with (
        Client("http://fake", transport=transport, retry=Retry(2, 0.01)) as client,
        pytest.raises(httpx.ConnectError),
    ):
        client.score(README_EXAMPLE["logits"], README_EXAMPLE["labels"])
    assert len(seen) == 2


NOW = 1_700_000_000.0  # a fixed clock, so the date below is always 30 s ahead of it


def test_retry_after_as_an_http_date_is_honoured(sleeps, monkeypatch):
    monkeypatch.setattr("fairloss_client.plan.time.time", lambda: NOW)
    date = email.utils.formatdate(NOW + 30, usegmt=True)
    seen: list[httpx.Request] = []
    with Client("http://fake", transport=scripted([busy(date)], seen), retry=FAST_RETRY) as c:
        c.score(README_EXAMPLE["logits"], README_EXAMPLE["labels"])
    assert len(seen) == 2
    assert sleeps == [30.0]


def test_retry_after_in_the_past_waits_only_the_backoff(sleeps, monkeypatch):
    monkeypatch.setattr("fairloss_client.plan.time.time", lambda: NOW)
    date = email.utils.formatdate(NOW - 30, usegmt=True)
    with Client("http://fake", transport=scripted([busy(date)], []), retry=FAST_RETRY) as c:
        c.score(README_EXAMPLE["logits"], README_EXAMPLE["labels"])
    assert len(sleeps) == 1
    assert sleeps[0] <= FAST_RETRY.backoff_s


@pytest.mark.parametrize("value", ["\u00b2", "\uff15", "-5", "+5", "1e3", "1_0", "5 5", "soon", ""])
def test_a_retry_after_that_is_neither_seconds_nor_a_date_is_ignored(sleeps, value):
    seen: list[httpx.Request] = []
    with Client("http://fake", transport=scripted([busy(value)], seen), retry=FAST_RETRY) as c:
        c.score(README_EXAMPLE["logits"], README_EXAMPLE["labels"])
    assert len(seen) == 2
    assert len(sleeps) == 1
    assert sleeps[0] <= FAST_RETRY.backoff_s


def test_a_refused_chunk_names_its_rows():
    logits, labels = batch(100)
    labels[73] = 9
    with (
        Client("http://fake", transport=scripted([], []), max_chunk_rows=25) as client,
        pytest.raises(ServiceError, match=r"^HTTP 422 for rows 50\.\.74: .*labels\[23\] is 9") as e,
    ):
        client.score(logits, labels)
    assert e.value.status == 422
    assert e.value.rows == (50, 75)


def test_chunks_are_split_when_a_body_comes_out_over_the_limit():
    """The size estimate samples rows; rows it missed that print longer still fit the limit."""
    logits = np.zeros((2000, 4), dtype=np.float32)
    logits[1001:1007] = np.float32(-1.2345678e-05)
    labels = np.zeros(2000, dtype=np.int64)
    seen: list[httpx.Request] = []
    transport = scripted([], seen, max_body_bytes=4000)
    with Client("http://fake", transport=transport, chunk_margin=1.0) as client:
        result = client.score(logits, labels)
    sizes = [len(r.content) for r in seen]
    assert max(sizes) <= 4000
    assert result.chunks == len(seen) > 2000 * 20 // 4000
    assert result.per_sample["ce"].shape == (2000,)
    assert result.sums.count == 2000


def test_element_limit_bounds_the_chunks():
    seen: list[httpx.Request] = []
    transport = scripted([], seen, max_elements=100)
    with Client("http://fake", transport=transport) as client:
        result = client.compare({"a": np.zeros((50, 4)), "b": np.ones((50, 4))}, np.zeros(50, int))
    rows = [orjson.loads(r.content)["labels"]["shape"][0] for r in seen]
    assert rows == [10, 10, 10, 10, 10]
    assert result.candidates[1].n == 50


def test_api_key_is_sent_as_a_bearer_token():
    seen: list[httpx.Request] = []
    with Client("http://fake", transport=scripted([], seen), api_key="s3cret") as client:
        client.score(README_EXAMPLE["logits"], README_EXAMPLE["labels"])
    assert seen[0].headers["authorization"] == "Bearer s3cret"
    assert seen[0].headers["content-type"] == "application/json"


def test_a_row_larger_than_the_limit_is_refused():
    transport = scripted([], [], max_body_bytes=20)
    with (
        Client("http://fake", transport=transport) as client,
        pytest.raises(ValueError, match=r"^One row \(3 numbers, about \d+ bytes\) does not fit"),
    ):
        client.score(README_EXAMPLE["logits"], README_EXAMPLE["labels"])


@pytest.mark.parametrize(
    ("logits", "labels", "message"),
    [
        (0.1, [0], r"Expected `logits` to be a non-empty \(N, C\) array"),
        (np.zeros((0, 3)), [], r"Expected `logits` to be a non-empty \(N, C\) array"),
        ([["a", "b"]], [0], r"Expected `logits` to be a non-empty \(N, C\) array"),
        ([[0.1, math.nan]], [0], r"Expected finite `logits` within float32 range, but \[0, 1\]"),
        ([[0.1, 1e300]], [0], r"Expected finite `logits` within float32 range, but \[0, 1\]"),
        ([[0.1, 0.2]], [0.5], r"Expected `labels` to be 1 integer class labels"),
        ([[0.1, 0.2]], [0, 1], r"Expected `labels` to be 1 integer class labels"),
    ],
)
def test_bad_arrays_are_refused_before_anything_is_sent(logits, labels, message):
    seen: list[httpx.Request] = []
    with (
        Client("http://fake", transport=scripted([], seen)) as client,
        pytest.raises(ValueError, match=message),
    ):
        client.score(logits, labels)
    assert seen == []


def test_an_unknown_kind_is_refused_before_anything_is_sent():
    seen: list[httpx.Request] = []
    kind: Any = "probs"  # not a Kind: what a caller without type checks may pass
    with (
        Client("http://fake", transport=scripted([], seen)) as client,
        pytest.raises(ValueError, match=r"^Expected `kind` to be one of logits, "),
    ):
        client.score(README_EXAMPLE["logits"], README_EXAMPLE["labels"], kind=kind)
    assert seen == []


@pytest.mark.parametrize("method", ["score", "compare"])
def test_an_unknown_keyword_is_named_with_what_is_taken_before_anything_is_sent(method):
    """`progress` belongs to Client(...): the error says so, and lists what score and compare
    take, rather than naming an internal class."""
    seen: list[httpx.Request] = []
    logits = README_EXAMPLE["logits"]
    predictions = logits if method == "score" else {"a": logits}
    with (
        Client("http://fake", transport=scripted([], seen)) as client,
        pytest.raises(TypeError) as caught,
    ):
        getattr(client, method)(predictions, README_EXAMPLE["labels"], progress=False)
    said = str(caught.value)
    assert said.startswith("score() and compare() got the unknown keyword 'progress'; ")
    assert "smooth_max_beta" in said
    assert "are Client(...)'s" in said
    assert seen == []


def test_compare_refuses_bad_candidates():
    with Client("http://fake", transport=scripted([], [])) as client:
        with pytest.raises(ValueError, match=r"^Expected at least one candidate$"):
            client.compare({}, [0])
        with pytest.raises(ValueError, match=r"^Expected every candidate to have one shape"):
            client.compare({"a": np.zeros((2, 3)), "b": np.zeros((2, 4))}, [0, 0])
        with pytest.raises(ValueError, match=r"^compare needs the per-sample columns"):
            client.compare({"a": np.zeros((2, 3))}, [0, 0], per_sample=False)


def test_client_settings_are_checked():
    with pytest.raises(ValueError, match="concurrency >= 1"):
        Client("http://fake", concurrency=0)
    with pytest.raises(ValueError, match=r"chunk_margin in \(0, 1\]"):
        Client("http://fake", chunk_margin=1.5)


def test_merging_in_process_bodies_gives_one_result():
    body = orjson.dumps(README_EXAMPLE)
    parts = [orjson.loads(score_body(body, "cpu", 100).body) for _ in range(3)]
    merged = merge_scores(parts)
    assert merged.n == 6
    assert merged.sums.count == 6
    assert merged.reduced["ce"] == pytest.approx(parts[0]["reduced"]["ce"], rel=1e-12)
    compared = merge_comparisons(
        [
            orjson.loads(
                compare_body(
                    orjson.dumps(
                        {
                            "labels": [0, 0],
                            "candidates": [{"name": "a", "logits": README_EXAMPLE["logits"]}],
                        }
                    ),
                    "cpu",
                    100,
                ).body
            )
        ]
        * 2
    )
    assert compared.candidates[0].violations["ce"].count == 4
    assert compared.candidates[0].violations["ce"].pairs == 4


def test_bootstrap_in_chunks_of_700_rows_equals_one_request_for_all():
    """The must-show: intervals and p-values of a chunked dataset are those of one request."""
    logits, labels = batch(2500, 5, seed=12)
    other = logits + np.random.default_rng(3).normal(size=logits.shape).astype(np.float32)
    resample = Bootstrap(replicates=300, confidence_level=0.9, seed=4)
    with Client("http://fake", transport=scripted([], []), max_chunk_rows=700) as client:
        scored = client.score(logits, labels, bootstrap=resample)
        compared = client.compare({"a": logits, "b": other}, labels, bootstrap=resample)
    assert scored.chunks == 4
    a = fairloss.score_batch(logits, labels, bootstrap=resample)
    b = fairloss.score_batch(other, labels)
    paired_a, b = with_replicates([fairloss.score_batch(logits, labels), b], resample)
    want = intervals(a.sums, 0.9)
    for name, found in scored.intervals.items():
        for key in ("estimate", "low", "high"):
            assert found[key] == pytest.approx(want[name][key], rel=1e-12, abs=1e-15)
    counts = discordant(a.columns["correct"], b.columns["correct"], a.columns["counted"])
    [paired_entry] = differences(
        ["a", "b"],
        [paired_a.sums, b.sums],
        [a.columns["correct"], b.columns["correct"]],
        a.columns["counted"],
        0.9,
    )
    paired = paired_entry["criteria"]
    assert paired["total"]["p_value"] is not None
    [entry] = compared.differences
    assert (entry["a"], entry["b"], entry["discordant"]) == ("a", "b", list(counts))
    for name, found in entry["criteria"].items():
        for key, value in found.items():
            assert value == pytest.approx(paired[name][key], rel=1e-12, abs=1e-15), (name, key)
    assert compared.candidates[1].intervals["total"]["low"] is not None


def chunk_rows(seen: list[httpx.Request]) -> list[int]:
    return [orjson.loads(r.content)["labels"]["shape"][0] for r in seen]


def test_chunks_hold_chunk_elements_numbers_within_the_limits(monkeypatch):
    """Chunks are sized for throughput (CHUNK_ELEMENTS numbers), not to fill the limits."""
    monkeypatch.setattr("fairloss_client.plan.CHUNK_ELEMENTS", 400)
    monkeypatch.setattr("fairloss_client.plan.SPLIT_ELEMENTS", 100)
    logits, labels = batch(1000)
    seen: list[httpx.Request] = []
    with Client("http://fake", transport=scripted([], seen)) as client:
        result = client.score(logits, labels)
        assert sorted(chunk_rows(seen)) == [40] + [80] * 12  # sent 4 at a time, in any order
        seen.clear()
        client.score(*batch(200))  # fewer rows: one chunk for each of the 4 senders
        assert chunk_rows(seen) == [50] * 4
        seen.clear()
        client.score(*batch(40))  # but no chunk under SPLIT_ELEMENTS numbers
        assert chunk_rows(seen) == [20] * 2
    whole = score_result(fairloss.score_batch(logits, labels))
    assert result.chunks == 13
    assert result.sums.count == whole.sums.count == 1000
    assert result.reduced == pytest.approx(whole.reduced, rel=1e-12)
    for name, column in whole.per_sample.items():
        np.testing.assert_array_equal(result.per_sample[name], column)


@pytest.mark.parametrize(
    ("server", "concurrency", "rows"),
    [
        (None, None, [150] * 4),  # 4 senders by default
        ({"workers": 3}, None, [100] * 6),  # two for each of the server's workers
        ({"workers": 8}, None, [75] * 8),  # ... within its max_concurrency of 8
        ({"workers": 3}, 2, [300] * 2),  # as asked
    ],
)
def test_senders_follow_the_servers_workers(monkeypatch, server, concurrency, rows):
    monkeypatch.setattr("fairloss_client.plan.SPLIT_ELEMENTS", 1)
    seen: list[httpx.Request] = []
    transport = scripted([], seen, max_concurrency=8, server=server)
    with Client("http://fake", transport=transport, concurrency=concurrency) as client:
        assert client.limits().workers == (server or {"workers": 1})["workers"]
        client.score(*batch(600))
    assert chunk_rows(seen) == rows


def overlapping(monkeypatch) -> Callable[[httpx.Request], httpx.Response]:
    """A step that answers the first chunk only once the second chunk's body is encoded: with
    no encoding ahead of the sending, it fails."""
    encoded = threading.Event()
    take = Job.take

    def counting(job: Job) -> Any:
        chunk = take(job)
        if chunk is not None and chunk[0][0] > 0:
            encoded.set()
        return chunk

    monkeypatch.setattr(Job, "take", counting)

    def first(request: httpx.Request) -> httpx.Response:
        assert encoded.wait(timeout=30), "the next chunk was not encoded during this one"
        return httpx.Response(200, content=score_body(request.content, "cpu", 1 << 20).body)

    return first


def test_the_next_chunk_is_encoded_while_one_is_scored(monkeypatch):
    seen: list[httpx.Request] = []
    transport = scripted([overlapping(monkeypatch)], seen)
    with Client("http://fake", transport=transport, concurrency=1, max_chunk_rows=10) as client:
        result = client.score(*batch(30))
    assert chunk_rows(seen) == [10, 10, 10]
    assert result.chunks == 3


@pytest.mark.anyio
async def test_the_async_client_encodes_off_the_event_loop_while_one_is_scored(monkeypatch):
    transport = scripted([overlapping(monkeypatch)], [])
    async with AsyncClient(
        "http://fake", transport=transport, concurrency=1, max_chunk_rows=10
    ) as client:
        result = await client.score(*batch(30))
    assert result.chunks == 3


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.float32).reshape(3, 4)[1:],
        np.arange(24, dtype=">f8").reshape(2, 3, 4),
        np.array([-1, 0, 2**40], dtype=np.int64),
        np.zeros((0, 3), dtype=np.float32),
    ],
)
def test_typed_arrays_are_written_as_the_service_reads_them(array):
    assert orjson.dumps(typed_array(array)) == orjson.dumps(encode(array))


def test_answers_decoded_as_they_arrive_merge_as_the_raw_ones():
    body = {**README_EXAMPLE, "ignore_index": 1, "response_arrays": "base64"}
    raw = [orjson.loads(score_body(orjson.dumps(body), "cpu", 100).body) for _ in range(2)]
    decoded = [decode_columns(orjson.loads(orjson.dumps(part))) for part in raw]
    assert isinstance(decoded[0]["per_sample"]["counted"], np.ndarray)
    want, got = merge_scores(raw), merge_scores(decoded)
    assert got.sums == want.sums
    assert set(got.per_sample) == set(want.per_sample) >= {"ce", "counted"}
    for name, column in want.per_sample.items():
        assert got.per_sample[name].dtype == column.dtype
        np.testing.assert_array_equal(got.per_sample[name], column)


def test_limits_say_one_worker_when_the_server_does_not_say():
    limits = {"max_body_bytes": 10, "max_elements": 20, "max_concurrency": 3}
    assert Limits.from_info({"limits": limits}) == Limits(10, 20, 3, 1)
    assert Limits.from_info({"limits": limits, "server": {"workers": 0}}).workers == 1
    assert Limits.from_info({"limits": limits, "server": {"workers": 5}}).workers == 5
