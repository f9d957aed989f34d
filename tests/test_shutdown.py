"""SIGTERM mid-burst: new connections refused, accepted requests answered in full, exit 0.

With one worker process and with two: SIGTERM then goes to their supervisor, ``python -m
service``, which must stop listening and wait for both to drain.
"""

from __future__ import annotations

import collections
import signal
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import anyio
import httpx
import numpy as np
import orjson
import pytest
import torch
from asgi_lifespan import LifespanManager

import fairloss
from service.app import create_app
from service.settings import Settings
from tests.conftest import SUMMARY_TABLES, assert_no_leak, running_server
from tests.pinning import pinned_clients

LIMIT = 4
GRACE_S = 10
EXTRA = 12
pytestmark = pytest.mark.timeout(120)


def _batch(seed: int) -> tuple[bytes, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(300, 8))
    labels = rng.integers(0, 8, size=300)
    terms = fairloss.fair_loss_terms(
        torch.from_numpy(logits).to(torch.float32), torch.from_numpy(labels)
    )
    body = orjson.dumps({"logits": logits.tolist(), "labels": labels.tolist()})
    return body, terms.total.double().numpy()


async def _in_flight(client: httpx.AsyncClient) -> float:
    text = (await client.get("/metrics")).text
    line = next(x for x in text.splitlines() if x.startswith("fairloss_computations_in_flight "))
    return float(line.split()[-1])


async def _until_refused(url: str) -> None:
    """Return once a new connection to ``url`` is refused (the server stopped listening).

    A probe that the kernel queued on a listening socket just as a worker closed it is dropped
    unanswered (RemoteProtocolError) or reset (ReadError): a race of the probe's, not an
    answer, so probe again."""
    async with httpx.AsyncClient(timeout=5) as fresh:
        while True:
            try:
                await fresh.get(url)
            except httpx.ConnectError:
                return
            except (httpx.RemoteProtocolError, httpx.ReadError):
                pass
            await anyio.sleep(0.02)


@pytest.mark.anyio
@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_mid_burst_finishes_accepted_requests_and_exits_0(workers: int) -> None:
    """Every worker's LIMIT slots held by requests whose bodies are half sent (connections pinned
    to each worker), so that the burst is refused 503 whichever worker takes it; then SIGTERM."""
    held = LIMIT * workers
    batches = [_batch(seed) for seed in range(held)]
    env = {
        "FAIRLOSS_WORKERS": str(workers),
        "FAIRLOSS_MAX_CONCURRENCY": str(LIMIT),
        "FAIRLOSS_GRACEFUL_SHUTDOWN_S": str(GRACE_S),
        "FAIRLOSS_LOG_LEVEL": "warning",
    }
    go = anyio.Event()
    burst_answered = anyio.Event()
    answers: dict[int, httpx.Response] = {}
    burst: collections.Counter[int | str] = collections.Counter()

    async def half_then_rest(body: bytes) -> AsyncIterator[bytes]:
        yield body[: len(body) // 2]
        await go.wait()
        yield body[len(body) // 2 :]

    with running_server(env) as server:
        limits = httpx.Limits(max_connections=EXTRA + 2)
        async with (
            AsyncExitStack() as stack,
            httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as client,
        ):
            pinned, pids = await pinned_clients(stack, server.url, LIMIT, workers)

            async def accepted(k: int) -> None:
                body, _ = batches[k]
                answers[k] = await pinned[k].post("/score", content=half_then_rest(body))

            async def extra(k: int) -> None:
                try:
                    response = await client.post("/score", content=batches[k % held][0])
                    burst[response.status_code] += 1
                    assert_no_leak(response.text)
                except httpx.TransportError as exc:
                    burst[type(exc).__name__] += 1
                finally:
                    if burst.total() == EXTRA:
                        burst_answered.set()

            with anyio.fail_after(60):
                async with anyio.create_task_group() as group:
                    for k in range(held):
                        group.start_soon(accepted, k)
                    while await _in_flight(client) < held:
                        await anyio.sleep(0.02)
                    for k in range(EXTRA):
                        group.start_soon(extra, k)
                    await burst_answered.wait()
                    server.process.send_signal(signal.SIGTERM)
                    terminated = time.monotonic()
                    await _until_refused(f"{server.url}/readyz")
                    assert server.process.poll() is None, "exited with requests in flight"
                    go.set()
        code = server.process.wait(timeout=GRACE_S + 5)
        took = time.monotonic() - terminated

    assert len(set(pids)) == workers
    for k, (_, total) in enumerate(batches):
        assert answers[k].status_code == 200
        assert np.allclose(answers[k].json()["per_sample"]["total"], total, rtol=1e-5, atol=1e-6)
    assert code == 0, server.output()[-2000:]
    assert took < GRACE_S
    assert set(burst) <= {503}, burst
    table = "\n".join(
        [
            "| workers | accepted before SIGTERM | answered 200 in full | burst answered 503 "
            "| new connection after SIGTERM | exit status | exit after SIGTERM |",
            "|---|---|---|---|---|---|---|",
            f"| {workers} | {held} | {sum(a.status_code == 200 for a in answers.values())} "
            f"| {burst[503]} of {EXTRA} | refused | {code} | {took:.1f} s (grace {GRACE_S} s) |",
        ]
    )
    print("\n" + table)
    SUMMARY_TABLES[f"shutdown test, {workers} worker(s)"] = table


@pytest.mark.anyio
async def test_readyz_turns_503_once_the_app_shuts_down() -> None:
    app = create_app(Settings())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        async with LifespanManager(app):
            assert (await client.get("/readyz")).status_code == 200
        after = await client.get("/readyz")
    assert after.status_code == 503
    assert after.json() == {
        "type": "/problems/not-ready",
        "title": "Not ready",
        "status": 503,
        "detail": "The server is starting or shutting down.",
    }
