"""Connections pinned to known worker processes, and a server's worker processes.

The kernel hands each new connection to whichever worker accepts it first (a worker still
starting takes none). A client of one connection that asks ``/info`` learns which worker
(``server.worker_pid``) holds that connection, and keeps it while the connection stays open
(uvicorn keeps an idle one for 5 s). Tests that must fill every worker's slots, whatever their
number, pin as many connections to each.
"""

from __future__ import annotations

import collections
import time
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path

import anyio
import httpx

WAIT_S = 30.0
"""How long to wait for every worker to take connections: the last to start may take its time."""


def _pins(pids: list[int], per_worker: int, workers: int) -> None:
    """Fail unless ``pids`` (of the kept connections) name ``workers`` workers, ``per_worker``
    times each."""
    counts = collections.Counter(pids)
    said = f"connections pinned to workers {dict(counts)}; wanted {per_worker} on each of {workers}"
    assert len(counts) == workers, said
    assert set(counts.values()) == {per_worker}, said


async def pinned_clients(
    stack: AsyncExitStack, url: str, per_worker: int, workers: int, timeout: float = 30.0
) -> tuple[list[httpx.AsyncClient], list[int]]:
    """Clients of one connection each, ``per_worker`` of them on each of ``workers`` workers,
    and each one's worker pid, checked once more before they are returned. Connections that
    land on a worker already served are closed; ``stack`` closes the others.

    Raises:
        AssertionError: when the server has fewer workers (or they did not all start within
            `WAIT_S`), or a pinned connection did not stay open.
    """
    wanted = per_worker * workers
    kept: list[httpx.AsyncClient] = []
    pids: list[int] = []
    seen: set[int] = set()
    one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    deadline = time.monotonic() + WAIT_S
    while len(kept) < wanted and time.monotonic() < deadline:
        async with AsyncExitStack() as attempt:
            client = await attempt.enter_async_context(
                httpx.AsyncClient(base_url=url, limits=one, timeout=timeout)
            )
            pid = (await client.get("/info")).json()["server"]["worker_pid"]
            seen.add(pid)
            # Pin only once every worker takes connections: idle ones close after 5 s.
            if len(seen) == workers and pids.count(pid) < per_worker:
                stack.push_async_exit(attempt.pop_all())
                kept.append(client)
                pids.append(pid)
                continue
        await anyio.sleep(0.01)
    _pins(pids, per_worker, workers)
    again = [(await client.get("/info")).json()["server"]["worker_pid"] for client in kept]
    assert again == pids, "a pinned connection was closed and opened again"
    return kept, pids


def pinned_sync_clients(
    stack: ExitStack, url: str, per_worker: int, workers: int, timeout: float = 30.0
) -> tuple[list[httpx.Client], list[int]]:
    """`pinned_clients`, with `httpx.Client` (for threads)."""
    wanted = per_worker * workers
    kept: list[httpx.Client] = []
    pids: list[int] = []
    seen: set[int] = set()
    one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    deadline = time.monotonic() + WAIT_S
    while len(kept) < wanted and time.monotonic() < deadline:
        with ExitStack() as attempt:
            client = attempt.enter_context(httpx.Client(base_url=url, limits=one, timeout=timeout))
            pid = client.get("/info").json()["server"]["worker_pid"]
            seen.add(pid)
            if len(seen) == workers and pids.count(pid) < per_worker:
                stack.push(attempt.pop_all())
                kept.append(client)
                pids.append(pid)
                continue
        time.sleep(0.01)
    _pins(pids, per_worker, workers)
    again = [client.get("/info").json()["server"]["worker_pid"] for client in kept]
    assert again == pids, "a pinned connection was closed and opened again"
    return kept, pids


def worker_pids(pid: int) -> list[int]:
    """The worker processes of the server process ``pid``: its children that multiprocessing
    spawned (not its resource tracker), or the server itself when it has none (one worker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    workers = [
        int(child)
        for child in children
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
    ]
    return workers or [pid]


def vm_hwm_bytes(pid: int) -> int:
    """The peak resident memory (VmHWM) of process ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/PID/status")
