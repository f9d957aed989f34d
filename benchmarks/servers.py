"""The servers the benchmark talks to, and what it reads of them from ``/proc``.

`naive_app` is the endpoint most users would write first (pydantic ``list[list[float]]``,
``torch.tensor(list)``), served only by this benchmark; the service itself runs as
``python -m service`` (`tests.conftest.running_server`), and `serve_fixed_answer` runs it with
a ``/score`` that answers without computing, to show what the route itself costs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import torch
from fastapi import FastAPI
from pydantic import BaseModel

from benchmarks.common import BOOT, ROOT, compare_body, json_body, payload
from fairloss import fair_loss_terms
from tests.conftest import free_port, running_server
from tests.pinning import vm_hwm_bytes


class NaiveRequest(BaseModel):
    logits: list[list[float]]
    labels: list[int]


def naive_app() -> FastAPI:
    """``POST /score``: the per-sample cross-entropy and penalty of JSON lists."""
    app = FastAPI()

    @app.post("/score")
    def score(request: NaiveRequest) -> dict[str, list[float]]:
        terms = fair_loss_terms(torch.tensor(request.logits), torch.tensor(request.labels))
        return {"ce": terms.ce.tolist(), "penalty": terms.penalty.tolist()}

    return app


@contextmanager
def _serving(
    argv: list[str], ready_path: str, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``python argv`` on a free loopback port (given as ``{port}`` in ``argv``, and as
    ``FAIRLOSS_PORT``), waited for until ``ready_path`` answers 200, stopped on exit."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, *(arg.format(port=port) for arg in argv)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "FAIRLOSS_PORT": str(port), **(env or {})},
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}{ready_path}", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url, process
    finally:
        process.terminate()
        process.wait(timeout=15)


@contextmanager
def naive_server() -> Iterator[tuple[str, int]]:
    """The naive app under uvicorn (one process) on a free loopback port: (URL, pid)."""
    command = ["-m", "uvicorn", "--factory", "benchmarks.servers:naive_app"]
    with _serving([*command, "--port", "{port}", "--log-level", "warning"], "/docs") as served:
        url, process = served
        yield url, process.pid


def serve_fixed_answer() -> None:
    """``python -m service`` with one worker whose ``/score`` skips parsing and scoring and
    answers the 64 x 10 body that it would compute: the route, the request's body and the
    response alone, against which to read `small_latency`'s ``/score``."""
    import service.__main__
    import service.routes.score as route
    from service.json_codec import score_body
    from service.settings import Settings

    answer = score_body(json_body(*payload(64, 10)), "cpu", 2**24)
    route.score_body = lambda _body, _device, _limit, _reserve: answer
    service.__main__.run(Settings(workers=1))


@contextmanager
def fixed_answer_server() -> Iterator[str]:
    """`serve_fixed_answer` on a free loopback port: its URL."""
    code = "from benchmarks.servers import serve_fixed_answer; serve_fixed_answer()"
    with _serving(["-c", code], "/readyz") as (url, _):
        yield url


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a process and its live descendants (the service's worker
    processes), from ``/proc/<pid>/stat``."""
    tick = os.sysconf("SC_CLK_TCK")
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:  # it exited meanwhile
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
        pending += map(int, children)
    return total


def bootstrap_peak_memory() -> dict[str, tuple[int, int, int]]:
    """(body bytes, VmHWM before, VmHWM after) of a fresh server answering the /compare of
    the bootstrap timing row, with and without its 1,000-replicate bootstrap."""
    n, c, replicates = BOOT
    found = {}
    for name, bootstrap in (("plain", None), ("bootstrap", {"replicates": replicates, "seed": 7})):
        body = compare_body(n, c, bootstrap)
        with running_server({"FAIRLOSS_WORKERS": "1"}) as server:
            httpx.post(f"{server.url}/score", content=json_body(*payload(64, 10)), timeout=60.0)
            before = vm_hwm_bytes(server.process.pid)
            response = httpx.post(f"{server.url}/compare", content=body, timeout=300.0)
            response.raise_for_status()
            found[name] = (len(body), before, vm_hwm_bytes(server.process.pid))
    return found
