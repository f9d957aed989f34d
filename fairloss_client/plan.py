"""The client's sans-IO core: chunk planning, answers, retry decisions (request bodies are in
`fairloss_client.bodies`).

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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import orjson
from tenacity import RetryCallState

from fairloss_client.bodies import Request, encode
from service.wire import header_int

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
