"""The simdjson fast path takes exactly the bodies it can read right, and agrees with orjson."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.fastjson import parse_fast
from service.oip import infer

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
number = st.one_of(finite, st.integers(-(2**53), 2**53))


@st.composite
def bodies(draw: st.DrawFn) -> dict[str, Any]:
    rows = draw(st.integers(1, 12))
    width = draw(st.integers(0, 6))
    logits = [[draw(number) for _ in range(width)] for _ in range(rows)]
    labels = draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=rows, max_size=rows))
    body: dict[str, Any] = {"logits": logits, "labels": labels}
    if draw(st.booleans()):
        body["class_weights"] = draw(st.lists(finite, max_size=4))
        body["reduction"] = draw(st.sampled_from(["mean", "sum", "a[b"]))
    return body


@settings(max_examples=200, deadline=None)
@given(bodies())
def test_fast_path_gives_the_arrays_that_orjson_and_numpy_give(body: dict[str, Any]) -> None:
    raw = orjson.dumps(body)
    parsed = parse_fast(raw)
    if "[" in str(body.get("reduction", "")):
        assert parsed is None  # a '[' inside a string: the general path, conservatively
        return
    assert parsed is not None
    expected = orjson.loads(raw)
    logits = parsed.pop("logits")
    assert logits.dtype == np.float64
    assert logits.shape == (len(body["logits"]), len(body["logits"][0]))
    np.testing.assert_array_equal(logits, np.asarray(expected.pop("logits"), dtype=np.float64))
    labels = parsed.pop("labels")
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, np.asarray(expected.pop("labels"), dtype=np.int64))
    assert parsed == expected


def test_candidates_logits_are_arrays_and_other_fields_plain() -> None:
    body = {
        "labels": [0, 1],
        "candidates": [
            {"name": "a", "logits": [[1, 2.5], [3, 4]]},
            {"name": "b", "logits": [[0, 0], [1, 1]]},
        ],
        "extra_columns": ["pll"],
    }
    parsed = parse_fast(orjson.dumps(body))
    assert parsed is not None
    assert [c["name"] for c in parsed["candidates"]] == ["a", "b"]
    np.testing.assert_array_equal(parsed["candidates"][0]["logits"], [[1, 2.5], [3, 4]])
    assert parsed["extra_columns"] == ["pll"]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"logits": [[[1], [2]], [[3], [4]]], "labels": [0, 1]}',  # nested rows
        b'{"logits": [[[], [1, 2]], [[], [3, 4]]], "labels": [0, 1]}',  # nesting that adds up
        b'{"logits": [[1, 2, 3], [4]], "labels": [0, 1]}',  # ragged
        b'{"logits": [[1, 2], 3], "labels": [0, 1]}',  # a row that is a number
        b'{"logits": [[1, true], [3, 4]], "labels": [0, 1]}',  # a boolean among numbers
        b'{"logits": [[1, "2"], [3, 4]], "labels": [0, 1]}',  # a string among numbers
        b'{"logits": [[1, NaN], [3, 4]], "labels": [0, 1]}',  # not JSON
        b'{"logits": [[1, 1e400], [3, 4]], "labels": [0, 1]}',  # out of double range
        b'{"logits": [[1, 2], [3, 4]], "labels": [0, 1.0]}',  # a float label
        b'{"logits": [[1, 2], [3, 4]], "labels": [[0], [1]]}',  # nested labels
        b'{"logits": [[1, 2], [3, 4]], "labels": [0, 99999999999999999999]}',  # past int64
        b'{"logits": [[1, 2]], "labels": [0], "labels": [1]}',  # duplicate keys
        b'{"logits": [], "labels": []}',  # empty batch
        b"[[1, 2]]",  # not an object
        b"\xff",  # not UTF-8
        b"",
    ],
)
def test_fast_path_refuses_what_it_cannot_read_exactly(raw: bytes) -> None:
    assert parse_fast(raw) is None


@pytest.mark.parametrize(
    ("datatypes", "nesting"),
    [
        (("FP32", "INT64"), (2100,)),
        (("FP64", "INT32"), (2100,)),
        (("FP16", "INT64"), (2100,)),
        (("FP32", "INT64"), (300, 7)),  # nested as the shape says
        (("FP32", "INT64"), (30, 10, 7)),  # nested otherwise: numpy reads it, then reshapes
    ],
)
def test_oip_json_tensors_take_the_fast_path_and_answer_as_the_general_one(
    monkeypatch: pytest.MonkeyPatch, datatypes: tuple[str, str], nesting: tuple[int, ...]
) -> None:
    rng = np.random.default_rng(2)
    logits, labels = rng.normal(size=(300, 7)) * 3, rng.integers(0, 7, 300)
    data = logits.reshape(nesting)
    request = {
        "inputs": [
            {"name": "logits", "datatype": datatypes[0], "shape": [300, 7], "data": data},
            {"name": "labels", "datatype": datatypes[1], "shape": [300], "data": labels},
        ],
        "outputs": [{"name": "total"}, {"name": "reduced"}],
    }
    body = bytearray(orjson.dumps(request, option=orjson.OPT_SERIALIZE_NUMPY))
    fast = parse_fast(body)
    assert fast is not None
    assert isinstance(fast["inputs"][0]["data"], np.ndarray)
    assert fast["inputs"][1]["data"].dtype == np.int64
    answer = infer(body, None, "cpu", 10**6).body
    monkeypatch.setattr("service.payload.parse_fast", lambda *_: None)
    assert infer(body, None, "cpu", 10**6).body == answer


@pytest.mark.parametrize(
    "data",
    [
        b"[[[0.5, 1.0], [2.0]], [[3.0, 4.0, 5.0], [6.0]]]",
        b"[[0.5, 1.0], [2.0, [3.0]]]",
        b"[[0.5, true], [2.0, 3.0]]",
        b"[0.5, NaN, 2.0, 3.0]",
    ],
    ids=["ragged", "deeper", "boolean", "nan"],
)
def test_oip_data_the_fast_path_cannot_read_exactly_goes_to_the_general_one(data: bytes) -> None:
    body = (
        b'{"inputs": [{"name": "logits", "datatype": "FP64", "shape": [2, 2], "data": '
        + data
        + b'}, {"name": "labels", "datatype": "INT64", "shape": [2], "data": [0, 1]}]}'
    )
    assert parse_fast(body) is None
