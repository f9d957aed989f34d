"""What ``per_class`` and group columns cost: ``POST /score`` of 100,000 x 100 float32 logits
(typed arrays: as JSON lists they pass the 64 MiB body limit) with ``per_class`` and two group
columns (5 string keys as a JSON list, 12 integer keys as a typed array) against the same
request without them, and
C = 50,000 classes with 2,000 samples through the client (typed arrays, in chunks under the
server's limits), whose confusion comes back sparse."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import httpx
import numpy as np
import orjson

from benchmarks.common import JSON_HEADERS, encode, interleaved, payload, post
from fairloss_client import Client

SIZE = (100_000, 100)
WIDE = (2_000, 50_000)


def measure_where(service: str, rounds: int) -> dict[str, Any]:
    """Median seconds of the plain and the broken-down ``/score``, and the wide client call."""
    n, c = SIZE
    logits, labels = payload(n, c)
    rng = np.random.default_rng(5)
    groups = {
        "language": rng.choice(["de", "en", "es", "fr", "ja"], n).tolist(),
        "source": encode(rng.integers(0, 12, n).astype(np.int32)),
    }
    plain = {
        "logits": encode(logits.astype(np.float32)),
        "labels": encode(labels),
        "per_sample": False,
    }
    rich = {**plain, "per_class": True, "groups": groups}
    bodies = [orjson.dumps(b, option=orjson.OPT_SERIALIZE_NUMPY) for b in (plain, rich)]
    with httpx.Client(timeout=300.0) as client:
        medians = interleaved(
            {
                "plain": partial(post, client, f"{service}/score", bodies[0], JSON_HEADERS),
                "where": partial(post, client, f"{service}/score", bodies[1], JSON_HEADERS),
            },
            rounds,
        )
    rows, classes = WIDE
    wide = rng.normal(size=(rows, classes)).astype(np.float32)
    truth = rng.integers(0, classes, rows)
    wide[np.arange(rows // 2), truth[: rows // 2]] += 10.0  # half of them right
    with Client(service, progress=False) as client:
        start = time.perf_counter()
        result = client.score(wide, truth, per_class=True, per_sample=False)
        seconds = time.perf_counter() - start
    found = result.classes
    assert found is not None
    cells = len(found["confusion"]["count"])
    return {**medians, "wide_s": seconds, "cells": cells, "chunks": result.chunks}


def print_where(found: dict[str, Any]) -> None:
    n, c = SIZE
    ratio = found["where"] / found["plain"]
    print(
        f"{n:,} x {c} typed /score: per_class and two group columns {found['where']:.2f} s "
        f"against {found['plain']:.2f} s without, x{ratio:.2f} (target <= 1.5)"
    )
    rows, classes = WIDE
    print(
        f"C = {classes:,} with {rows:,} samples, per_class through the client: "
        f"{found['wide_s']:.1f} s in {found['chunks']} chunks, {found['cells']:,} confusion cells "
        f"(not {classes**2:,})"
    )
