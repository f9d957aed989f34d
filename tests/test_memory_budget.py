"""Admission by memory: the budget's forms and default, the ledger the workers share, the costs
held to what requests measure, and a burst of big bodies that a budgeted server survives."""

from __future__ import annotations

import asyncio
import gzip
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
import torch

from fairloss.blocks import BLOCK_ELEMENTS
from service.admission import Reservation
from service.app import create_app
from service.errors import ProblemError
from service.json_codec import score_body
from service.memory import (
    BINARY_COST,
    BLOCKS,
    JSON_COST,
    LEDGER_BYTES,
    Cost,
    Ledger,
    memory_limit,
    quantity,
    resident_bytes,
)
from service.settings import Settings
from tests.conftest import fake_cgroups, in_process, running_server
from tests.memory_peaks import bodies, peak_growth
from tests.pinning import worker_pids

MIB = 1024 * 1024
COSTS = {"json": JSON_COST, "binary": BINARY_COST}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("536870912", 536870912),
        ("512Mi", 512 * MIB),
        ("2Gi", 2 * 1024 * MIB),
        ("1.5Gi", 1536 * MIB),
        ("2G", 2_000_000_000),
        ("512MiB", 512 * MIB),
        (" auto ", 0),
        ("AUTO", 0),
    ],
)
def test_the_budget_is_read_as_kubernetes_writes_memory(given: str, expected: int) -> None:
    assert quantity(given) == expected
    assert Settings(memory_budget=given).memory_budget == expected


@pytest.mark.parametrize(
    "given", ["lots", "-1Gi", "2Zi", "", "1,5Gi", "1.5.5Gi", "1,000", "5.Gi", "10%", "2gi"]
)
def test_a_budget_in_no_known_form_is_refused_saying_which_forms_are_taken(given: str) -> None:
    with pytest.raises(ValueError, match="512Mi, 2Gi"):
        Settings(memory_budget=given)


@pytest.mark.parametrize("given", ["0.5Mi", "100k", "8Ei", "10E", 1024])
def test_a_budget_too_small_to_take_any_request_or_too_large_to_count_is_refused(
    given: str | int,
) -> None:
    with pytest.raises(ValueError, match="expected from 8Mi to 4Ei bytes"):
        Settings(memory_budget=given)


def test_a_bad_budget_stops_the_server_before_it_starts() -> None:
    env = {**os.environ, "FAIRLOSS_MEMORY_BUDGET": "lots", "FAIRLOSS_PORT": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "service"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "FAIRLOSS_MEMORY_BUDGET: expected a number of bytes" in done.stderr


def test_the_memory_limit_is_the_tightest_cgroup_limit_on_the_path(tmp_path: Path) -> None:
    root, membership = fake_cgroups(
        tmp_path,
        "0::/kubepods/pod1/ctr\n",
        {
            "kubepods/pod1/ctr/memory.max": "max\n",
            "kubepods/pod1/memory.max": f"{3 * 1024 * MIB}\n",
            "kubepods/memory.max": f"{8 * 1024 * MIB}\n",
        },
    )
    assert memory_limit(root, membership) == 3 * 1024 * MIB


def test_a_cgroup_v1_limit_counts_and_no_limit_means_the_machine(tmp_path: Path) -> None:
    machine = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    v1 = fake_cgroups(
        tmp_path / "v1", "5:memory:/docker/x\n", {"memory/memory.limit_in_bytes": "2147483648"}
    )
    assert memory_limit(*v1) == min(2 * 1024 * MIB, machine)
    unset = fake_cgroups(
        tmp_path / "v1-unset", "5:memory:/\n", {"memory/memory.limit_in_bytes": str(2**63 - 4096)}
    )
    assert memory_limit(*unset) == machine
    v2 = fake_cgroups(tmp_path / "v2", "0::/\n", {"memory.max": "max\n"})
    assert memory_limit(*v2) == machine


def _ledger_file(tmp_path: Path) -> str:
    path = tmp_path / "memory.ledger"
    path.write_bytes(bytes(LEDGER_BYTES))
    return str(path)


def test_workers_share_one_budget_and_a_dead_workers_reservations_are_freed(tmp_path: Path) -> None:
    """Another process (a worker) reserves through the same file: this one sees it held, is
    refused what would pass the budget, and gets it once that process is gone."""
    path = _ledger_file(tmp_path)
    mine = Ledger(100 * MIB, path)
    code = (
        "import sys, time; from service.memory import Ledger; "
        f"ledger = Ledger(1, {path!r}); assert ledger.budget == {100 * MIB}; "
        f"assert ledger.reserve({60 * MIB}); print('held', flush=True); time.sleep(60)"
    )
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as other:
        try:
            assert other.stdout is not None
            assert other.stdout.readline().strip() == "held"
            assert mine.held() == 60 * MIB
            assert not mine.reserve(41 * MIB)
            assert mine.reserve(40 * MIB)
            mine.release(40 * MIB)
        finally:
            other.kill()
    assert mine.held() == 0
    assert mine.reserve(100 * MIB)
    mine.close()


def test_a_reservation_grows_with_its_body_and_says_413_or_503() -> None:
    ledger = Ledger(100 * MIB)
    cost = Cost(per_byte=2.0, block_per_byte=0.0, fixed=MIB)

    def refuse(status: int, needed: int) -> ProblemError:
        return ProblemError(status, "refused", str(needed))

    first = Reservation(ledger, cost, refuse)
    first.cover(10 * MIB)
    assert ledger.held() == first.held == 21 * MIB
    first.cover(20 * MIB)  # a stream past its estimate: a quarter ahead at least
    assert first.held >= 41 * MIB
    second = Reservation(ledger, cost, refuse)
    with pytest.raises(ProblemError) as busy:
        second.cover(40 * MIB)
    assert busy.value.status == 503
    with pytest.raises(ProblemError) as never:
        second.cover(60 * MIB)
    assert never.value.status == 413
    first.release()
    second.cover(40 * MIB)
    second.release()
    assert ledger.held() == 0


@pytest.fixture
def settings() -> Settings:
    return Settings(memory_budget=12 * MIB, retry_after_s=2)


def _score_json(n: int, c: int = 10) -> bytes:
    rng = np.random.default_rng(n)
    body = {"logits": rng.normal(size=(n, c)), "labels": rng.integers(0, c, n)}
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


@pytest.mark.anyio
async def test_a_body_that_could_never_fit_is_a_413_naming_the_budget(
    client: httpx.AsyncClient,
) -> None:
    big = _score_json(12_000)  # about 2.4 MB: 5.5 x that is past 12 MiB
    response = await client.post("/score", content=big)
    assert response.status_code == 413
    assert "memory budget of 12 MiB (FAIRLOSS_MEMORY_BUDGET)" in response.json()["detail"]
    assert (await client.post("/score", content=_score_json(10))).status_code == 200


@pytest.mark.anyio
async def test_a_body_that_stalls_is_a_408_and_gives_its_reservation_back() -> None:
    """A client that sends its headers, part of its body, then nothing, would hold its
    reservation for the whole request time limit: after FAIRLOSS_BODY_IDLE_TIMEOUT_S with no
    byte, a 408, and the memory is free again."""
    settings = Settings(memory_budget=64 * MIB, body_idle_timeout_s=0.2)
    app = create_app(settings)
    body = _score_json(2000)

    async def stalls() -> AsyncIterator[bytes]:
        yield body[:1000]
        await asyncio.sleep(2)
        yield body[1000:]

    async with in_process(settings, app) as client:
        started = time.monotonic()
        headers = {"Content-Length": str(len(body))}
        response = await client.post("/score", content=stalls(), headers=headers)
        assert response.status_code == 408, response.text
        assert time.monotonic() - started < 1.5
        assert "FAIRLOSS_BODY_IDLE_TIMEOUT_S" in response.json()["detail"]
        assert app.state.admission.ledger.held() == 0
        assert (await client.post("/score", content=body)).status_code == 200


@pytest.mark.anyio
async def test_a_bootstrap_reserves_its_memory_too(client: httpx.AsyncClient) -> None:
    """A body the budget takes, whose bootstrap's working memory it could never hold: 413."""
    body = {"logits": [[1.0, 0.0]] * 2000, "labels": [0] * 2000}
    assert (await client.post("/score", json=body)).status_code == 200
    booted = await client.post("/score", json={**body, "bootstrap": {"replicates": 10_000}})
    assert booted.status_code == 413
    assert "memory budget of 12 MiB" in booted.json()["detail"]
    assert (await client.post("/score", json=body)).status_code == 200


@pytest.mark.anyio
async def test_a_chunked_or_compressed_body_is_refused_once_it_streams_past_the_budget(
    client: httpx.AsyncClient,
) -> None:
    big = _score_json(12_000)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    chunked = await client.post("/score", content=chunks())
    assert chunked.status_code == 413, chunked.text
    packed = gzip.compress(big)
    assert len(packed) * 5.5 < 12 * MIB  # only its inflated size is past the budget
    compressed = await client.post("/score", content=packed, headers={"Content-Encoding": "gzip"})
    assert compressed.status_code == 413


@pytest.mark.anyio
async def test_past_what_is_left_a_503_with_retry_after_and_then_service_again(
    settings: Settings,
) -> None:
    """The budget held by others (as another worker's requests would hold it): a 503 at once,
    with Retry-After; the same request passes once they are answered; /info says both."""
    app = create_app(settings)
    async with in_process(settings, app) as client:
        await _held_by_others(client, app.state.admission.ledger)


async def _held_by_others(client: httpx.AsyncClient, ledger: Ledger) -> None:
    body = _score_json(2000)
    assert ledger.reserve(10 * MIB)
    try:
        info = (await client.get("/info")).json()["memory"]
        assert info == {"budget_bytes": 12 * MIB, "held_bytes": 10 * MIB}
        response = await client.post("/score", content=body)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "2"
        assert "memory budget (12 MiB)" in response.json()["detail"]
    finally:
        ledger.release(10 * MIB)
    assert (await client.post("/score", content=body)).status_code == 200
    assert (await client.get("/info")).json()["memory"]["held_bytes"] == 0


@pytest.mark.timeout(180)
def test_each_route_and_encoding_peaks_within_its_cost() -> None:
    """The costs the budget reserves are measured, not guessed: each kind of body, sent to a
    real worker, grows its resident memory by no more than its route's cost, and by at least
    a quarter of it at 24 MiB (a cost far above what it measures wastes the budget). Each
    kind is sent once unmeasured first: what a worker allocates once (caches, a parser's first
    use) is its idle memory's, not a request's."""
    found = []
    with running_server() as server, httpx.Client(timeout=120) as client:
        for body in bodies(MIB):
            client.post(server.url + body.path, content=body.content, headers=body.headers)
        for size in (MIB, 24 * MIB):
            for body in bodies(size):
                cost = COSTS[body.cost].of(body.size) + body.extra
                growth = peak_growth(client, server.url, server.process.pid, body)
                found.append((body.kind, body.size, growth, cost))
    for kind, size, growth, reserved in found:
        assert growth <= reserved, f"{kind}, {size} bytes: peak {growth} > cost {reserved}"
        if size >= 24 * MIB:
            assert growth >= reserved / 4, f"{kind}: {growth} is far below its cost {reserved}"


def statuses_of(responses: list[httpx.Response], status: int) -> int:
    return sum(r.status_code == status for r in responses)


def test_the_block_buffers_counted_are_the_cores() -> None:
    assert 3 * BLOCK_ELEMENTS * torch.finfo(torch.float64).bits // 8 == BLOCKS


def _summed_rss(pid: int) -> int:
    return resident_bytes(pid) + sum(resident_bytes(w) for w in worker_pids(pid) if w != pid)


@pytest.mark.timeout(300)
def test_a_budgeted_server_holds_a_burst_of_big_bodies_and_keeps_answering_small_ones() -> None:
    """32 concurrent 40 MiB JSON bodies and 200 small requests, against 2 workers with a
    1.5 GiB budget: every answer a 200 (and right) or a 503 with Retry-After; the processes'
    summed resident memory, sampled every 20 ms, never above the budget plus their idle
    memory; and every small request answered 200 while the big ones wait."""
    budget = 1536 * MIB
    n, c = 20_000, 100
    big = _score_json(n, c)
    while len(big) < 40 * MIB:
        n = int(n * 40 * MIB / len(big)) + 1
        big = _score_json(n, c)
    expected = orjson.loads(score_body(big, "cpu", 2**30).body)["reduced"]["total"]
    small = _score_json(8, 10)
    env = {"FAIRLOSS_WORKERS": "2", "FAIRLOSS_MEMORY_BUDGET": "1.5Gi"}
    with running_server(env) as server:
        pid = server.process.pid
        time.sleep(0.5)
        idle = _summed_rss(pid)
        peak, stop = [idle], threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak.append(_summed_rss(pid))
                time.sleep(0.02)

        async def burst() -> tuple[list[httpx.Response], list[httpx.Response]]:
            limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
            async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as http:
                bigs = [asyncio.create_task(http.post("/score", content=big)) for _ in range(32)]
                smalls = []
                for _ in range(200):
                    smalls.append(await http.post("/score", content=small))
                    await asyncio.sleep(0.005)
                return list(await asyncio.gather(*bigs)), smalls

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            bigs, smalls = asyncio.run(burst())
        finally:
            stop.set()
            sampler.join()
        info = httpx.get(f"{server.url}/info").json()["memory"]
    print(
        f"\nburst: {statuses_of(bigs, 200)} of 32 big bodies ({len(big) / MIB:.0f} MiB) answered "
        f"200, {statuses_of(bigs, 503)} 503; 200 small all 200; summed RSS idle "
        f"{idle / MIB:.0f} MiB, peak {max(peak) / MIB:.0f} MiB, bound {(budget + idle) / MIB:.0f} "
        f"MiB ({len(peak)} samples)"
    )
    assert info["budget_bytes"] == budget
    statuses = sorted(r.status_code for r in bigs)
    assert set(statuses) <= {200, 503}, statuses
    assert 200 in statuses, statuses
    assert 503 in statuses, statuses
    for response in bigs:
        if response.status_code == 200:
            assert response.json()["reduced"]["total"] == pytest.approx(expected, rel=1e-6)
        else:
            assert int(response.headers["Retry-After"]) >= 0
    assert [r.status_code for r in smalls] == [200] * 200
    assert max(peak) <= budget + idle, (
        f"summed RSS peaked at {max(peak) / MIB:.0f} MiB; idle {idle / MIB:.0f} MiB, "
        f"budget {budget / MIB:.0f} MiB"
    )
