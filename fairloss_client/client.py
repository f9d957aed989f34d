"""`Client` and `AsyncClient`: thin drivers that send the chunks `fairloss_client.plan` makes.

Inputs are split into chunks sized for throughput under the server's limits (read from
``GET /info``; see `fairloss_client.plan.CHUNK_ELEMENTS`), sent concurrently, retried by tenacity
on 502/503/504 and connection errors as `Retry` says, and merged (`fairloss_client.results`):
the chunks' sums add up to the aggregates that one request for the whole dataset gives, and
superior violations are counted over the merged columns.

The chunks go through a pipeline: one encoder thread builds the bodies in order, each sender
(a thread, or a task) keeps one body encoded ahead, and decodes each answer as it arrives. So a
sender whose answer comes back sends its next body at once, the encoding overlaps the server's
scoring, and the event loop of `AsyncClient` never blocks on an encoding. Each sender holds its
own keep-alive connection, so with a server of several worker processes the chunks in flight
are spread over them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
from tenacity import AsyncRetrying, Retrying
from tqdm import tqdm

from fairloss.bootstrap import Bootstrap
from fairloss.checks import Kind
from fairloss_client.arrays import ArrayLike
from fairloss_client.bodies import Request, compare_request, request_fields, score_request
from fairloss_client.plan import Chunk, Job, Limits, Retry, answer
from fairloss_client.results import CompareResult, ScoreResult, merge_comparisons, merge_scores

JSON_HEADERS = {"content-type": "application/json"}


def _encoder() -> ThreadPoolExecutor:
    """The one thread that encodes a call's chunks, in order, ahead of the senders."""
    return ThreadPoolExecutor(1, thread_name_prefix="fairloss-encode")


class _Base:
    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        concurrency: int | None = None,
        progress: bool | None = None,
        retry: Retry | None = None,
        chunk_margin: float = 0.8,
        max_chunk_rows: int | None = None,
        timeout_s: float = 300.0,
        typed_arrays: bool = True,
    ) -> None:
        if (concurrency is not None and concurrency < 1) or not 0 < chunk_margin <= 1:
            raise ValueError("Expected concurrency >= 1 and chunk_margin in (0, 1]")
        self.url = url.rstrip("/")
        self.headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0))
        self.concurrency = concurrency
        self.progress = progress
        self.retry = retry or Retry()
        self.chunk_margin = chunk_margin
        self.max_chunk_rows = max_chunk_rows
        self.typed = typed_arrays
        self._limits: Limits | None = None

    def _job(self, request: Request, limits: Limits) -> Job:
        """The call's chunks; by default two in flight for each of the server's workers (one
        scored while the next arrives), at least four."""
        concurrency = self.concurrency or max(4, 2 * limits.workers)
        return Job(request, limits, self.chunk_margin, self.max_chunk_rows, concurrency)

    def _bar(self, request: Request) -> tqdm[Any]:
        disable = None if self.progress is None else not self.progress
        label = request.path.strip("/")
        return tqdm(total=request.n, unit="row", unit_scale=True, desc=label, disable=disable)


class Client(_Base):
    """Synchronous client; chunks go out on ``concurrency`` threads (by default two for each of
    the server's worker processes, at least four, at most its ``max_concurrency``). Use as a
    context manager.

    ``score`` and ``compare`` take the scoring options of `fairloss.ScoringOptions` as keyword
    arguments, plus ``kind`` (``compare``: one for all candidates, or ``{name: kind}``, so that
    a ``decision_function`` compares with a ``predict_proba``), ``sample_weight``,
    ``bootstrap`` (a `fairloss.bootstrap.Bootstrap` or its fields: each chunk is sent with its
    ``row_offset``, its replicate sums merged, so ``result.intervals`` and
    ``compared.differences`` are those of one request for all rows), ``per_sample``,
    ``extra_columns``, ``per_class`` (each result's ``classes``: per-class metrics and the
    confusion cells, merged across chunks) and ``groups`` (``{column: one key per item}``:
    each result's ``groups``, and with a bootstrap each difference's, merged by key; with a
    bootstrap every chunk carries the dataset's key counts, ``group_counts``).
    """

    def __init__(self, url: str, *, transport: httpx.BaseTransport | None = None, **kw: Any):
        super().__init__(url, **kw)
        self._http = httpx.Client(
            base_url=self.url, headers=self.headers, timeout=self.timeout, transport=transport
        )
        self.sleep: Callable[[float], None] = time.sleep

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
            self._limits = Limits.from_info(self.info())
        return self._limits

    def score(
        self,
        predictions: ArrayLike,
        labels: ArrayLike,
        *,
        kind: Kind = "logits",
        sample_weight: ArrayLike | None = None,
        bootstrap: Bootstrap | Mapping[str, Any] | None = None,
        per_sample: bool = True,
        extra_columns: Sequence[str] = (),
        per_class: bool = False,
        groups: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> ScoreResult:
        fields = request_fields(
            options, per_sample, extra_columns, False, self.typed, bootstrap, per_class
        )
        request = score_request(
            predictions, labels, fields, kind=kind, sample_weight=sample_weight, groups=groups
        )
        return merge_scores(self._run(request))

    def compare(
        self,
        candidates: Mapping[str, ArrayLike],
        labels: ArrayLike,
        *,
        kind: Kind | Mapping[str, Kind] = "logits",
        sample_weight: ArrayLike | None = None,
        bootstrap: Bootstrap | Mapping[str, Any] | None = None,
        per_sample: bool = True,
        extra_columns: Sequence[str] = (),
        per_class: bool = False,
        groups: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> CompareResult:
        """Score each named candidate's predictions against ``labels``, rank them, count
        violations (which needs the per-sample columns: ``per_sample=False`` is a ValueError)."""
        fields = request_fields(
            options, per_sample, extra_columns, True, self.typed, bootstrap, per_class
        )
        request = compare_request(
            candidates, labels, fields, kind=kind, sample_weight=sample_weight, groups=groups
        )
        return merge_comparisons(self._run(request), sample_weight)

    def _run(self, request: Request) -> list[dict[str, Any]]:
        job = self._job(request, self.limits())
        with (
            self._bar(request) as bar,
            _encoder() as encoder,
            ThreadPoolExecutor(job.senders) as pool,
        ):
            futures = [pool.submit(self._drain, job, encoder, bar) for _ in range(job.senders)]
        for future in futures:
            if (error := future.exception()) is not None:
                raise error
        return job.ordered()

    def _drain(self, job: Job, encoder: ThreadPoolExecutor, bar: tqdm[Any]) -> None:
        ahead: Future[Chunk] = encoder.submit(job.take)
        try:
            while chunk := ahead.result():
                ahead = encoder.submit(job.take)  # encoded while this chunk is sent and scored
                rows, body = chunk
                job.done(rows, self._send("POST", job.request.path, body, rows))
                bar.update(rows[1] - rows[0])
        except BaseException:
            job.failed = True
            ahead.cancel()
            raise

    def _send(
        self, method: str, path: str, body: bytes | None, rows: tuple[int, int] | None
    ) -> dict[str, Any]:
        retrying = Retrying(sleep=self.sleep, **self.retry.policy())
        response: httpx.Response = retrying(
            self._http.request, method, path, content=body, headers=JSON_HEADERS
        )
        return answer(response, rows)


class AsyncClient(_Base):
    """Asynchronous client; ``concurrency`` chunks in flight at once (by default as `Client`'s),
    encoded on a thread of their own. Use with ``async with``.

    ``score`` and ``compare`` take the same arguments as `Client`'s.
    """

    def __init__(self, url: str, *, transport: httpx.AsyncBaseTransport | None = None, **kw: Any):
        super().__init__(url, **kw)
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=self.headers, timeout=self.timeout, transport=transport
        )
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

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
            self._limits = Limits.from_info(await self.info())
        return self._limits

    async def score(
        self,
        predictions: ArrayLike,
        labels: ArrayLike,
        *,
        kind: Kind = "logits",
        sample_weight: ArrayLike | None = None,
        bootstrap: Bootstrap | Mapping[str, Any] | None = None,
        per_sample: bool = True,
        extra_columns: Sequence[str] = (),
        per_class: bool = False,
        groups: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> ScoreResult:
        fields = request_fields(
            options, per_sample, extra_columns, False, self.typed, bootstrap, per_class
        )
        request = score_request(
            predictions, labels, fields, kind=kind, sample_weight=sample_weight, groups=groups
        )
        return merge_scores(await self._run(request))

    async def compare(
        self,
        candidates: Mapping[str, ArrayLike],
        labels: ArrayLike,
        *,
        kind: Kind | Mapping[str, Kind] = "logits",
        sample_weight: ArrayLike | None = None,
        bootstrap: Bootstrap | Mapping[str, Any] | None = None,
        per_sample: bool = True,
        extra_columns: Sequence[str] = (),
        per_class: bool = False,
        groups: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> CompareResult:
        fields = request_fields(
            options, per_sample, extra_columns, True, self.typed, bootstrap, per_class
        )
        request = compare_request(
            candidates, labels, fields, kind=kind, sample_weight=sample_weight, groups=groups
        )
        return merge_comparisons(await self._run(request), sample_weight)

    async def _run(self, request: Request) -> list[dict[str, Any]]:
        job = self._job(request, await self.limits())
        loop = asyncio.get_running_loop()
        with self._bar(request) as bar, _encoder() as encoder:

            def take() -> asyncio.Future[Chunk]:
                return loop.run_in_executor(encoder, job.take)

            drains = [self._drain(job, take, bar) for _ in range(job.senders)]
            outcomes = await asyncio.gather(*drains, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return job.ordered()

    async def _drain(
        self, job: Job, take: Callable[[], asyncio.Future[Chunk]], bar: tqdm[Any]
    ) -> None:
        ahead = take()
        try:
            while chunk := await ahead:
                ahead = take()  # encoded while this chunk is sent and scored
                rows, body = chunk
                job.done(rows, await self._send("POST", job.request.path, body, rows))
                bar.update(rows[1] - rows[0])
        except BaseException:
            job.failed = True
            ahead.cancel()
            raise

    async def _send(
        self, method: str, path: str, body: bytes | None, rows: tuple[int, int] | None
    ) -> dict[str, Any]:
        retrying = AsyncRetrying(sleep=self.sleep, **self.retry.policy())
        response: httpx.Response = await retrying(
            self._http.request, method, path, content=body, headers=JSON_HEADERS
        )
        return answer(response, rows)
