"""A bound on concurrent computations: past it, a 503 with Retry-After instead of a queue."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from service.errors import ProblemError


class Admission:
    """Counts requests in flight. Used from the event loop only, so it needs no lock."""

    def __init__(self, limit: int, retry_after_s: int) -> None:
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.in_flight = 0

    @contextmanager
    def slot(self) -> Iterator[None]:
        if self.in_flight >= self.limit:
            raise ProblemError(
                503,
                "Server busy",
                f"The server is computing {self.limit} requests, its limit; retry shortly.",
                headers={"Retry-After": str(self.retry_after_s)},
            )
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
