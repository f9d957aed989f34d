"""One log stream: a real server's whole output is JSON lines, each about a request with its id."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import Server, _wait_ready, assert_no_leak, free_port

# `python -m service`, with three routes added for these tests: one fails, one warns (in a worker
# thread, as a sync route), one fails once its response has started.
SERVE_WITH_TEST_ROUTES = """
import logging.config
import warnings
from service.logs import log_config
logging.config.dictConfig(log_config("info"))  # as uvicorn will, before the app's imports
from fastapi.responses import StreamingResponse
import service.app
from service.__main__ import main

def create_app():
    app = real_create_app()

    @app.get("/test/fail")
    async def fail():
        raise RuntimeError("failed on purpose")

    @app.get("/test/warn")
    def warn():
        warnings.warn("warned on purpose", UserWarning)
        return {}

    async def halves():
        yield b"first half"
        raise RuntimeError("failed mid-body")

    @app.get("/test/half")
    async def half():
        return StreamingResponse(halves())

    return app

real_create_app = service.app.create_app
service.app.create_app = create_app
main()
"""


@dataclass
class Served:
    fail: httpx.Response
    warn: httpx.Response
    half: str
    stdout: str
    stderr: str

    def lines(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.stdout.splitlines()]

    def about(self, request_id: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("request_id") == request_id]


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    """A real server's whole output (stdout and stderr apart), from start to exit, around three
    requests: a route that raises, one that warns, one that raises mid-body."""
    port = free_port()
    # One worker: the test routes are patched into this process's app (workers would import
    # their own), and the lines checked are those of one server process.
    env = {**os.environ, "FAIRLOSS_HOST": "127.0.0.1", "FAIRLOSS_PORT": str(port),
           "FAIRLOSS_LOG_LEVEL": "info", "FAIRLOSS_WORKERS": "1"}  # fmt: skip
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        command = [sys.executable, "-c", SERVE_WITH_TEST_ROUTES]
        process = subprocess.Popen(command, env=env, stdout=out, stderr=err)
        try:
            server = Server(process, f"http://127.0.0.1:{port}", out)
            _wait_ready(server, 60)
            with httpx.Client(base_url=server.url, timeout=30) as client:
                fail = client.get("/test/fail", headers={"X-Request-ID": "fail-1"})
                warn = client.get("/test/warn", headers={"X-Request-ID": "warn-1"})
                try:
                    client.get("/test/half", headers={"X-Request-ID": "half-1"})
                    half = "answered in full"
                except httpx.TransportError as exc:
                    half = type(exc).__name__
        finally:
            process.terminate()
            try:
                code = process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
        assert code == 0, stderr
        yield Served(fail, warn, half, stdout, stderr)


def test_a_real_server_logs_only_json_lines_on_stdout(served: Served) -> None:
    assert served.stderr == ""
    lines = served.lines()
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line), line
    uvicorn = [line["message"] for line in lines if line["logger"].startswith("uvicorn")]
    assert uvicorn[0].startswith("Started server process [")
    assert "Application startup complete." in uvicorn
    assert any(m.startswith("Uvicorn running on http://127.0.0.1:") for m in uvicorn)
    assert uvicorn[-1].startswith("Finished server process [")
    ready = next(line for line in lines if line["message"].startswith("ready on "))
    assert "request_id" not in ready


def test_a_real_500_has_the_request_id_in_its_header_and_its_log_line(served: Served) -> None:
    assert served.fail.status_code == 500
    assert served.fail.headers["x-request-id"] == "fail-1"
    assert served.fail.json()["title"] == "Internal error"
    assert_no_leak(served.fail.text)
    error, access = served.about("fail-1")
    assert (error["logger"], error["level"]) == ("service.errors", "ERROR")
    assert error["message"] == "unhandled error on GET /test/fail"
    assert error["exception"].startswith("Traceback (most recent call last):")
    assert error["exception"].endswith("RuntimeError: failed on purpose")
    assert (access["logger"], access["status"]) == ("service.access", 500)
    # answered by the service: the server saw no exception, and logged none of its own
    assert all("exception" not in line for line in served.lines() if line.get("request_id") is None)


def test_a_warning_during_a_request_is_a_json_line_with_its_id(served: Served) -> None:
    assert served.warn.status_code == 200
    assert served.warn.headers["x-request-id"] == "warn-1"
    warning, access = served.about("warn-1")
    assert (warning["logger"], warning["level"]) == ("py.warnings", "WARNING")
    assert warning["message"].endswith("UserWarning: warned on purpose")
    assert (access["route"], access["status"]) == ("/test/warn", 200)


def test_a_failure_mid_body_is_logged_with_its_id_by_the_service_and_uvicorn(
    served: Served,
) -> None:
    assert served.half == "RemoteProtocolError"
    lines = served.about("half-1")
    access, error, server = lines
    assert (access["logger"], access["status"]) == ("service.access", 200)
    assert (error["logger"], server["logger"]) == ("service.errors", "uvicorn.error")
    assert server["message"] == "Exception in ASGI application"
    for line in (error, server):
        assert line["exception"].endswith("RuntimeError: failed mid-body")
