"""Admission: small bodies are computed on the event loop (on one torch thread), larger ones
in a worker thread."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
import torch

from service.admission import Admission, Reservation
from service.app import create_app
from service.memory import JSON_COST
from service.settings import Settings


async def _thread_of(admission: Admission, body: bytes) -> int:
    async def receive(_: Reservation) -> bytes:
        return body

    return await admission.compute(receive, lambda _, __: threading.get_ident(), 5, JSON_COST)


@pytest.mark.anyio
async def test_a_body_shorter_than_inline_bytes_is_computed_on_the_event_loop() -> None:
    admission = Admission(limit=2, retry_after_s=1, inline_bytes=100)
    admission.open()
    assert await _thread_of(admission, b"x" * 99) == threading.get_ident()
    assert admission.in_flight == 0


@pytest.mark.anyio
async def test_a_body_of_inline_bytes_or_more_is_computed_in_a_worker_thread() -> None:
    admission = Admission(limit=2, retry_after_s=1, inline_bytes=100)
    admission.open()
    assert await _thread_of(admission, b"x" * 100) != threading.get_ident()
    assert admission.in_flight == 0


@pytest.mark.anyio
async def test_inline_bytes_zero_sends_every_body_to_a_worker_thread() -> None:
    admission = Admission(limit=2, retry_after_s=1, inline_bytes=0)
    admission.open()
    assert await _thread_of(admission, b"") != threading.get_ident()


@pytest.mark.anyio
async def test_the_apps_inline_work_runs_on_one_torch_thread_and_restores_the_count() -> None:
    """The app's admission computes a small body with one torch thread (its pool would cost a
    small batch more than it gives), and only a small one; the count is restored after."""
    app = create_app(Settings())
    admission: Admission = app.state.admission
    admission.open()
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:

        async def threads(body: bytes) -> int:
            async def receive(_: Reservation) -> bytes:
                return body

            return await admission.compute(
                receive, lambda _, __: torch.get_num_threads(), 5, JSON_COST
            )

        assert await threads(b"x" * 10) == 1
        assert torch.get_num_threads() == 2
        assert await threads(b"x" * admission.inline_bytes) == 2
    finally:
        torch.set_num_threads(before)
        admission.close()


def test_the_service_asks_for_sleeping_torch_threads_before_torch_loads() -> None:
    """``python -m service`` sets ``OMP_WAIT_POLICY=PASSIVE`` (unless given) before torch, which
    reads it once, is imported: idle threads then sleep rather than spin on the other workers'
    CPUs."""
    code = (
        "import os, sys; import service.__main__; "
        "print(os.environ['OMP_WAIT_POLICY'], 'torch' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    found = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert found.stdout.split() == ["PASSIVE", "False"], found.stderr
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    kept = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert kept.stdout.split()[0] == "ACTIVE"
