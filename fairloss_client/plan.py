"""The client's sans-IO core: chunk planning, request bodies, answers, retry decisions.

Nothing here opens a connection or sleeps; `fairloss_client.client` holds the two thin drivers
(threads and asyncio) that do the I/O with httpx and tenacity around these pieces.
"""

from __future__ import annotations

import email.utils
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import httpx
import numpy as np
import orjson
from tenacity import RetryCallState

from fairloss.metrics import CRITERIA
from fairloss.options import ScoringOptions
from fairloss_client.arrays import (
    Array,
    ArrayLike,
    as_labels,
    as_numpy,
    as_predictions,
    as_weights,
)
from service.typed_arrays import encode as encode_array
from service.wire import EXTRA_COLUMNS, header_int

RETRY_STATUSES = frozenset({502, 503, 504})


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

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> Limits:
        """The limits in a ``GET /info`` body."""
        limits = info["limits"]
        return cls(
            int(limits["max_body_bytes"]),
            int(limits["max_elements"]),
            int(limits["max_concurrency"]),
        )


@dataclass(frozen=True)
class Retry:
    """Retries of 502/503/504 and connection errors: at most ``attempts`` tries within
    ``total_s`` seconds; waits grow exponentially from ``backoff_s`` (jittered, at most
    ``max_backoff_s``) and never undercut a ``Retry-After`` of seconds or an HTTP date."""

    attempts: int = 6
    backoff_s: float = 0.25
    max_backoff_s: float = 30.0
    total_s: float = 300.0

    def wait(self, state: RetryCallState) -> float:
        """Seconds before the next attempt (tenacity's ``wait``)."""
        grown = min(self.max_backoff_s, self.backoff_s * 2.0 ** (state.attempt_number - 1))
        outcome = state.outcome
        response = None if outcome is None or outcome.failed else outcome.result()
        return max(grown * random.uniform(0.5, 1.0), retry_after(response))


def retryable(response: httpx.Response) -> bool:
    """Whether an answer is worth another try (tenacity's ``retry_if_result``)."""
    return response.status_code in RETRY_STATUSES


def retry_after(response: httpx.Response | None) -> float:
    """A response's ``Retry-After`` in seconds (delay-seconds or an HTTP date); 0 otherwise."""
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


def answer(response: httpx.Response, rows: tuple[int, int] | None) -> dict[str, Any]:
    """A 200's body, or the `ServiceError` of any other status."""
    if response.status_code == 200:
        body: dict[str, Any] = orjson.loads(response.content)
        return body
    try:
        problem = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        problem = {"detail": response.text[:200]}
    raise ServiceError(response.status_code, problem if isinstance(problem, dict) else {}, rows)


def option_fields(
    options: ScoringOptions,
    per_sample: bool,
    extra_columns: Sequence[str],
    *,
    compare: bool,
    typed: bool = True,
) -> dict[str, Any]:
    """The JSON fields for ``options``; `compare` asks for every column a criterion needs;
    ``typed`` asks for the columns as typed arrays."""
    body: dict[str, Any] = {k: v for k, v in asdict(options).items() if v is not None}
    columns = list(extra_columns)
    if compare:
        if not per_sample:
            raise ValueError("compare needs the per-sample columns to count violations")
        columns += [c for c in CRITERIA if c in EXTRA_COLUMNS and c not in columns]
    arrays = "base64" if typed else "json"
    return {**body, "per_sample": per_sample, "extra_columns": columns, "response_arrays": arrays}


def request_fields(
    options: dict[str, Any],
    per_sample: bool,
    extra_columns: Sequence[str],
    compare: bool,
    typed: bool,
) -> dict[str, Any]:
    """Keyword arguments to JSON fields, checked here first (unknown names: TypeError; bad
    values: `fairloss.InputError`) so that no request is sent for them."""
    weights = options.get("class_weights")
    if weights is not None:  # numpy arrays and tensors too
        options = {**options, "class_weights": as_numpy(weights).astype(float).tolist()}
    checked = ScoringOptions(**options)
    return option_fields(checked, per_sample, extra_columns, compare=compare, typed=typed)


@dataclass(frozen=True)
class Request:
    """One call's items (the first axis): ``body(rows)`` is the JSON object for a slice."""

    path: str
    n: int
    row_elements: int
    body: Callable[[slice | Array], dict[str, Any]]


@dataclass(frozen=True)
class Inputs:
    """Checked arrays: the labels, the sample weights (or None), and how to send an array."""

    labels: Array
    weights: Array | None
    typed: bool

    def send(self, array: Array) -> Any:
        """An array as the JSON body holds it: a typed array, or nested lists."""
        return encode_array(array) if self.typed else array

    def fields(self, rows: slice | Array) -> dict[str, Any]:
        fields = {"labels": self.send(self.labels[rows])}
        if self.weights is not None:
            fields["sample_weight"] = self.send(self.weights[rows])
        return fields


def _inputs(
    labels: ArrayLike, weights: ArrayLike | None, shape: tuple[int, ...], typed: bool
) -> Inputs:
    y = as_labels(labels, shape)
    return Inputs(y, None if weights is None else as_weights(weights, y.shape), typed)


def score_request(
    predictions: ArrayLike,
    labels: ArrayLike,
    fields: dict[str, Any],
    *,
    kind: str = "logits",
    sample_weight: ArrayLike | None = None,
) -> Request:
    z = as_predictions(predictions, kind, fields["precision"])
    inputs = _inputs(labels, sample_weight, z.shape, fields["response_arrays"] == "base64")

    def body(rows: slice | Array) -> dict[str, Any]:
        return {kind: inputs.send(z[rows]), **inputs.fields(rows), **fields}

    return Request("/score", z.shape[0], math.prod(z.shape[1:]), body)


def compare_request(
    candidates: Mapping[str, ArrayLike],
    labels: ArrayLike,
    fields: dict[str, Any],
    *,
    kind: str = "logits",
    sample_weight: ArrayLike | None = None,
) -> Request:
    if not candidates:
        raise ValueError("Expected at least one candidate")
    precision = fields["precision"]
    arrays = {
        name: as_predictions(v, f"candidates[{name!r}]", precision)
        for name, v in candidates.items()
    }
    shapes = {a.shape for a in arrays.values()}
    if len(shapes) != 1:
        raise ValueError(f"Expected every candidate to have one shape, but got {sorted(shapes)}")
    shape = shapes.pop()
    inputs = _inputs(labels, sample_weight, shape, fields["response_arrays"] == "base64")

    def body(rows: slice | Array) -> dict[str, Any]:
        named = [{"name": name, kind: inputs.send(a[rows])} for name, a in arrays.items()]
        return {**inputs.fields(rows), "candidates": named, **fields}

    return Request("/compare", shape[0], math.prod(shape[1:]) * len(arrays), body)


def encode(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


class Job:
    """The chunks of one call, taken by the drivers' workers; a chunk whose body comes out
    larger than the limit is halved."""

    def __init__(self, request: Request, limits: Limits, margin: float, max_rows: int | None):
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
        row_bytes = math.ceil(len(encode(request.body(sample))) / len(sample))
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

    def workers(self, concurrency: int, limits: Limits) -> int:
        """How many chunks to have in flight: as asked, within the server's limit."""
        return max(1, min(concurrency, limits.max_concurrency, len(self.pending)))

    def take(self) -> tuple[tuple[int, int], bytes] | None:
        """The next chunk's rows and body, or None when there is none or the job failed."""
        while True:
            with self.lock:
                if self.failed or not self.pending:
                    return None
                start, stop = self.pending.popleft()
            body = encode(self.request.body(slice(start, stop)))
            if len(body) <= self.max_bytes:
                return (start, stop), body
            if stop - start == 1:
                raise ValueError(f"Row {start} alone is larger than {self.max_bytes} bytes")
            middle = (start + stop) // 2
            with self.lock:
                self.pending.extendleft([(middle, stop), (start, middle)])

    def ordered(self) -> list[dict[str, Any]]:
        return [self.parts[start] for start in sorted(self.parts)]
