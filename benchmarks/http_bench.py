"""End-to-end speed of the scoring service against the JSON floor and a naive endpoint.

Run from the repository root: ``.venv/bin/python benchmarks/http_bench.py [--quick]``.

(a) the core on in-memory tensors; (b) the floor: ``orjson.loads(body)``, numpy/torch
conversion and (a); (c) ``POST /score`` over loopback with JSON; (d) the Open Inference
Protocol with binary tensors; (e) a naive endpoint (pydantic ``list[list[float]]``,
``torch.tensor(list)``), defined here only; (f) ``POST /score`` with typed base64 arrays both
ways. Measurements are interleaved round by round and
reported as medians, since the machine may be shared.

The bootstrap rows: the time a 1,000-replicate bootstrap adds to ``POST /compare`` (100,000 x 10,
two candidates, typed arrays), against the time numpy takes to draw the 10^8 float32 uniforms
of as many weights; the bytes the replicate sums add to a response; the server's peak memory.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import torch
from fastapi import FastAPI
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fairloss import fair_loss_terms  # noqa: E402
from service.typed_arrays import encode  # noqa: E402
from tests.conftest import free_port, running_server  # noqa: E402

JSON_SIZES = [(64, 10), (10_000, 100), (100_000, 10)]
BOOT_N, BOOT_C, BOOT_R = 100_000, 10, 1_000
BINARY_SIZES = [*JSON_SIZES, (100_000, 100)]
MIB = 1024 * 1024


class NaiveRequest(BaseModel):
    logits: list[list[float]]
    labels: list[int]


def naive_app() -> FastAPI:
    """The endpoint most users would write first; served only by this benchmark."""
    app = FastAPI()

    @app.post("/score")
    def score(request: NaiveRequest) -> dict[str, list[float]]:
        terms = fair_loss_terms(torch.tensor(request.logits), torch.tensor(request.labels))
        return {"ce": terms.ce.tolist(), "penalty": terms.penalty.tolist()}

    return app


@contextmanager
def naive_server() -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "--factory", "benchmarks.http_bench:naive_app"]
    process = subprocess.Popen(
        [*command, "--port", str(port), "--log-level", "warning"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(f"{url}/docs", timeout=1.0)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


def payload(n: int, c: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(n * 1000 + c)
    return rng.normal(scale=2.0, size=(n, c)), rng.integers(0, c, n)


def json_body(logits: np.ndarray, labels: np.ndarray) -> bytes:
    return orjson.dumps({"logits": logits, "labels": labels}, option=orjson.OPT_SERIALIZE_NUMPY)


def typed_body(logits: np.ndarray, labels: np.ndarray) -> bytes:
    """(f): the same arrays as typed base64 arrays, the columns asked back in that form."""
    arrays = {"logits": encode(logits.astype(np.float32)), "labels": encode(labels)}
    return orjson.dumps({**arrays, "response_arrays": "base64"})


def binary_body(logits: np.ndarray, labels: np.ndarray) -> tuple[bytes, dict[str, str]]:
    z, y = logits.astype("<f4"), labels.astype("<i8")
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "datatype": kind,
                    "shape": list(a.shape),
                    "parameters": {"binary_data_size": a.nbytes},
                }
                for name, kind, a in (("logits", "FP32", z), ("labels", "INT64", y))
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    return header + z.tobytes() + y.tobytes(), {"Inference-Header-Content-Length": str(len(header))}


def compare_body(
    n: int,
    c: int,
    bootstrap: dict[str, Any] | None,
    arrays: str = "base64",
    per_sample: bool = True,
) -> bytes:
    """``POST /compare`` of two candidates (typed arrays in), with ``bootstrap`` when given."""
    logits, labels = payload(n, c)
    other = logits + np.random.default_rng(n).normal(scale=1.0, size=logits.shape)
    body: dict[str, Any] = {
        "labels": encode(labels),
        "candidates": [
            {"name": name, "logits": encode(z.astype(np.float32))}
            for name, z in (("a", logits), ("b", other))
        ],
        "response_arrays": arrays,
        "per_sample": per_sample,
    }
    if bootstrap is not None:
        body["bootstrap"] = bootstrap
    return orjson.dumps(body)


def uniforms() -> None:
    """The yardstick of the bootstrap: numpy's 10^8 float32 uniforms, one per weight."""
    np.random.default_rng().random((BOOT_R, BOOT_N), dtype=np.float32)


def measure_bootstrap(service: str, rounds: int) -> dict[str, float]:
    """Median seconds of ``/compare`` with and without the bootstrap, and of the uniforms."""
    headers = {"Content-Type": "application/json"}
    client = httpx.Client(timeout=300.0)
    plain = compare_body(BOOT_N, BOOT_C, None)
    resampled = compare_body(BOOT_N, BOOT_C, {"replicates": BOOT_R, "seed": 7})
    cases: dict[str, Callable[[], Any]] = {
        "plain": partial(post, client, f"{service}/compare", plain, headers),
        "bootstrap": partial(post, client, f"{service}/compare", resampled, headers),
        "uniforms": uniforms,
    }
    for call in cases.values():
        call()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, call in cases.items():
            time.sleep(0.3)
            samples[name].append(timed(call))
    client.close()
    return {name: statistics.median(values) for name, values in samples.items()}


def replicate_bytes(service: str, n: int = 1_000) -> dict[str, int | str]:
    """Bytes the replicate sums of two candidates add to a ``/compare`` answer, per
    ``response_arrays`` (the status instead, when the service refuses to answer)."""
    added: dict[str, int | str] = {}
    with httpx.Client(timeout=300.0) as client:
        for arrays in ("json", "base64"):
            sizes: list[int] = []
            for sums in (False, True):
                bootstrap = {"replicates": BOOT_R, "seed": 7, "replicate_sums": sums}
                body = compare_body(n, BOOT_C, bootstrap, arrays, per_sample=False)
                response = client.post(
                    f"{service}/compare", content=body, headers={"Content-Type": "application/json"}
                )
                if response.status_code != 200:
                    added[arrays] = f"HTTP {response.status_code}"
                    break
                sizes.append(len(response.content))
            else:
                added[arrays] = sizes[1] - sizes[0]
    return added


def bootstrap_peak_memory() -> dict[str, tuple[int, int, int]]:
    """(body bytes, VmHWM before, VmHWM after) of a fresh server answering the /compare of
    the timing row, with and without its 1,000-replicate bootstrap."""
    found = {}
    for name, bootstrap in (("plain", None), ("bootstrap", {"replicates": BOOT_R, "seed": 7})):
        body = compare_body(BOOT_N, BOOT_C, bootstrap)
        with running_server() as server:
            httpx.post(f"{server.url}/score", content=json_body(*payload(64, 10)), timeout=60.0)
            before = _hwm(server.process.pid)
            response = httpx.post(f"{server.url}/compare", content=body, timeout=300.0)
            response.raise_for_status()
            found[name] = (len(body), before, _hwm(server.process.pid))
    return found


def core(z: torch.Tensor, y: torch.Tensor) -> None:
    fair_loss_terms(z, y)


def floor(body: bytes) -> None:
    data = orjson.loads(body)
    z = torch.from_numpy(np.asarray(data["logits"], dtype=np.float32))
    y = torch.from_numpy(np.asarray(data["labels"], dtype=np.int64))
    core(z, y)


def timed(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def post(client: httpx.Client, url: str, body: bytes, headers: dict[str, str]) -> None:
    response = client.post(url, content=body, headers=headers)
    if response.status_code != 200:
        raise RuntimeError(f"{url}: {response.status_code} {response.text[:300]}")


def measure(service: str, naive: str, rounds: int) -> dict[tuple[str, int, int], float]:
    """Median seconds per (measurement, n, c), measurements interleaved within each round."""
    json_headers = {"Content-Type": "application/json"}
    cases: list[tuple[str, int, int, Callable[[], Any]]] = []
    client = httpx.Client(timeout=120.0)
    for n, c in BINARY_SIZES:
        logits, labels = payload(n, c)
        z, y = torch.from_numpy(logits.astype(np.float32)), torch.from_numpy(labels)
        binary, headers = binary_body(logits, labels)
        cases.append(("a", n, c, partial(core, z, y)))
        cases.append(
            (
                "d",
                n,
                c,
                partial(post, client, f"{service}/v2/models/fairloss/infer", binary, headers),
            )
        )
        typed = typed_body(logits, labels)
        cases.append(("f", n, c, partial(post, client, f"{service}/score", typed, json_headers)))
        if (n, c) in JSON_SIZES:
            body = json_body(logits, labels)
            cases.append(("b", n, c, partial(floor, body)))
            cases.append(("c", n, c, partial(post, client, f"{service}/score", body, json_headers)))
            cases.append(("e", n, c, partial(post, client, f"{naive}/score", body, json_headers)))
    for *_, call in cases:
        call()
    samples: dict[tuple[str, int, int], list[float]] = {(k, n, c): [] for k, n, c, _ in cases}
    for _ in range(rounds):
        for kind, n, c, call in cases:
            if kind in "ab":
                time.sleep(0.3)  # let the servers' torch threads stop spinning on the 2 cores
            samples[kind, n, c].append(timed(call))
    client.close()
    return {key: statistics.median(values) for key, values in samples.items()}


def small_latency(service: str, count: int) -> tuple[float, float]:
    logits, labels = payload(64, 10)
    body = json_body(logits, labels)
    health: list[float] = []
    score: list[float] = []
    with httpx.Client() as client:
        for _ in range(count):
            health.append(timed(lambda: client.get(f"{service}/healthz")))
            score.append(
                timed(
                    lambda: post(
                        client, f"{service}/score", body, {"Content-Type": "application/json"}
                    )
                )
            )
    return statistics.median(score), statistics.median(health)


async def _throughput(service: str, clients: int, seconds: float) -> float:
    body = json_body(*payload(64, 10))
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            response = await client.post(
                f"{service}/score", content=body, headers={"Content-Type": "application/json"}
            )
            response.raise_for_status()
            done += 1

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        return done / (time.perf_counter() - start)


def peak_memory() -> tuple[int, int, int]:
    """(body bytes, server VmHWM before, VmHWM after) for a JSON body just under 64 MiB."""
    n = 34_000
    while len(body := json_body(*payload(n, 100))) > 64 * MIB:
        n -= 500
    with running_server() as server:
        httpx.post(f"{server.url}/score", content=json_body(*payload(64, 10)), timeout=60.0)
        before = _hwm(server.process.pid)
        response = httpx.post(f"{server.url}/score", content=body, timeout=120.0)
        response.raise_for_status()
        return len(body), before, _hwm(server.process.pid)


def _hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:9.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, for a smoke run")
    args = parser.parse_args()
    rounds, count, seconds = (3, 50, 1.0) if args.quick else (7, 300, 4.0)
    gc.collect()
    print(
        f"os.cpu_count() = {os.cpu_count()}, torch threads here = {torch.get_num_threads()}, "
        f"rounds = {rounds}"
    )
    with running_server() as service, naive_server() as naive:
        medians = measure(service.url, naive, rounds)
        small, health = small_latency(service.url, count)
        rps = asyncio.run(_throughput(service.url, 8, seconds))
        boot = measure_bootstrap(service.url, max(3, rounds - 2))
        added = replicate_bytes(service.url)
    print(
        f"\nmedian ms    {'size':>14}",
        *(
            f"{h:>9}"
            for h in ("(a) core", "(b) floor", "(c) /score", "(d) OIP", "(e) naive", "(f) typed")
        ),
    )
    for n, c in BINARY_SIZES:
        row = [medians.get((k, n, c)) for k in "abcdef"]
        cells = " ".join(ms(v) if v is not None else f"{'-':>9}" for v in row)
        print(f"{'':12} {f'{n:,} x {c}':>14} {cells}")
    print()
    for n, c in JSON_SIZES[1:]:
        a, b, cc, e = (medians[k, n, c] for k in "abce")
        print(
            f"{n:,} x {c}: (c)/(b) = {cc / b:.2f} (target <= 1.3), "
            f"(e)/(c) = {e / cc:.1f} (target >= 4)"
        )
    d, a = medians["d", 100_000, 100], medians["a", 100_000, 100]
    print(f"100,000 x 100 binary: (d)/(a) = {d / a:.2f} (target <= 3)")
    for n, c in ((10_000, 100), (100_000, 100)):
        f, d = medians["f", n, c], medians["d", n, c]
        lists = medians.get(("c", n, c))
        versus = "" if lists is None else f", (f)/(c) JSON lists = {f / lists:.2f}"
        print(f"{n:,} x {c} typed /score: (f)/(d) binary OIP = {f / d:.2f} (goal <= 1.3){versus}")
    print(
        f"64 x 10: /score {small * 1e3:.2f} ms, /healthz {health * 1e3:.2f} ms, "
        f"ratio {small / health:.2f} (target <= 1.5); 8 concurrent clients: {rps:.0f} requests/s"
    )
    extra = boot["bootstrap"] - boot["plain"]
    print(
        f"{BOOT_N:,} x {BOOT_C} /compare, 2 candidates: a {BOOT_R:,}-replicate bootstrap adds "
        f"{extra * 1e3:.0f} ms ({boot['bootstrap'] * 1e3:.0f} against {boot['plain'] * 1e3:.0f}) "
        f"= {extra / boot['uniforms']:.2f}x numpy's 10^8 float32 uniforms "
        f"({boot['uniforms'] * 1e3:.0f} ms) (goal <= 5)"
    )
    said = {k: f"{v:,} bytes" if isinstance(v, int) else v for k, v in added.items()}
    print(
        f"replicate sums ({BOOT_R:,} replicates, 2 candidates; independent of N) add to a "
        f"/compare answer: {said['json']} as JSON lists, {said['base64']} as base64"
    )
    memory = bootstrap_peak_memory()
    body_size, idle, plain = memory["plain"]
    resampled = memory["bootstrap"][2]
    print(
        f"{BOOT_N:,} x {BOOT_C} /compare, 2 candidates ({body_size / MIB:.1f} MiB typed body): "
        f"server peak RSS {resampled / MIB:.0f} MiB with {BOOT_R:,} replicates, "
        f"{plain / MIB:.0f} MiB without (idle peak {idle / MIB:.0f} MiB)"
    )
    size, before, after = peak_memory()
    print(
        f"64 MiB JSON body ({size / MIB:.1f} MiB, 100 classes): "
        f"server peak RSS {after / MIB:.0f} MiB "
        f"= {after / size:.1f}x the body (target <= 6); idle peak {before / MIB:.0f} MiB, "
        f"growth {(after - before) / MIB:.0f} MiB = {(after - before) / size:.1f}x the body"
    )


if __name__ == "__main__":
    main()
