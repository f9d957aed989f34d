"""Typed base64 arrays: every dtype both ways, every array field, and every bad one named."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import numpy as np
import pytest
import torch

from fairloss_wire.typed_arrays import decode, encode

pytestmark = pytest.mark.anyio

RNG = np.random.default_rng(9)
LOGITS = RNG.normal(size=(50, 4)).astype(np.float32)
LABELS = RNG.integers(0, 4, size=50)
WEIGHTS = RNG.uniform(0, 2, size=50)


def fault(message: str, loc: list[Any], kind: str) -> Exception:
    return ValueError(kind, loc, message)


@pytest.mark.parametrize(
    "dtype", [np.float16, np.float32, np.float64, np.int32, np.int64, np.bool_]
)
def test_every_dtype_round_trips(dtype: Any) -> None:
    array = (RNG.normal(size=(3, 4, 2)) * 10).astype(dtype)
    typed = encode(array)
    assert typed["shape"] == [3, 4, 2]
    back = decode(typed, ["x"], (typed["dtype"],), fault)
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back, array)
    assert (
        typed["data"]
        == base64.b64encode(array.astype(array.dtype.newbyteorder("<")).tobytes()).decode()
    )


def test_bfloat16_is_read_as_torch_writes_it() -> None:
    values = torch.tensor(
        [0.0, -0.0, 1.0, -2.5, 3.1415926, 1e-40, 6e4, 1e38, -1e-5, float("inf"), float("nan")],
        dtype=torch.bfloat16,
    )
    raw = values.view(torch.int16).numpy().astype("<i2").tobytes()
    typed = {"dtype": "bfloat16", "shape": [len(values)], "data": base64.b64encode(raw).decode()}
    got = decode(typed, ["x"], ("bfloat16",), fault)
    np.testing.assert_array_equal(got, values.float().numpy())
    assert got.dtype == np.float32


async def test_score_with_typed_inputs_equals_json_lists(client: httpx.AsyncClient) -> None:
    lists = {
        "logits": LOGITS.tolist(),
        "labels": LABELS.tolist(),
        "sample_weight": WEIGHTS.tolist(),
    }
    typed = {"logits": encode(LOGITS), "labels": encode(LABELS), "sample_weight": encode(WEIGHTS)}
    a = (await client.post("/score", json=lists)).json()
    b = (await client.post("/score", json=typed)).json()
    assert a == b


async def test_float16_and_bfloat16_predictions_are_computed_in_float32(
    client: httpx.AsyncClient,
) -> None:
    half = LOGITS.astype(np.float16)
    as_float16 = (
        await client.post("/score", json={"logits": encode(half), "labels": LABELS.tolist()})
    ).json()
    widened = {"logits": half.astype(np.float32).tolist(), "labels": LABELS.tolist()}
    as_lists = (await client.post("/score", json=widened)).json()
    assert as_float16["reduced"] == as_lists["reduced"]
    bf16 = torch.from_numpy(LOGITS).to(torch.bfloat16)
    raw = bf16.view(torch.int16).numpy().astype("<i2").tobytes()
    typed = {"dtype": "bfloat16", "shape": [50, 4], "data": base64.b64encode(raw).decode()}
    as_bf16 = (
        await client.post("/score", json={"logits": typed, "labels": LABELS.tolist()})
    ).json()
    widened = {"logits": bf16.float().tolist(), "labels": LABELS.tolist()}
    as_lists = (await client.post("/score", json=widened)).json()
    assert as_bf16["reduced"] == as_lists["reduced"]


async def test_base64_response_arrays_decode_to_the_json_columns(client: httpx.AsyncClient) -> None:
    body = {"logits": LOGITS.tolist(), "labels": LABELS.tolist(), "ignore_index": 3,
            "extra_columns": ["confidence", "pll"]}  # fmt: skip
    plain = (await client.post("/score", json=body)).json()
    typed = (await client.post("/score", json={**body, "response_arrays": "base64"})).json()
    dtypes = {"ce": "float32", "predicted": "int32", "correct": "bool", "counted": "bool"}
    for name, column in typed["per_sample"].items():
        assert column["dtype"] == dtypes.get(name, "float32")
        values = decode(column, [name], (column["dtype"],), fault)
        np.testing.assert_array_equal(values, np.asarray(plain["per_sample"][name], values.dtype))
    assert {k: v for k, v in typed.items() if k != "per_sample"} == {
        k: v for k, v in plain.items() if k != "per_sample"
    }


async def test_compare_takes_typed_candidates(client: httpx.AsyncClient) -> None:
    body = {"labels": encode(LABELS), "candidates": [{"name": "a", "logits": encode(LOGITS)}]}
    lists = {"labels": LABELS.tolist(), "candidates": [{"name": "a", "logits": LOGITS.tolist()}]}
    assert (await client.post("/compare", json=body)).json() == (
        await client.post("/compare", json=lists)
    ).json()


URLSAFE = encode(LOGITS)["data"].replace("+", "-").replace("/", "_") + "-_"


def typed(**changes: Any) -> dict[str, Any]:
    return {**encode(LOGITS), **changes}


BAD: list[tuple[str, dict[str, Any], list[Any], str, str]] = [
    ("short", {"logits": typed(shape=[50, 5])}, ["logits", "data"], "bad_length",
     "logits.data holds 800 bytes, but dtype float32 and shape [50, 5] take 1000"),
    ("dtype", {"logits": typed(dtype="float8")}, ["logits", "dtype"], "bad_dtype",
     "Expected logits.dtype to be one of float16, bfloat16, float32, float64, but got 'float8'"),
    ("int_logits", {"logits": typed(dtype="int32")}, ["logits", "dtype"], "bad_dtype", "'int32'"),
    ("float_labels", {"labels": encode(LABELS.astype(np.float32))}, ["labels", "dtype"],
     "bad_dtype", "Expected labels.dtype to be one of int32, int64, but got 'float32'"),
    ("base64", {"logits": typed(data="not base64!")}, ["logits", "data"], "bad_base64",
     "Expected logits.data to be standard base64"),
    ("urlsafe", {"logits": typed(data=URLSAFE)},
     ["logits", "data"], "bad_base64", "standard base64"),
    ("keys", {"logits": {"dtype": "float32", "shape": [50, 4], "values": "", "data": ""}},
     ["logits"], "bad_typed_array", "it has unknown 'values'"),
    ("missing", {"logits": {"dtype": "float32", "data": ""}}, ["logits"], "bad_typed_array",
     "it has no 'shape'"),
    ("shape", {"logits": typed(shape=[50, -4])}, ["logits", "shape"], "bad_shape", "sizes"),
    ("too_big", {"logits": typed(shape=[10**9, 10])}, ["logits"], "too_many_elements",
     "elements is more than this server's limit"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "loc", "kind", "words"), [pytest.param(*c[1:], id=c[0]) for c in BAD]
)
async def test_bad_typed_arrays_are_named(
    client: httpx.AsyncClient, changes: dict[str, Any], loc: list[Any], kind: str, words: str
) -> None:
    body = {"logits": encode(LOGITS), "labels": LABELS.tolist(), **changes}
    response = await client.post("/score", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["errors"][0]
    assert (error["loc"], error["type"]) == (loc, kind)
    assert words in error["msg"]
    assert (
        await client.post("/score", json={"logits": encode(LOGITS), "labels": encode(LABELS)})
    ).status_code == 200
