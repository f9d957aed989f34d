"""Random valid batches round-trip: /score gives what the fairloss core gives on the same input."""

from __future__ import annotations

import math
from typing import Any

import anyio
import httpx
import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fairloss import fair_loss_terms
from service.settings import Settings
from tests.conftest import in_process

DTYPES = {"float32": torch.float32, "float64": torch.float64}
# Tolerance relative to the value: float32 and float64 results are compared in their precision.
RTOL = {"float32": 1e-6, "float64": 1e-12}
# float32 results are written with the fewest digits that give back the float32, which for a
# subnormal (below float32's smallest normal number) is fewer than 7 significant digits.
ATOL = {"float32": float(np.finfo(np.float32).tiny), "float64": 0.0}
# Powers of 2, so that each bound is a float32; up to about 1e30.
MAGNITUDES = (1.0, 2.0**4, 2.0**10, 2.0**20, 2.0**50, 2.0**100)


@st.composite
def batches(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 40))
    c = draw(st.integers(2, 8))
    scale = draw(st.sampled_from(MAGNITUDES))
    value = st.floats(-scale, scale, allow_nan=False, allow_infinity=False, width=32)
    logits = draw(st.lists(st.lists(value, min_size=c, max_size=c), min_size=n, max_size=n))
    ignore_index = draw(st.none() | st.sampled_from([-100, -1, 0, c - 1]))
    label = st.integers(0, c - 1)
    if ignore_index is not None:
        label = label | st.just(ignore_index)
    body: dict[str, Any] = {
        "logits": logits,
        "labels": draw(st.lists(label, min_size=n, max_size=n)),
        "smooth_max_beta": draw(st.floats(0.1, 1e4)),
        "scaling_factor": draw(st.floats(0.1, 1e4)),
        "class_weights": draw(st.none() | st.lists(st.floats(0, 10), min_size=c, max_size=c)),
        "label_smoothing": draw(st.floats(0, 1)),
        "ignore_index": ignore_index,
        "reduction": draw(st.sampled_from(["mean", "sum"])),
        "precision": draw(st.sampled_from(["float32", "float64"])),
    }
    return body


async def post_score(body: dict[str, Any]) -> httpx.Response:
    async with in_process(Settings()) as client:
        return await client.post("/score", json=body)


def core_terms(body: dict[str, Any]) -> dict[str, np.ndarray[Any, Any]]:
    dtype = DTYPES[body["precision"]]
    weights = body["class_weights"]
    terms = fair_loss_terms(
        torch.tensor(body["logits"], dtype=dtype),
        torch.tensor(body["labels"]),
        smooth_max_beta=body["smooth_max_beta"],
        scaling_factor=body["scaling_factor"],
        weight=None if weights is None else torch.tensor(weights, dtype=torch.float64),
        label_smoothing=body["label_smoothing"],
        ignore_index=body["ignore_index"],
    )
    return {name: getattr(terms, name).numpy() for name in ("ce", "penalty", "total", "counted")}


@settings(max_examples=50, deadline=None)
@given(body=batches())
def test_score_equals_the_core(body: dict[str, Any]) -> None:
    response = anyio.run(post_score, body)
    assert response.status_code == 200, response.text
    result = response.json()
    want = core_terms(body)
    rtol, atol = RTOL[body["precision"]], ATOL[body["precision"]]
    columns = result["per_sample"]
    for name in ("ce", "penalty", "total"):
        np.testing.assert_allclose(columns[name], want[name], rtol=rtol, atol=atol, err_msg=name)
    if body["ignore_index"] is None:
        assert "counted" not in columns
    else:
        assert columns["counted"] == want["counted"].tolist()
    counted = int(want["counted"].sum())
    assert result["sums"]["count"] == counted
    assert result["n"] == len(body["labels"])
    assert result["num_classes"] == len(body["logits"][0])
    total = math.fsum(want["total"].astype(np.float64).tolist())
    if body["reduction"] == "sum":
        assert math.isclose(result["reduced"]["total"], total, rel_tol=1e-9, abs_tol=1e-300)
    elif counted:
        assert math.isclose(result["reduced"]["total"], total / counted, rel_tol=1e-9)
    else:
        assert result["reduced"]["total"] is None
