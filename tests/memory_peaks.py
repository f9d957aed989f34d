"""What one request holds at its peak, by route and encoding: the measurements behind the
memory budget's costs (`service.memory.JSON_COST`, `BINARY_COST`).

A body of each kind is sent, one at a time, to a real server of one worker; its growth is the
worker's peak resident memory during the request (``VmHWM``, reset through ``clear_refs``
before it) less its resident memory before. The growth counts everything the request holds:
its body as received, the parse, the computation and the answer's bytes.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import numpy as np
import orjson

from fairloss.bootstrap import Bootstrap
from fairloss_wire.typed_arrays import encode
from service.fastjson import structure
from service.memory import parse_extra, reserve_parsed, resident_bytes
from tests.pinning import vm_hwm_bytes

JSON = {"Content-Type": "application/json"}
GZIP = {"Content-Encoding": "gzip"}
OIP = "/v2/models/fairloss/infer"


@dataclass(frozen=True)
class Body:
    kind: str
    cost: str  # the cost it is held to: "json" (any JSON body) or "binary" (OIP's tensors)
    path: str
    content: bytes
    headers: dict[str, str]
    size: int  # as the server holds it: decompressed
    extra: int = 0  # what it reserves besides the body's cost (a bootstrap's memory)


def _arrays(n: int, c: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(n + c)
    return rng.normal(scale=2.0, size=(n, c)), rng.integers(0, c, n)


def _dumps(value: object) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


def _score(n: int, c: int) -> bytes:
    z, y = _arrays(n, c)
    return _dumps({"logits": z, "labels": y})


def _compare(n: int, c: int, name: str = "b", replicates: int = 0) -> bytes:
    z, y = _arrays(n, c)
    candidates = [{"name": "a", "logits": z}, {"name": name, "logits": z[::-1].copy()}]
    body = {"labels": y, "candidates": candidates}
    if replicates:
        body["bootstrap"] = {"replicates": replicates, "seed": 1}
    return _dumps(body)


def _typed(n: int, c: int) -> bytes:
    z, y = _arrays(n, c)
    return _dumps({"logits": encode(z.astype(np.float32)), "labels": encode(y)})


def _oip_json(n: int, c: int) -> bytes:
    z, y = _arrays(n, c)
    inputs = [
        {"name": "logits", "datatype": "FP32", "shape": [n, c], "data": z.ravel()},
        {"name": "labels", "datatype": "INT64", "shape": [n], "data": y},
    ]
    return _dumps({"inputs": inputs})


def _oip_binary(n: int, c: int) -> tuple[bytes, dict[str, str]]:
    z, y = _arrays(n, c)
    z, y = z.astype("<f4"), y.astype("<i8")
    inputs = [
        {"name": name, "datatype": kind, "shape": list(a.shape)}
        | {"parameters": {"binary_data_size": a.nbytes}}
        for name, kind, a in (("logits", "FP32", z), ("labels", "INT64", y))
    ]
    header = _dumps({"inputs": inputs})
    length = {"Inference-Header-Content-Length": str(len(header))}
    return header + z.tobytes() + y.tobytes(), length


def _sized(build: Callable[[int], bytes], size: int) -> tuple[bytes, int]:
    """``build(n)`` with n chosen to make a body of about ``size`` bytes (from below), and n."""
    probe = build(1000)
    n = max(1, int(1000 * size / len(probe)))
    while len(body := build(n)) > size:
        n = int(n * 0.97)
    return body, n


def _narrow(n: int) -> bytes:
    """``[0,1]`` and ``[1,0]`` rows: 6 bytes a row of 2 classes, the most rows a body holds."""
    rows = b",".join([b"[0,1]", b"[1,0]"] * (n // 2))
    labels = b",".join([b"0", b"1"] * (n // 2))
    return b'{"logits":[' + rows + b'],"labels":[' + labels + b"]}"


def bodies(size: int) -> list[Body]:
    """A body of about ``size`` bytes (decompressed) of each route and encoding."""
    found = []

    def add(
        kind: str,
        path: str,
        built: tuple[bytes, int],
        headers: dict[str, str] = JSON,
        candidates: int = 1,
        replicates: int = 0,
    ) -> None:
        content, n = built
        binary = "Inference-Header-Content-Length" in headers
        plain = gzip.decompress(content) if "Content-Encoding" in headers else content
        extra: list[int] = []
        if not binary:
            marks = structure(plain)
            extra.append(parse_extra(len(plain), marks.commas + marks.opening))
        bootstrap = Bootstrap(replicates=replicates) if replicates else None
        reserve_parsed(extra.append, n, candidates, bootstrap, n)
        cost = "binary" if binary else "json"
        found.append(Body(kind, cost, path, content, headers, len(plain), sum(extra)))

    for c in (100, 10):
        add(f"/score JSON, {c} classes", "/score", _sized(partial(_score, c=c), size))
    add("/score JSON, [0,1] rows", "/score", _sized(_narrow, size))
    wide = _sized(lambda n: _score(n, 100)[:-1] + b',"precision":"float64"}', size)
    add("/score JSON, float64", "/score", wide)
    add("/score typed base64", "/score", _sized(lambda n: _typed(n, 100), size))
    add(
        "/compare JSON, 2 candidates", "/compare", _sized(lambda n: _compare(n, 100), size), JSON, 2
    )
    # A '[' in a name sends the body to the general parser (orjson, a Python object a number).
    general = _sized(lambda n: _compare(n, 100, "b["), size)
    add("/compare JSON, general parser", "/compare", general, JSON, 2)
    for c, r in ((10, 1000), (100, 10_000)):
        boot = _sized(partial(_compare, c=c, replicates=r), size)
        add(f"/compare JSON, {c} classes, bootstrap {r:,}", "/compare", boot, JSON, 2, r)
    plain, n = _sized(lambda n: _score(n, 100), size)
    add("/score JSON gzip", "/score", (gzip.compress(plain, 1), n), {**JSON, **GZIP})
    add("OIP JSON", OIP, _sized(lambda n: _oip_json(n, 100), size))
    for c in (100, 2):
        n = max(1, (size - 4096) // (4 * c + 8))  # room for the JSON header
        binary, header = _oip_binary(n, c)
        add(f"OIP binary, {c} classes", OIP, (binary, n), header)
    binary, header = _oip_binary(max(1, size // 408), 100)
    add("OIP binary gzip", OIP, (gzip.compress(binary, 1), size // 408), {**header, **GZIP})
    return found


def peak_growth(client: httpx.Client, url: str, pid: int, body: Body) -> int:
    """The worker's peak resident memory while it answers ``body``, less its memory before."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = resident_bytes(pid)
    response = client.post(url + body.path, content=body.content, headers=body.headers)
    assert response.status_code == 200, response.text[:500]
    return vm_hwm_bytes(pid) - before
