"""Load above the concurrency limit: 200 or 503 only, right numbers, bounded server memory.

With one worker process and with two; the limit (and so the memory bound) holds in each worker,
and /metrics counts over both.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import numpy as np
import orjson
import pytest
import torch

import fairloss
from tests.conftest import SUMMARY_TABLES, Server, assert_no_leak, running_server
from tests.pinning import vm_hwm_bytes, worker_pids

LIMIT = 2
CLIENTS = 24
REQUESTS = 240
MAX_BODY_BYTES = 4 * 1024 * 1024
SIZES = (500, 1000, 2000, 3000, 4000, 5000)
CLASSES = 16
BUSY = {
    "type": "/problems/server-busy",
    "title": "Server busy",
    "status": 503,
    "detail": f"The server is computing as many requests as it takes at once ({LIMIT}); "
    "retry shortly.",
}
# Memory a worker may add to its baseline while answering: each of its LIMIT slots holds at
# most one body (MAX_BODY_BYTES) and what is parsed and computed from it, a small multiple of it.
MEMORY_ALLOWANCE = LIMIT * 40 * MAX_BODY_BYTES + 64 * 1024 * 1024
pytestmark = pytest.mark.timeout(240)


@dataclass
class Batch:
    body: bytes
    n: int
    total: np.ndarray[Any, Any]
    reduced: dict[str, float]


def _batch(n: int, seed: int) -> Batch:
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=(n, CLASSES))
    labels = rng.integers(0, CLASSES, size=n)
    terms = fairloss.fair_loss_terms(
        torch.from_numpy(logits).to(torch.float32), torch.from_numpy(labels)
    )
    body = orjson.dumps({"logits": logits.tolist(), "labels": labels.tolist()})
    assert len(body) < MAX_BODY_BYTES
    reduced = {k: float(getattr(terms, k).double().mean()) for k in ("ce", "penalty", "total")}
    return Batch(body, n, terms.total.double().numpy(), reduced)


def _right(batch: Batch, answer: dict[str, Any]) -> bool:
    return (
        answer["n"] == batch.n
        and answer["num_classes"] == CLASSES
        and np.allclose(answer["per_sample"]["total"], batch.total, rtol=1e-5, atol=1e-6)
        and all(
            np.isclose(answer["reduced"][k], v, rtol=1e-5, atol=1e-7)
            for k, v in batch.reduced.items()
        )
    )


@dataclass
class Tally:
    statuses: collections.Counter[int | str]
    wrong: int = 0
    scored: int = 0


async def _load(server: Server, batches: list[Batch]) -> Tally:
    tally = Tally(collections.Counter())
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    queue = iter(range(REQUESTS))
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:

        async def worker() -> None:
            for k in queue:
                batch = batches[k % len(batches)]
                try:
                    response = await client.post(
                        "/score", content=batch.body, headers={"content-type": "application/json"}
                    )
                except httpx.TransportError as exc:
                    tally.statuses[type(exc).__name__] += 1
                    continue
                tally.statuses[response.status_code] += 1
                if response.status_code == 200:
                    tally.scored += batch.n
                    tally.wrong += not _right(batch, response.json())
                elif response.status_code == 503:
                    assert response.headers["retry-after"] == "1"
                    assert response.json() == BUSY
                    assert_no_leak(response.text)
                else:
                    assert_no_leak(response.text)

        with anyio.fail_after(180):
            async with anyio.create_task_group() as group:
                for _ in range(CLIENTS):
                    group.start_soon(worker)
    return tally


def _metric(text: str, name: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(name + " "))
    return float(line.split()[-1])


@pytest.mark.anyio
@pytest.mark.parametrize("workers", [1, 2])
async def test_load_above_the_concurrency_limit(workers: int) -> None:
    batches = [_batch(n, seed) for seed, n in enumerate(SIZES)]
    env = {
        "FAIRLOSS_WORKERS": str(workers),
        "FAIRLOSS_MAX_CONCURRENCY": str(LIMIT),
        "FAIRLOSS_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        "FAIRLOSS_TORCH_THREADS": "1",
        "FAIRLOSS_LOG_LEVEL": "warning",
    }
    with running_server(env) as server:
        pids = worker_pids(server.process.pid)
        baseline = {pid: vm_hwm_bytes(pid) for pid in pids}
        tally = await _load(server, batches)
        peak = {pid: vm_hwm_bytes(pid) for pid in pids}
        metrics = httpx.get(f"{server.url}/metrics").text
        assert worker_pids(server.process.pid) == pids, "a worker died under load"

    ok, busy = tally.statuses[200], tally.statuses[503]
    other = sum(tally.statuses.values()) - ok - busy
    mib = 1024 * 1024
    memory = ", ".join(
        f"{peak[pid] / mib:.0f} MiB (at start {baseline[pid] / mib:.0f} MiB, bound "
        f"{(baseline[pid] + MEMORY_ALLOWANCE) / mib:.0f} MiB)"
        for pid in pids
    )
    table = "\n".join(
        [
            f"POST /score over loopback: {CLIENTS} concurrent clients, {workers} worker(s), "
            f"FAIRLOSS_MAX_CONCURRENCY={LIMIT} each, batches of {min(SIZES)}..{max(SIZES)} x "
            f"{CLASSES}",
            "| requests sent | answered 200 | answered 503 | other statuses | wrong numbers "
            "| peak memory of each worker (VmHWM) |",
            "|---|---|---|---|---|---|",
            f"| {REQUESTS} | {ok} | {busy} | {other} | {tally.wrong} | {memory} |",
        ]
    )
    print("\n" + table)
    SUMMARY_TABLES[f"load test, {workers} worker(s)"] = table

    assert len(pids) == workers
    assert sum(tally.statuses.values()) == REQUESTS
    assert other == 0, tally.statuses
    assert tally.wrong == 0
    assert ok > 0
    assert busy > 0, "the load never reached the concurrency limit"
    for pid in pids:
        assert peak[pid] < baseline[pid] + MEMORY_ALLOWANCE
    # Summed over the workers, whichever answered.
    assert _metric(metrics, 'fairloss_rejections_total{reason="busy"}') == busy
    assert _metric(metrics, "fairloss_samples_scored_total") == tally.scored
    assert _metric(metrics, "fairloss_computations_in_flight") == 0
