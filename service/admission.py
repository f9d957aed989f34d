"""Two bounds on what the server takes at once, the memory its requests hold (a budget shared
by its workers, `service.memory`) and the computations each worker runs: past either, a 503
with Retry-After instead of a queue.

A request holds its slot and its reservation while its body streams in and while a worker
thread computes its answer. Both happen under the per-request time limit; when the limit
passes, the request is answered 503 at once, but a worker thread cannot be killed, so the slot
(and the memory) stay held until the thread really returns. The limits therefore hold even for
requests that timed out, and the worker pool, sized to the count, never queues.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sized
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from typing import TypeVar

import anyio

from service.errors import ProblemError
from service.memory import MIB, Cost, Ledger, trim_heaps

T = TypeVar("T", bound=Sized)
R = TypeVar("R")
Work = Callable[[T, Callable[[int], None]], R]  # work(body, reserve more memory)
TRIM_AFTER = 16 * MIB  # a request that reserved this much gives its freed memory back


async def _nothing() -> None:
    return None


class Reservation:
    """The memory one request holds in the ledger: `cover` grows it to what a body of a given
    size needs, `release` gives it all back."""

    def __init__(self, ledger: Ledger, cost: Cost, refuse: Callable[[int, int], ProblemError]):
        self.ledger = ledger
        self.cost = cost
        self.refuse = refuse
        self.held = 0
        self.covered = -1  # the body size the reservation covers

    def cover(self, size: int) -> None:
        """Hold what a body of ``size`` bytes needs (a body that streams past its estimate
        grows it a quarter at a time, so that a long one takes the lock a few dozen times).

        Raises:
            ProblemError: 413 when the body could never fit the budget, 503 when it does not
                fit what the other requests leave now.
        """
        if size <= self.covered:
            return
        needed = self.cost.of(size)
        if needed > self.ledger.budget:
            raise self.refuse(413, needed)
        ahead = max(size, int(self.covered * 1.25)) if self.covered > 0 else size
        for target in dict.fromkeys((ahead, size)):  # ahead, else just enough
            if self._grow_to(min(self.cost.of(target), self.ledger.budget)):
                self.covered = target
                return
        raise self.refuse(503, needed)

    def add(self, more: int) -> None:
        """Hold ``more`` bytes besides the body's cost: what the body asks for once parsed (a
        bootstrap's working memory). Called from the worker thread.

        Raises:
            ProblemError: 413 or 503, as `cover` does.
        """
        needed = self.held + more
        if needed > self.ledger.budget:
            raise self.refuse(413, needed)
        if not self._grow_to(needed):
            raise self.refuse(503, needed)

    def _grow_to(self, total: int) -> bool:
        """Hold ``total`` bytes in all, if the ledger has room for the difference."""
        if not self.ledger.reserve(total - self.held):
            return False
        self.held = total
        return True

    def release(self) -> None:
        if self.held:
            self.ledger.release(self.held)
            self.held = 0


class Admission:
    """Counts the slots held. Changed on the event loop only, so it needs no lock."""

    def __init__(
        self,
        limit: int,
        retry_after_s: int,
        reject: Callable[[str], None] = lambda _: None,
        inline_bytes: int = 0,
        inline: Callable[[], AbstractContextManager[object]] = nullcontext,
        held: Callable[[int], None] = lambda _: None,
        ledger: Ledger | None = None,
    ) -> None:
        """``reject(reason)`` is told of each refusal, ``held(count)`` of the slots held each
        time the count changes (for the in-flight gauge). ``ledger`` holds the memory budget
        (`open` makes one of this process's own when none is given)."""
        self.ledger = ledger
        self.limit = limit
        self.inline_bytes = inline_bytes
        self.inline = inline
        self.retry_after_s = retry_after_s
        self.reject = reject
        self.held = held
        self.in_flight = 0
        self.executor: ThreadPoolExecutor | None = None

    def open(self, ledger: Ledger | None = None) -> None:
        """Start the worker threads, and keep ``ledger`` (the app's lifespan calls it at
        start-up, once the budget is known)."""
        if ledger is not None:
            self.ledger = ledger
        elif self.ledger is None:
            self.ledger = Ledger(2**62)
        self.executor = ThreadPoolExecutor(max_workers=self.limit, thread_name_prefix="fairloss")

    def close(self) -> None:
        """Stop the worker threads once the computations still running return (at shutdown,
        when the server has answered every request it took; one that timed out may still run)."""
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = None

    def _problem(self, reason: str, title: str, detail: str) -> ProblemError:
        self.reject(reason)
        return ProblemError(503, title, detail, headers={"Retry-After": str(self.retry_after_s)})

    def _admit(self) -> None:
        if self.in_flight >= self.limit:
            raise self._problem(
                "busy",
                "Server busy",
                f"The server is computing as many requests as it takes at once "
                f"({self.limit}); retry shortly.",
            )
        self.in_flight += 1
        self.held(self.in_flight)

    def _memory_problem(self, status: int, needed: int) -> ProblemError:
        budget = self.ledger.budget if self.ledger is not None else 0
        mib = f"{needed / MIB:,.0f} MiB"
        if status == 413:  # counted as too_large by the metrics, as every 413 is
            return ProblemError(
                413,
                "Content too large",
                f"This request needs {mib} or more of memory to score, more than this "
                f"server's whole memory budget of {budget / MIB:,.0f} MiB "
                "(FAIRLOSS_MEMORY_BUDGET): send fewer rows a request (the Python client splits "
                "them into chunks), fewer bootstrap replicates, binary tensors through the Open "
                "Inference Protocol, or raise the budget.",
            )
        return self._problem(
            "memory",
            "Server busy",
            f"The requests in hand hold this server's memory budget ({budget / MIB:,.0f} MiB): "
            f"this one needs about {mib}; retry shortly.",
        )

    async def compute(
        self,
        receive: Callable[[Reservation], Awaitable[T]],
        work: Work[T, R],
        timeout_s: float,
        cost: Cost,
        discard: Callable[[], Awaitable[None]] = _nothing,
    ) -> R:
        """``work(await receive(reservation), reservation.add)`` in a slot, within
        ``timeout_s``: in a worker thread, or on the event loop for a body shorter than
        ``inline_bytes``, whose work takes well under a millisecond (a thread hop would cost
        more than it saves), within ``inline()``. ``receive`` covers the body's ``cost`` in the
        reservation as it reads; ``work`` may add to it. A request refused (503, 413) is
        answered once ``discard()`` has read what is left of its body, after its slot and
        memory are given back."""
        if self.ledger is None:
            raise RuntimeError("Admission.open() was not called (the app's lifespan)")
        try:
            self._admit()
        except ProblemError:
            with anyio.move_on_after(timeout_s):
                await discard()
            raise
        reservation = Reservation(self.ledger, cost, self._memory_problem)
        holders = 1

        def leave(_: object = None) -> None:
            nonlocal holders
            holders -= 1
            if holders == 0:
                reservation.release()
                self.in_flight -= 1
                self.held(self.in_flight)

        try:
            with anyio.move_on_after(timeout_s):
                try:
                    value = await receive(reservation)
                except ProblemError as problem:
                    if problem.status not in (413, 503):
                        raise
                    leave()  # holders is 0 now: the finally below does not leave again
                    await discard()
                    raise
                if len(value) < self.inline_bytes:
                    with self.inline():
                        return work(value, reservation.add)
                if self.executor is None:
                    raise RuntimeError("Admission.open() was not called (the app's lifespan)")
                big = reservation.held >= TRIM_AFTER
                future = asyncio.get_running_loop().run_in_executor(
                    self.executor, _trimmed if big else _plain, work, value, reservation.add
                )
                holders += 1
                future.add_done_callback(leave)
                return await asyncio.shield(future)
        finally:
            if holders > 0:
                leave()
        raise self._problem(
            "timeout",
            "Request timed out",
            f"The request took longer than this server's limit of {timeout_s:g} s: send fewer "
            "rows a request (the Python client splits them into chunks), or raise "
            "FAIRLOSS_REQUEST_TIMEOUT_S on the server.",
        )


def _plain(work: Work[T, R], value: T, add: Callable[[int], None]) -> R:
    return work(value, add)


def _trimmed(work: Work[T, R], value: T, add: Callable[[int], None]) -> R:
    """``work(value, add)``, then the free memory of the heaps given back to the system."""
    try:
        return work(value, add)
    finally:
        trim_heaps()
