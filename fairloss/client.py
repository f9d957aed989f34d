"""A client for the FairLoss scoring service that scores datasets of any size.

Inputs are split into chunks under the server's limits (read from ``GET /info``), sent
concurrently, retried on 503 and connection errors with exponential backoff, and merged: the
chunks' sums add up to the aggregates that one request for the whole dataset gives. Superior
violations are counted over pairs that cross chunks, so `compare` counts them here, over the merged
per-sample columns, with the `fairloss.superior_violations` that the service uses.

Example::

    with Client("http://127.0.0.1:8000") as client:
        result = client.score(logits, labels)
        result.reduced["total"], result.per_sample["total"]
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from functools import reduce
from typing import Any, Literal, TypedDict, Unpack

import httpx
import numpy as np
import numpy.typing as npt
import orjson
import torch
from tqdm import tqdm

from fairloss.headers import header_int
from fairloss.metrics import CRITERIA, ScoreSums, Violations, rank, superior_violations

Array = npt.NDArray[Any]
ArrayLike = npt.ArrayLike | torch.Tensor
TERMS = ("ce", "penalty", "total")
METRICS = ("log_loss", "brier", "pll", "pbs")
RETRY_STATUSES = frozenset({502, 503, 504})
JSON_HEADERS = {"content-type": "application/json"}


class Options(TypedDict, total=False):
    """Loss options of ``POST /score`` and ``POST /compare``; absent means the server default."""

    smooth_max_beta: float
    scaling_factor: float
    class_weights: Sequence[float] | ArrayLike | None
    label_smoothing: float
    ignore_index: int | None
    reduction: Literal["mean", "sum"]
    device: str | None
    precision: Literal["float32", "float64"]
    ece_bins: int
    per_sample: bool
    extra_columns: Sequence[str]


class ServiceError(Exception):
    """The service refused a request (an RFC 9457 problem), or kept answering 503."""

    def __init__(
        self, status: int, problem: Mapping[str, Any], rows: tuple[int, int] | None = None
    ) -> None:
        self.status = status
        self.problem = dict(problem)
        self.rows = rows
        detail = self.problem.get("detail") or self.problem.get("title") or "no detail"
        where = "" if rows is None else f" for rows {rows[0]}..{rows[1] - 1}"
        super().__init__(f"HTTP {status}{where}: {detail}")


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int
    max_elements: int
    max_concurrency: int


@dataclass(frozen=True)
class Retry:
    """Bounded attempts; waits grow exponentially (with jitter) and never undercut Retry-After."""

    attempts: int = 6
    backoff_s: float = 0.25
    max_backoff_s: float = 30.0

    def delay(self, attempt: int, response: httpx.Response | None) -> float:
        grown = min(self.max_backoff_s, self.backoff_s * 2.0 ** (attempt - 1))
        return max(grown * random.uniform(0.5, 1.0), _retry_after(response))


def _retry_after(response: httpx.Response | None) -> float:
    value = None if response is None else response.headers.get("retry-after")
    if value is None:
        return 0.0
    seconds = header_int(value)
    if seconds is not None:
        return float(seconds)
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return 0.0


@dataclass(frozen=True)
class ScoreResult:
    """One batch's scores, however many chunks it was sent in; aggregates come from `sums`."""

    n: int
    num_classes: int
    reduction: str
    precision: str
    devices: tuple[str, ...]
    sums: ScoreSums
    per_sample: dict[str, Array]
    chunks: int

    @property
    def reduced(self) -> dict[str, float]:
        """``ce``, ``penalty`` and ``total`` reduced as asked (NaN: a mean of no sample)."""
        if self.reduction == "sum":
            return {k: float(getattr(self.sums, k)) for k in TERMS}
        return {k: self.sums.mean(k) for k in TERMS}

    @property
    def metrics(self) -> dict[str, float]:
        means = {k: self.sums.mean(k) for k in METRICS}
        return {"accuracy": self.sums.accuracy, **means, "ece": self.sums.ece}


@dataclass(frozen=True)
class CandidateResult(ScoreResult):
    name: str
    violations: dict[str, Violations]


@dataclass(frozen=True)
class CompareResult:
    candidates: list[CandidateResult]
    ranking: dict[str, list[str]]


def _column(name: str, chunks: list[Any], precision: str) -> Array:
    dtype: Any = np.float32 if precision == "float32" else np.float64
    if name in ("correct", "counted"):
        dtype = np.bool_
    elif name == "predicted":
        dtype = np.int64
    return np.concatenate([np.asarray(chunk, dtype=dtype) for chunk in chunks])


def merge_scores(parts: Sequence[Mapping[str, Any]]) -> ScoreResult:
    """One result from the ``/score`` bodies (or one candidate's) of consecutive chunks."""
    first = parts[0]
    precision = first["precision"]
    per_sample = {
        name: _column(name, [part["per_sample"][name] for part in parts], precision)
        for name in first.get("per_sample") or {}
    }
    return ScoreResult(
        n=sum(int(part["n"]) for part in parts),
        num_classes=int(first["num_classes"]),
        reduction=first["reduced"]["reduction"],
        precision=precision,
        devices=tuple(sorted({part["device"] for part in parts})),
        sums=reduce(ScoreSums.merge, (ScoreSums.from_dict(part["sums"]) for part in parts)),
        per_sample=per_sample,
        chunks=len(parts),
    )


def violations(per_sample: Mapping[str, Array]) -> dict[str, Violations]:
    """Superior violations under each criterion whose per-sample column is present."""
    correct = torch.from_numpy(per_sample["correct"])
    counted = per_sample.get("counted")
    mask = None if counted is None else torch.from_numpy(counted)
    return {
        name: superior_violations(torch.from_numpy(per_sample[name]), correct, mask)
        for name in CRITERIA
        if name in per_sample
    }


def merge_comparisons(parts: Sequence[Mapping[str, Any]]) -> CompareResult:
    """One result from the ``/compare`` bodies of consecutive chunks."""
    results = []
    for k, entry in enumerate(parts[0]["candidates"]):
        merged = merge_scores([part["candidates"][k] for part in parts])
        results.append(
            CandidateResult(
                **{f.name: getattr(merged, f.name) for f in fields(merged)},
                name=entry["name"],
                violations=violations(merged.per_sample),
            )
        )
    return CompareResult(results, rank({r.name: r.sums for r in results}))


def as_numpy(value: ArrayLike) -> Array:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        return (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
    return np.asarray(value)


def as_logits(value: ArrayLike, name: str, precision: str) -> Array:
    array = as_numpy(value)
    if array.ndim != 2 or array.shape[0] == 0 or array.dtype.kind not in "fiu":
        raise ValueError(
            f"Expected `{name}` to be a non-empty (N, C) array of numbers, but got "
            f"shape {array.shape} of {array.dtype}"
        )
    with np.errstate(over="ignore"):
        array = np.ascontiguousarray(array, np.float32 if precision == "float32" else np.float64)
    finite = np.isfinite(array)
    if not finite.all():
        i, j = (int(k) for k in np.argwhere(~finite)[0])
        raise ValueError(
            f"Expected finite `{name}` within {precision} range, but [{i}, {j}] is "
            f"{as_numpy(value)[i, j]}"
        )
    return array


def as_labels(value: ArrayLike, n: int) -> Array:
    array = as_numpy(value)
    if array.shape != (n,) or array.dtype.kind not in "iu":
        raise ValueError(
            f"Expected `labels` to be {n} integer class labels, but got shape {array.shape} "
            f"of {array.dtype}"
        )
    return np.ascontiguousarray(array, np.int64)


def options_body(options: Options, *, compare: bool = False) -> dict[str, Any]:
    """The JSON fields for ``options``; `compare` asks for every column a criterion needs."""
    body: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
    if "class_weights" in body:
        body["class_weights"] = as_numpy(body["class_weights"]).astype(np.float64).tolist()
    columns = list(body.get("extra_columns", []))
    if compare:
        if body.get("per_sample") is False:
            raise ValueError("compare needs the per-sample columns to count violations")
        columns += [c for c in CRITERIA if c not in (*TERMS, *columns)]
    if columns:
        body["extra_columns"] = columns
    return body


@dataclass(frozen=True)
class _Request:
    """One call's rows: ``body(rows)`` is the JSON object for a slice of them."""

    path: str
    n: int
    row_elements: int
    body: Callable[[slice | Array], dict[str, Any]]


def score_request(logits: ArrayLike, labels: ArrayLike, options: Options) -> _Request:
    z = as_logits(logits, "logits", options.get("precision") or "float32")
    y = as_labels(labels, z.shape[0])
    extra = options_body(options)
    return _Request(
        "/score",
        z.shape[0],
        z.shape[1],
        lambda rows: {"logits": z[rows], "labels": y[rows], **extra},
    )


def compare_request(
    candidates: Mapping[str, ArrayLike], labels: ArrayLike, options: Options
) -> _Request:
    if not candidates:
        raise ValueError("Expected at least one candidate")
    extra = options_body(options, compare=True)
    precision = options.get("precision") or "float32"
    arrays = {
        name: as_logits(v, f"candidates[{name!r}]", precision) for name, v in candidates.items()
    }
    shapes = {a.shape for a in arrays.values()}
    if len(shapes) != 1:
        raise ValueError(f"Expected every candidate to have one shape, but got {sorted(shapes)}")
    n, num_classes = shapes.pop()
    y = as_labels(labels, n)

    def body(rows: slice | Array) -> dict[str, Any]:
        named = [{"name": name, "logits": a[rows]} for name, a in arrays.items()]
        return {"labels": y[rows], "candidates": named, **extra}

    return _Request("/compare", n, num_classes * len(arrays), body)


def _encode(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


class _Job:
    """The chunks of one call, taken by workers; a chunk whose body is too large is halved."""

    def __init__(self, request: _Request, limits: Limits, margin: float, max_rows: int | None):
        self.request = request
        self.max_bytes = limits.max_body_bytes
        rows = self._rows(limits, margin, max_rows)
        self.pending = deque((a, min(a + rows, request.n)) for a in range(0, request.n, rows))
        self.parts: dict[int, dict[str, Any]] = {}
        self.failed = False
        self.lock = threading.Lock()

    def _rows(self, limits: Limits, margin: float, max_rows: int | None) -> int:
        """Rows per chunk: under both limits by ``margin``, from the size of a sample of rows."""
        request = self.request
        sample = np.unique(np.linspace(0, request.n - 1, min(request.n, 256)).astype(np.int64))
        row_bytes = math.ceil(len(_encode(request.body(sample))) / len(sample))
        rows = min(
            int(limits.max_elements * margin) // request.row_elements,
            int(limits.max_body_bytes * margin) // row_bytes,
            max_rows or request.n,
        )
        if rows < 1:
            raise ValueError(
                f"One row ({request.row_elements} numbers, about {row_bytes} bytes) does not "
                f"fit the server's limits ({limits.max_elements} numbers, "
                f"{limits.max_body_bytes} bytes)"
            )
        return rows

    def take(self) -> tuple[tuple[int, int], bytes] | None:
        """The next chunk's rows and body, or None when there is none or the job failed."""
        while True:
            with self.lock:
                if self.failed or not self.pending:
                    return None
                start, stop = self.pending.popleft()
            body = _encode(self.request.body(slice(start, stop)))
            if len(body) <= self.max_bytes:
                return (start, stop), body
            if stop - start == 1:
                raise ValueError(f"Row {start} alone is larger than {self.max_bytes} bytes")
            middle = (start + stop) // 2
            with self.lock:
                self.pending.extendleft([(middle, stop), (start, middle)])

    def ordered(self) -> list[dict[str, Any]]:
        return [self.parts[start] for start in sorted(self.parts)]


def _answer(response: httpx.Response, rows: tuple[int, int] | None) -> dict[str, Any]:
    if response.status_code == 200:
        body: dict[str, Any] = orjson.loads(response.content)
        return body
    try:
        problem = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        problem = {"detail": response.text[:200]}
    raise ServiceError(response.status_code, problem if isinstance(problem, dict) else {}, rows)


def _raise_first(outcomes: Sequence[object]) -> None:
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


def _limits(info: Mapping[str, Any]) -> Limits:
    limits = info["limits"]
    return Limits(
        int(limits["max_body_bytes"]), int(limits["max_elements"]), int(limits["max_concurrency"])
    )


class _Base:
    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        concurrency: int = 4,
        progress: bool | None = None,
        retry: Retry | None = None,
        chunk_margin: float = 0.8,
        max_chunk_rows: int | None = None,
        timeout_s: float = 300.0,
    ) -> None:
        if concurrency < 1 or not 0 < chunk_margin <= 1:
            raise ValueError("Expected concurrency >= 1 and chunk_margin in (0, 1]")
        self.url = url.rstrip("/")
        self.headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0))
        self.concurrency = concurrency
        self.progress = progress
        self.retry = retry or Retry()
        self.chunk_margin = chunk_margin
        self.max_chunk_rows = max_chunk_rows
        self._limits: Limits | None = None

    def _job(self, request: _Request, limits: Limits) -> tuple[_Job, int]:
        job = _Job(request, limits, self.chunk_margin, self.max_chunk_rows)
        workers = min(self.concurrency, limits.max_concurrency, len(job.pending))
        return job, max(1, workers)

    def _bar(self, request: _Request) -> tqdm[Any]:
        disable = None if self.progress is None else not self.progress
        label = request.path.strip("/")
        return tqdm(total=request.n, unit="row", unit_scale=True, desc=label, disable=disable)


class Client(_Base):
    """Synchronous client; chunks go out on ``concurrency`` threads. Use as a context manager."""

    def __init__(self, url: str, *, transport: httpx.BaseTransport | None = None, **kw: Any):
        super().__init__(url, **kw)
        self._http = httpx.Client(
            base_url=self.url, headers=self.headers, timeout=self.timeout, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def info(self) -> dict[str, Any]:
        """``GET /info``: version, devices, defaults and limits."""
        return self._send("GET", "/info", None, None)

    def limits(self) -> Limits:
        """The server's limits, read once from ``/info``."""
        if self._limits is None:
            self._limits = _limits(self.info())
        return self._limits

    def score(
        self, logits: ArrayLike, labels: ArrayLike, **options: Unpack[Options]
    ) -> ScoreResult:
        return merge_scores(self._run(score_request(logits, labels, options)))

    def compare(
        self,
        candidates: Mapping[str, ArrayLike],
        labels: ArrayLike,
        **options: Unpack[Options],
    ) -> CompareResult:
        """Score each named candidate's logits against ``labels``, rank them, count violations."""
        return merge_comparisons(self._run(compare_request(candidates, labels, options)))

    def _run(self, request: _Request) -> list[dict[str, Any]]:
        job, workers = self._job(request, self.limits())
        with self._bar(request) as bar, ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(self._drain, job, bar) for _ in range(workers)]
        _raise_first([f.exception() for f in futures])
        return job.ordered()

    def _drain(self, job: _Job, bar: tqdm[Any]) -> None:
        try:
            while chunk := job.take():
                rows, body = chunk
                job.parts[rows[0]] = self._send("POST", job.request.path, body, rows)
                bar.update(rows[1] - rows[0])
        except BaseException:
            job.failed = True
            raise

    def _send(
        self, method: str, path: str, body: bytes | None, rows: tuple[int, int] | None
    ) -> dict[str, Any]:
        for attempt in range(1, self.retry.attempts + 1):
            last = attempt == self.retry.attempts
            try:
                response = self._http.request(method, path, content=body, headers=JSON_HEADERS)
            except httpx.TransportError:
                if last:
                    raise
                time.sleep(self.retry.delay(attempt, None))
                continue
            if response.status_code not in RETRY_STATUSES or last:
                return _answer(response, rows)
            time.sleep(self.retry.delay(attempt, response))
        raise AssertionError("unreachable")


class AsyncClient(_Base):
    """Asynchronous client; ``concurrency`` chunks in flight at once. Use with ``async with``."""

    def __init__(self, url: str, *, transport: httpx.AsyncBaseTransport | None = None, **kw: Any):
        super().__init__(url, **kw)
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=self.headers, timeout=self.timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def info(self) -> dict[str, Any]:
        """``GET /info``: version, devices, defaults and limits."""
        return await self._send("GET", "/info", None, None)

    async def limits(self) -> Limits:
        """The server's limits, read once from ``/info``."""
        if self._limits is None:
            self._limits = _limits(await self.info())
        return self._limits

    async def score(
        self, logits: ArrayLike, labels: ArrayLike, **options: Unpack[Options]
    ) -> ScoreResult:
        return merge_scores(await self._run(score_request(logits, labels, options)))

    async def compare(
        self,
        candidates: Mapping[str, ArrayLike],
        labels: ArrayLike,
        **options: Unpack[Options],
    ) -> CompareResult:
        """Score each named candidate's logits against ``labels``, rank them, count violations."""
        return merge_comparisons(await self._run(compare_request(candidates, labels, options)))

    async def _run(self, request: _Request) -> list[dict[str, Any]]:
        job, workers = self._job(request, await self.limits())
        with self._bar(request) as bar:
            drains = [self._drain(job, bar) for _ in range(workers)]
            _raise_first(await asyncio.gather(*drains, return_exceptions=True))
        return job.ordered()

    async def _drain(self, job: _Job, bar: tqdm[Any]) -> None:
        try:
            while chunk := job.take():
                rows, body = chunk
                job.parts[rows[0]] = await self._send("POST", job.request.path, body, rows)
                bar.update(rows[1] - rows[0])
        except BaseException:
            job.failed = True
            raise

    async def _send(
        self, method: str, path: str, body: bytes | None, rows: tuple[int, int] | None
    ) -> dict[str, Any]:
        for attempt in range(1, self.retry.attempts + 1):
            last = attempt == self.retry.attempts
            try:
                response = await self._http.request(
                    method, path, content=body, headers=JSON_HEADERS
                )
            except httpx.TransportError:
                if last:
                    raise
                await asyncio.sleep(self.retry.delay(attempt, None))
                continue
            if response.status_code not in RETRY_STATUSES or last:
                return _answer(response, rows)
            await asyncio.sleep(self.retry.delay(attempt, response))
        raise AssertionError("unreachable")
