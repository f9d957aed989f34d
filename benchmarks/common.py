"""The benchmark's payloads, request bodies and timing helpers.

Every payload is seeded by its size, so each run and each row sends the same numbers:
``payload(n, c)`` is (n, c) float64 logits (normal, scale 2) and n int64 labels in ``[0, c)``.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fairloss_wire.typed_arrays import encode  # noqa: E402

MIB = 1024 * 1024
BOOT = (100_000, 10, 1_000)  # the bootstrap rows: n, c, replicates
JSON_SIZES = [(64, 10), (10_000, 100), (100_000, 10)]
OIP_JSON_SIZES = JSON_SIZES[1:]
BINARY_SIZES = [*JSON_SIZES, (100_000, 100)]
CLIENT_SIZE = (300_000, 100)
JSON_HEADERS = {"Content-Type": "application/json"}
OIP_PATH = "/v2/models/fairloss/infer"


def payload(n: int, c: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(n * 1000 + c)
    return rng.normal(scale=2.0, size=(n, c)), rng.integers(0, c, n)


def json_body(logits: np.ndarray, labels: np.ndarray) -> bytes:
    """(c): ``POST /score`` with the arrays as JSON lists."""
    return orjson.dumps({"logits": logits, "labels": labels}, option=orjson.OPT_SERIALIZE_NUMPY)


def oip_json_body(logits: np.ndarray, labels: np.ndarray) -> bytes:
    """(g): the Open Inference Protocol's JSON tensors, flat ``data`` in row-major order; the
    same numbers as `json_body` writes."""
    inputs = [
        {"name": "logits", "datatype": "FP32", "shape": list(logits.shape), "data": logits.ravel()},
        {"name": "labels", "datatype": "INT64", "shape": list(labels.shape), "data": labels},
    ]
    return orjson.dumps({"inputs": inputs}, option=orjson.OPT_SERIALIZE_NUMPY)


def typed_body(logits: np.ndarray, labels: np.ndarray) -> bytes:
    """(f): the same arrays as typed base64 arrays, the columns asked back in that form."""
    arrays = {"logits": encode(logits.astype(np.float32)), "labels": encode(labels)}
    return orjson.dumps({**arrays, "response_arrays": "base64"})


def binary_body(logits: np.ndarray, labels: np.ndarray) -> tuple[bytes, dict[str, str]]:
    """(d): the Open Inference Protocol's binary tensors, and the header that sizes the JSON."""
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


def timed(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def post(client: httpx.Client, url: str, body: bytes, headers: dict[str, str]) -> None:
    response = client.post(url, content=body, headers=headers)
    if response.status_code != 200:
        raise RuntimeError(f"{url}: {response.status_code} {response.text[:300]}")


def interleaved(
    cases: dict[Any, Callable[[], Any]], rounds: int, pause_s: float = 0.3
) -> dict[Any, float]:
    """Median seconds of each case, run once each round after one warm-up call, with a pause
    before each so that the last case's threads (torch spins a while) stop competing."""
    for call in cases.values():
        call()
    samples: dict[Any, list[float]] = {key: [] for key in cases}
    for _ in range(rounds):
        for key, call in cases.items():
            time.sleep(pause_s)
            samples[key].append(timed(call))
    return {key: statistics.median(values) for key, values in samples.items()}


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:9.1f}"
