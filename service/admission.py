"""A bound on concurrent computations: past it, a 503 with Retry-After instead of a queue.

A request holds its slot while its body streams in and while a worker thread computes its
answer. Both happen under the per-request time limit; when the limit passes, the request is
answered 503 at once, but a worker thread cannot be killed, so the slot stays held until the
thread really returns. The limit on concurrent computations therefore holds even for requests
that timed out, and the worker pool, sized to the limit, never queues.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sized
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from typing import TypeVar

import anyio

from service.errors import ProblemError

T = TypeVar("T", bound=Sized)
R = TypeVar("R")


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
    ) -> None:
        """``reject(reason)`` is told of each refusal, ``held(count)`` of the slots held each
        time the count changes (for the in-flight gauge)."""
        self.limit = limit
        self.inline_bytes = inline_bytes
        self.inline = inline
        self.retry_after_s = retry_after_s
        self.reject = reject
        self.held = held
        self.in_flight = 0
        self.executor: ThreadPoolExecutor | None = None

    def open(self) -> None:
        """Start the worker threads (the app's lifespan calls it at start-up)."""
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

    async def compute(
        self, receive: Callable[[], Awaitable[T]], work: Callable[[T], R], timeout_s: float
    ) -> R:
        """``work(await receive())`` in a slot, within ``timeout_s``: in a worker thread, or on
        the event loop for a body shorter than ``inline_bytes``, whose work takes well under a
        millisecond (a thread hop would cost more than it saves), within ``inline()``."""
        self._admit()
        holders = 1

        def leave(_: object = None) -> None:
            nonlocal holders
            holders -= 1
            if holders == 0:
                self.in_flight -= 1
                self.held(self.in_flight)

        try:
            with anyio.move_on_after(timeout_s):
                value = await receive()
                if len(value) < self.inline_bytes:
                    with self.inline():
                        return work(value)
                if self.executor is None:
                    raise RuntimeError("Admission.open() was not called (the app's lifespan)")
                future = asyncio.get_running_loop().run_in_executor(self.executor, work, value)
                holders += 1
                future.add_done_callback(leave)
                return await asyncio.shield(future)
        finally:
            leave()
        raise self._problem(
            "timeout",
            "Request timed out",
            f"The request took longer than this server's limit of {timeout_s:g} s: send fewer "
            "rows a request (the Python client splits them into chunks), or raise "
            "FAIRLOSS_REQUEST_TIMEOUT_S on the server.",
        )
