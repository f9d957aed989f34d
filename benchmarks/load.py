"""Requests per second of one POST body over keep-alive connections: wrk where it is installed,
else Python load processes. Standard library only, so that a load process starts in a blink.

wrk (C, event loop) takes the body from a Lua script written to a temporary file. Without it,
``PROCESSES`` Python processes (``python -m benchmarks.load``) share the connections, each
connection a thread with its own ``http.client`` keep-alive connection sending the request
again as soon as its answer is read; every process counts the answers (status 200) completed
between one start time and one deadline, so the rate is theirs summed over that window. Either
way the generator runs on the machine it measures: on a small machine it takes CPU from the
server (the Python one more than wrk), so the rates are a floor, and the same for both apps.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

PROCESSES = 2
START_DELAY_S = 1.0  # for the load processes to start before the window opens
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local file = io.open({path!r}, "rb")
wrk.body = file:read("*a")
file:close()

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d\\n", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


@dataclass(frozen=True)
class Rate:
    """Answers per second within the window; ``answered``: every answer, the warm-up's too
    (divide the server's CPU seconds over the whole run by it); ``errors``: answers other than
    200, and failed connections."""

    requests_per_s: float
    answered: int
    errors: int
    tool: str


def throughput(url: str, path: str, body: bytes, connections: int, seconds: float) -> Rate:
    """Answers per second to ``POST url+path`` with ``body`` over ``connections`` connections
    for ``seconds``, by wrk where ``shutil.which("wrk")`` finds it, else Python processes."""
    with tempfile.TemporaryDirectory() as folder:
        body_file = Path(folder) / "body.json"
        body_file.write_bytes(body)
        wrk = shutil.which("wrk")
        if wrk is not None:
            return _wrk(wrk, url + path, body_file, connections, seconds)
        return _processes(url + path, body_file, connections, seconds)


def _wrk(wrk: str, url: str, body_file: Path, connections: int, seconds: float) -> Rate:
    script = body_file.with_suffix(".lua")
    script.write_text(WRK_SCRIPT.format(path=str(body_file)))
    threads = min(connections, PROCESSES)
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "-s", str(script), url]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    found = re.search(r"^RESULT (\d+) (\d+) (\d+)$", done.stdout, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"wrk said nothing to read:\n{done.stdout}{done.stderr}")
    requests, micros, errors = map(int, found.groups())
    return Rate(requests / (micros / 1e6), requests, errors, "wrk")


def _processes(url: str, body_file: Path, connections: int, seconds: float) -> Rate:
    start = time.time() + START_DELAY_S
    shares = [connections // PROCESSES + (k < connections % PROCESSES) for k in range(PROCESSES)]
    command = [sys.executable, "-m", "benchmarks.load", url, str(body_file)]
    processes = [
        subprocess.Popen(
            [*command, str(share), str(start), str(start + seconds)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        for share in shares
        if share
    ]
    counts = [json.loads(process.communicate()[0]) for process in processes]
    requests = sum(count["requests"] for count in counts)
    answered = sum(count["answered"] for count in counts)
    return Rate(requests / seconds, answered, sum(c["errors"] for c in counts), "python")


def _connection(url: str, body: bytes, start: float, deadline: float, counts: list[int]) -> None:
    """One keep-alive connection posting ``body`` until ``deadline``; ``counts`` gets
    [200s completed within the window, other answers, every answer]."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    headers = {"Content-Type": "application/json"}
    while True:
        connection.request("POST", parts.path, body, headers)
        response = connection.getresponse()
        response.read()
        done = time.time()
        if done >= deadline:
            break
        counts[2] += 1
        if response.status != 200:
            counts[1] += 1
        elif done >= start:
            counts[0] += 1
    connection.close()


def main(url: str, body_path: str, connections: str, start: str, deadline: str) -> None:
    """One load process: ``connections`` threads; prints its counts as JSON."""
    body = Path(body_path).read_bytes()
    counts = [[0, 0, 0] for _ in range(int(connections))]
    threads = [
        threading.Thread(target=_connection, args=(url, body, float(start), float(deadline), c))
        for c in counts
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    totals = [sum(c[k] for c in counts) for k in range(3)]
    print(json.dumps(dict(zip(("requests", "errors", "answered"), totals, strict=True))))


if __name__ == "__main__":
    main(*sys.argv[1:])
