"""End-to-end speed of the scoring service against the JSON floor, a naive endpoint and the core.

Run from the repository root: ``.venv/bin/python benchmarks/http_bench.py [--quick]
[--only GROUP,...] [--workers N|auto]``; every "must show" line is printed with its target.

``table``: (a) the core on in-memory tensors; (b) the floor: ``orjson.loads(body)``,
numpy/torch conversion and (a); (c) ``POST /score`` over loopback with JSON lists; (d) the Open
Inference Protocol with binary tensors; (e) a naive endpoint (pydantic ``list[list[float]]``,
``torch.tensor(list)``, `benchmarks.servers`); (f) ``POST /score`` with typed base64 arrays both
ways; (g) the Open Inference Protocol with JSON tensors (flat ``data``), the numbers of (c).
``latency``: 64 x 10 medians of ``/score``, ``/healthz``, the naive app and ``/score``
answered without parsing or scoring (what the route, the body and the response cost alone),
one after another.
``throughput``: 64 x 10 requests per second over 8 keep-alive connections to ``/score`` and to
the naive app, by wrk or Python load processes (`benchmarks.load` says what each measures), and
each server's CPU seconds per request (``/proc``, the process and its workers).
``client``: `fairloss_client.Client` scoring 300,000 x 100 float32 logits through the service,
against `fairloss.scoring.score_batch` of the same arrays in this process, both giving the
per-sample columns. ``bootstrap``: what a 1,000-replicate bootstrap adds to ``POST /compare``
(`benchmarks.bootstrap_rows`). ``memory``: the server's peak RSS (VmHWM) for that bootstrap,
in a fresh one-worker server; then the peak growth of a worker's resident memory for a 64 MiB
body of each route and encoding (`tests.memory_peaks`), against the cost the memory budget
reserves for it (`service.memory`). ``where``: what ``per_class`` and two group columns add to
``POST /score``, and 50,000 classes through the client (`benchmarks.where_rows`).

Measurements are interleaved round by round and reported as medians, since the machine may be
shared; the service runs as ``python -m service`` with ``--workers`` worker processes (by
default as many as its own default, `service.settings.Settings`, gives).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common, servers
from benchmarks.bootstrap_rows import measure_bootstrap, replicate_bytes
from benchmarks.common import (
    BINARY_SIZES,
    CLIENT_SIZE,
    JSON_HEADERS,
    JSON_SIZES,
    OIP_JSON_SIZES,
    OIP_PATH,
    interleaved,
    payload,
    post,
)
from benchmarks.load import Rate, throughput
from benchmarks.report import print_bootstrap, print_client, print_load, print_table
from benchmarks.where_rows import measure_where, print_where
from fairloss import fair_loss_terms
from fairloss.scoring import score_batch
from fairloss_client import Client
from fairloss_client.results import score_result
from service.memory import BINARY_COST, JSON_COST
from service.settings import Settings
from tests import memory_peaks
from tests.conftest import running_server

GROUPS = ("table", "latency", "throughput", "client", "bootstrap", "where", "memory")


def core(z: torch.Tensor, y: torch.Tensor) -> None:
    fair_loss_terms(z, y)


def floor(body: bytes) -> None:
    data = orjson.loads(body)
    z = torch.from_numpy(np.asarray(data["logits"], dtype=np.float32))
    y = torch.from_numpy(np.asarray(data["labels"], dtype=np.int64))
    core(z, y)


def measure(service: str, naive: str, rounds: int) -> dict[tuple[str, int, int], float]:
    """Median seconds per (column, n, c), the columns interleaved within each round."""
    cases: list[tuple[str, int, int, Callable[[], Any]]] = []
    client = httpx.Client(timeout=120.0)
    for n, c in BINARY_SIZES:
        logits, labels = payload(n, c)
        z, y = torch.from_numpy(logits.astype(np.float32)), torch.from_numpy(labels)
        binary, headers = common.binary_body(logits, labels)
        typed = common.typed_body(logits, labels)
        cases += [
            ("a", n, c, partial(core, z, y)),
            ("d", n, c, partial(post, client, f"{service}{OIP_PATH}", binary, headers)),
            ("f", n, c, partial(post, client, f"{service}/score", typed, JSON_HEADERS)),
        ]
        if (n, c) in JSON_SIZES:
            body = common.json_body(logits, labels)
            cases += [
                ("b", n, c, partial(floor, body)),
                ("c", n, c, partial(post, client, f"{service}/score", body, JSON_HEADERS)),
                ("e", n, c, partial(post, client, f"{naive}/score", body, JSON_HEADERS)),
            ]
        if (n, c) in OIP_JSON_SIZES:
            oip = common.oip_json_body(logits, labels)
            cases.append(("g", n, c, partial(post, client, f"{service}{OIP_PATH}", oip, {})))
    for *_, call in cases:
        call()
    samples: dict[tuple[str, int, int], list[float]] = {(k, n, c): [] for k, n, c, _ in cases}
    for _ in range(rounds):
        for kind, n, c, call in cases:
            if kind in "ab":
                time.sleep(0.3)  # let the servers' torch threads stop spinning on the 2 cores
            samples[kind, n, c].append(common.timed(call))
    client.close()
    return {key: statistics.median(values) for key, values in samples.items()}


def small_latency(service: str, naive: str, count: int) -> dict[str, float]:
    """Median seconds of 64 x 10 ``/score``, ``/healthz``, the naive app's ``/score`` and
    ``/score`` of a server that answers it without parsing or scoring
    (`servers.serve_fixed_answer`), one of each in turn on one keep-alive connection per server."""
    body = common.json_body(*payload(64, 10))
    samples: dict[str, list[float]] = {"score": [], "healthz": [], "naive": [], "fixed": []}
    with (
        servers.fixed_answer_server() as fixed,
        httpx.Client() as client,
        httpx.Client() as other,
        httpx.Client() as third,
    ):
        calls: dict[str, Callable[[], Any]] = {
            "healthz": lambda: client.get(f"{service}/healthz").raise_for_status(),
            "score": partial(post, client, f"{service}/score", body, JSON_HEADERS),
            "naive": partial(post, other, f"{naive}/score", body, JSON_HEADERS),
            "fixed": partial(post, third, f"{fixed}/score", body, JSON_HEADERS),
        }
        for _ in range(count):
            for name, call in calls.items():
                samples[name].append(common.timed(call))
    return {name: statistics.median(values) for name, values in samples.items()}


def loads(targets: dict[str, tuple[str, int]], seconds: float, rounds: int) -> dict[str, Any]:
    """Per target (URL, pid): median requests/s of 64 x 10 ``POST /score`` over 8 connections,
    and median server CPU seconds per request; targets alternate round by round."""
    body = common.json_body(*payload(64, 10))
    rates: dict[str, list[Rate]] = {name: [] for name in targets}
    cpu: dict[str, list[float]] = {name: [] for name in targets}
    for _ in range(rounds):
        for name, (url, pid) in targets.items():
            time.sleep(0.3)
            before = servers.cpu_seconds(pid)
            rate = throughput(url, "/score", body, connections=8, seconds=seconds)
            rates[name].append(rate)
            cpu[name].append((servers.cpu_seconds(pid) - before) / max(rate.answered, 1))
    return {
        name: {
            "rps": statistics.median(r.requests_per_s for r in found),
            "cpu": statistics.median(cpu[name]),
            "errors": sum(r.errors for r in found),
            "tool": found[0].tool,
        }
        for name, found in rates.items()
    }


def client_row(service: str, rounds: int) -> dict[str, float]:
    """Median seconds of `Client.score` and of in-process scoring, same arrays, same columns."""
    n, c = CLIENT_SIZE
    logits, labels = payload(n, c)
    z = logits.astype(np.float32)
    del logits

    def in_process() -> Any:
        return score_result(score_batch(z, labels))

    with Client(service, progress=False) as client:
        sent, here = client.score(z, labels), in_process()
        for name, column in here.per_sample.items():
            np.testing.assert_allclose(sent.per_sample[name], column, rtol=1e-6, err_msg=name)
        medians = interleaved(
            {"client": lambda: client.score(z, labels), "here": in_process}, rounds
        )
    return {**medians, "chunks": sent.chunks}


def print_memory() -> None:
    n, c, replicates = common.BOOT
    memory = servers.bootstrap_peak_memory()
    body_size, idle, plain = memory["plain"]
    mib = common.MIB
    print(
        f"{n:,} x {c} /compare, 2 candidates ({body_size / mib:.1f} MiB typed body): server "
        f"peak RSS {memory['bootstrap'][2] / mib:.0f} MiB with {replicates:,} replicates, "
        f"{plain / mib:.0f} MiB without (idle peak {idle / mib:.0f} MiB)"
    )
    print("| body, 64 MiB decompressed | sent MiB | peak growth MiB | x body | reserved MiB |")
    print("| --- | ---: | ---: | ---: | ---: |")
    costs = {"json": JSON_COST, "binary": BINARY_COST}
    with running_server({"FAIRLOSS_WORKERS": "1"}) as server, httpx.Client(timeout=300) as http:
        for body in memory_peaks.bodies(64 * mib):
            growth = memory_peaks.peak_growth(http, server.url, server.process.pid, body)
            print(
                f"| {body.kind} | {len(body.content) / mib:.1f} | {growth / mib:.0f} | "
                f"{growth / body.size:.2f} | "
                f"{(costs[body.cost].of(body.size) + body.extra) / mib:.0f} |"
            )
            if body.kind == "/score JSON, 100 classes":
                factor = growth / body.size
    print(
        f"64 MiB JSON body, 100 classes: the worker's peak is {factor:.2f}x the body (target <= "
        "4; growth of its resident memory over idle, the body as received included)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, for a smoke run")
    parser.add_argument("--only", default=",".join(GROUPS), help=f"some of {','.join(GROUPS)}")
    parser.add_argument(
        "--workers",
        default=str(Settings.model_fields["workers"].default),
        help="the service's FAIRLOSS_WORKERS (default: its own default; 0 is auto)",
    )
    args = parser.parse_args()
    groups = set(args.only.split(","))
    if not groups <= set(GROUPS):
        parser.error(f"--only: expected some of {','.join(GROUPS)}, got {args.only}")
    rounds, count, seconds = (3, 50, 1.0) if args.quick else (7, 300, 4.0)
    gc.collect()
    with (
        running_server({"FAIRLOSS_WORKERS": args.workers}) as service,
        servers.naive_server() as (naive, naive_pid),
    ):
        workers = httpx.get(f"{service.url}/info").json().get("server", {}).get("workers", "?")
        print(
            f"os.cpu_count() = {os.cpu_count()}, torch threads here = {torch.get_num_threads()}, "
            f"service workers = {workers}, rounds = {rounds}"
        )
        found: dict[str, Any] = {}
        if "table" in groups:
            found["table"] = measure(service.url, naive, rounds)
        if "latency" in groups:
            found["latency"] = small_latency(service.url, naive, count)
        if "throughput" in groups:
            targets = {"score": (service.url, service.process.pid), "naive": (naive, naive_pid)}
            found["load"] = loads(targets, seconds, max(2, rounds - 4))
        if "client" in groups:
            found["client"] = client_row(service.url, rounds)
        if "bootstrap" in groups:
            found["bootstrap"] = measure_bootstrap(service.url, max(3, rounds - 2))
            found["added"] = replicate_bytes(service.url)
        if "where" in groups:
            found["where"] = measure_where(service.url, max(3, rounds - 2))
    if "table" in found:
        print_table(found["table"])
    print_load(found.get("latency"), found.get("load"))
    if "client" in found:
        print_client(found["client"])
    if "bootstrap" in found:
        print_bootstrap(found["bootstrap"], found["added"])
    if "where" in found:
        print_where(found["where"])
    if "memory" in groups:
        print_memory()


if __name__ == "__main__":
    main()
