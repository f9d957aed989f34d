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
from tenacity import (
    RetryCallState,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    stop_after_delay,
)

from fairloss_client.bodies import Request, encode
from fairloss_client.results import decode_columns
from fairloss_wire.answers import header_int

RETRY_STATUSES = frozenset({502, 503, 504})
Chunk = tuple[tuple[int, int], bytes] | None
"""A chunk's rows (start, stop) and body; None when there are no more."""

# Chunks are sized for throughput; the server's limits and ``max_chunk_rows`` may cut them
# further. Measured on a 2-core machine shared with other work (client and `python -m service`
# on loopback, 300,000 x 100 float32 logits, 4 chunks in flight, medians of 5-7 interleaved
# rounds of a sweep of CHUNK_ELEMENTS; `benchmarks/http_bench.py --only client` checks the
# default), the client's time over in-process `score_batch` of the same arrays (0.7-0.9 s):
#
#   numbers a chunk   2^16   2^17   2^18   2^19   2^20   2^21   2^22   2^23   limits alone
#   server: 1 worker    -      -      -    1.31x  1.19x  1.31x  1.36x  1.66x  2.17x
#   server: 2 workers 2.42x  1.69x  1.29x  1.09x  1.11x  1.12x  1.34x  1.59x  1.78x
#
# ("limits alone": the client before, ~99,000-row chunks, 54 MB bodies). Past 2^21 numbers
# the scoring's intermediates leave the CPU's cache and the bodies' allocations cost page faults
# (client CPU 0.2 s at 2^20, 0.45 s at 2^23); below 2^18 each chunk's fixed costs (a request, a
# few hundred small torch operations) show.
CHUNK_ELEMENTS = 2**20
"""Numbers (rows x numbers a row) in a chunk: 4 MiB of float32 logits, a 5.7 MB body."""
SPLIT_ELEMENTS = 2**18
"""The fewest numbers worth a chunk of their own when a call is split to keep every sender
busy (a server of several workers then scores them side by side)."""


def chunk_rows(request: Request, senders: int) -> int:
    """Rows per chunk for throughput: `CHUNK_ELEMENTS` numbers, or fewer so that each of the
    ``senders`` has a chunk (a server of several workers then scores them side by side), but
    not fewer than `SPLIT_ELEMENTS` numbers; at least one row."""
    per_row = request.row_elements
    spread = max(-(-request.n // senders), SPLIT_ELEMENTS // per_row)
    return max(1, min(CHUNK_ELEMENTS // per_row, spread))


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
    """The server's limits, which hold in each of its ``workers`` (processes; 1 when the server
    does not say)."""

    max_body_bytes: int
    max_elements: int
    max_concurrency: int
    workers: int = 1

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> Limits:
        """The limits in a ``GET /info`` body."""
        limits = info["limits"]
        workers = int((info.get("server") or {}).get("workers") or 1)
        return cls(
            int(limits["max_body_bytes"]),
            int(limits["max_elements"]),
            int(limits["max_concurrency"]),
            max(1, workers),
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

    def policy(self) -> dict[str, Any]:
        """tenacity's arguments for one request's attempts."""
        return {
            "stop": stop_after_attempt(self.attempts) | stop_after_delay(self.total_s),
            "wait": self.wait,
            "retry": retry_if_exception_type(httpx.TransportError) | retry_if_result(retryable),
            "retry_error_callback": _last_outcome,
        }


def _last_outcome(state: RetryCallState) -> Any:
    """When the attempts run out: the last answer (a 503 becomes a `ServiceError`), or the
    last connection error raised again."""
    assert state.outcome is not None
    return state.outcome.result()


TIMED_OUT = "/problems/request-timed-out"


def retryable(response: httpx.Response) -> bool:
    """Whether an answer is worth another try (tenacity's ``retry_if_result``): not a request
    that ran past the server's time limit, which would only run as long again."""
    if response.status_code not in RETRY_STATUSES:
        return False
    try:
        problem = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return True
    return not (isinstance(problem, dict) and problem.get("type") == TIMED_OUT)


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
    """The chunks of one call, in order, and the answers to them: ``senders`` chunks are in
    flight at once, at most ``concurrency`` and the server's ``max_concurrency``; a chunk whose
    body comes out larger than the limit is halved."""

    def __init__(
        self,
        request: Request,
        limits: Limits,
        margin: float,
        max_rows: int | None,
        concurrency: int,
    ) -> None:
        self.request = request
        self.max_bytes = limits.max_body_bytes
        senders = max(1, min(concurrency, limits.max_concurrency))
        rows = max(chunk_rows(request, senders), request.min_rows)
        rows = min(self._fits(limits, margin), rows, request.max_rows, max_rows or request.n)
        self.pending = deque((a, min(a + rows, request.n)) for a in range(0, request.n, rows))
        self.senders = min(senders, len(self.pending))
        self.parts: dict[int, dict[str, Any]] = {}
        self.failed = False
        self.lock = threading.Lock()

    def _fits(self, limits: Limits, margin: float) -> int:
        """The most rows under both limits by ``margin``, from the size of a sample of rows."""
        request = self.request
        sample = np.unique(np.linspace(0, request.n - 1, min(request.n, 256)).astype(np.int64))
        row_bytes = math.ceil(len(encode(request.body(sample))) / len(sample))
        rows = min(
            int(limits.max_elements * margin) // request.row_elements,
            int(limits.max_body_bytes * margin) // row_bytes,
        )
        if rows < 1:
            raise ValueError(
                f"One row ({request.row_elements} numbers, about {row_bytes} bytes) does not "
                f"fit the server's limits ({limits.max_elements} numbers, "
                f"{limits.max_body_bytes} bytes)"
            )
        return rows

    def take(self) -> Chunk:
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

    def done(self, rows: tuple[int, int], body: dict[str, Any]) -> None:
        """Keep the answer to a chunk, its columns decoded now (`decode_columns`)."""
        self.parts[rows[0]] = decode_columns(body)

    def ordered(self) -> list[dict[str, Any]]:
        return [self.parts[start] for start in sorted(self.parts)]
