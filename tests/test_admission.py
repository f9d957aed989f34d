"""Admission: small bodies are computed on the event loop, larger ones in a worker thread."""

from __future__ import annotations

import threading

import pytest

from service.admission import Admission


async def _thread_of(admission: Admission, body: bytes) -> int:
    async def receive() -> bytes:
        return body

    return await admission.compute(receive, lambda _: threading.get_ident(), timeout_s=5)


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
