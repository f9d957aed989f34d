"""What a 1,000-replicate bootstrap costs ``POST /compare`` (100,000 x 10, two candidates, typed
arrays): the time it adds, against numpy drawing the 10^8 float32 uniforms of as many weights,
and the bytes the replicate sums add to an answer."""

from __future__ import annotations

from functools import partial
from typing import Any

import httpx
import numpy as np

from benchmarks.common import BOOT, JSON_HEADERS, compare_body, interleaved, post


def uniforms() -> None:
    """The yardstick of the bootstrap: numpy's 10^8 float32 uniforms, one per weight."""
    n, _, replicates = BOOT
    np.random.default_rng().random((replicates, n), dtype=np.float32)


def measure_bootstrap(service: str, rounds: int) -> dict[str, float]:
    """Median seconds of ``/compare`` with and without the bootstrap, and of the uniforms."""
    n, c, replicates = BOOT
    plain = compare_body(n, c, None)
    resampled = compare_body(n, c, {"replicates": replicates, "seed": 7})
    with httpx.Client(timeout=300.0) as client:
        return interleaved(
            {
                "plain": partial(post, client, f"{service}/compare", plain, JSON_HEADERS),
                "bootstrap": partial(post, client, f"{service}/compare", resampled, JSON_HEADERS),
                "uniforms": uniforms,
            },
            rounds,
        )


def replicate_bytes(service: str, n: int = 1_000) -> dict[str, int | str]:
    """Bytes the replicate sums of two candidates add to a ``/compare`` answer, per
    ``response_arrays`` (the status instead, when the service refuses to answer)."""
    _, c, replicates = BOOT
    added: dict[str, int | str] = {}
    with httpx.Client(timeout=300.0) as client:
        for arrays in ("json", "base64"):
            sizes: list[int] = []
            for sums in (False, True):
                bootstrap: dict[str, Any] = {
                    "replicates": replicates,
                    "seed": 7,
                    "replicate_sums": sums,
                }
                body = compare_body(n, c, bootstrap, arrays, per_sample=False)
                response = client.post(f"{service}/compare", content=body, headers=JSON_HEADERS)
                if response.status_code != 200:
                    added[arrays] = f"HTTP {response.status_code}"
                    break
                sizes.append(len(response.content))
            else:
                added[arrays] = sizes[1] - sizes[0]
    return added
