"""Shared fixtures: an in-process client with the lifespan run, and real server processes."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import hypothesis
import pytest
import tritonclient.http as triton
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from service.app import create_app
from service.settings import Settings

# CI runs the property tests on fixed examples, so a run's verdict does not depend on chance;
# elsewhere hypothesis explores new ones each run.
hypothesis.settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    hypothesis.settings.load_profile("ci")

README_EXAMPLE: dict[str, Any] = {
    "logits": [[0.34, 0.33, 0.33], [0.49, 0.51, 0.0]],
    "labels": [0, 0],
}

# What must never reach a client: tracebacks, file paths, exception classes, module names.
LEAKS = re.compile(
    r"Traceback|File \"|\.py\b|site-packages|/(home|work|usr|tmp|opt)/"
    r"|\b[A-Z]\w*(Error|Exception)\b"
    r"|\b(service|fairloss|torch|numpy|starlette|fastapi|uvicorn|pydantic|anyio)\.\w"
)
SUMMARY_TABLES: dict[str, str] = {}
"""Tables that tests print; repeated at the end of the run so CI logs show them."""


def schema_objects(node: Any) -> list[dict[str, Any]]:
    """Every object of an OpenAPI document: the maps of names (``properties``, the components'
    ``schemas``) are walked into but not listed, as their keys are names, never keywords."""
    if isinstance(node, list):
        return [found for item in node for found in schema_objects(item)]
    if not isinstance(node, dict):
        return []
    inner = [
        found
        for key, value in node.items()
        for found in schema_objects(
            list(value.values()) if key in ("properties", "schemas") else value
        )
    ]
    return [node, *inner]


def assert_no_leak(body: str) -> None:
    found = LEAKS.search(body)
    assert found is None, f"error body leaks {found.group()!r}: {body[:500]}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for title, table in SUMMARY_TABLES.items():
        terminalreporter.write_sep("=", title)
        terminalreporter.write_line(table)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def settings() -> Settings:
    """The settings of the in-process app; override this fixture to change them."""
    return Settings()


def fake_cgroups(root: Path, membership: str, files: dict[str, str]) -> tuple[Path, Path]:
    """A fake ``/sys/fs/cgroup`` (``files``: path under it -> text) and ``/proc/self/cgroup``."""
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "membership").write_text(membership)
    return root, root / "membership"


@asynccontextmanager
async def in_process(
    settings: Settings, app: FastAPI | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a fresh in-process app (``app``, or one made from ``settings``), its
    lifespan run (startup, then shutdown)."""
    app = app or create_app(settings)
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://test"
        ) as http,
    ):
        yield http


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(settings) as http:
        yield http


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log: IO[bytes]

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")


@contextmanager
def running_server(env: dict[str, str] | None = None, timeout_s: float = 60.0) -> Iterator[Server]:
    """A real ``python -m service`` on a free loopback port, stopped (SIGTERM) on exit.

    One worker process unless ``env`` (or this process's environment) sets ``FAIRLOSS_WORKERS``:
    each worker costs a start-up (torch's import, the devices' warm-up).
    """
    port = free_port()
    full_env = {
        "FAIRLOSS_WORKERS": "1",
        **os.environ,
        "FAIRLOSS_HOST": "127.0.0.1",
        "FAIRLOSS_PORT": str(port),
        **(env or {}),
    }
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service"], env=full_env, stdout=log, stderr=subprocess.STDOUT
        )
        server = Server(proc, f"http://127.0.0.1:{port}", log)
        try:
            _wait_ready(server, timeout_s)
            yield server
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _wait_ready(server: Server, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.output()}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server at {server.url} was not ready within {timeout_s} s")


@pytest.fixture(scope="session")
def live_url() -> Iterator[str]:
    """The end-to-end target: ``FAIRLOSS_E2E_URL`` (e.g. a container), else a fresh process."""
    external = os.environ.get("FAIRLOSS_E2E_URL")
    if external:
        yield external.rstrip("/")
        return
    with running_server() as server:
        yield server.url


@pytest.fixture(scope="module")
def triton_client() -> Iterator[triton.InferenceServerClient]:
    """tritonclient's HTTP client on a real server of this module's own."""
    with running_server() as server:
        client = triton.InferenceServerClient(server.url.removeprefix("http://"))
        yield client
        client.close()
