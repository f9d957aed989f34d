"""Open Inference Protocol tensors: a request's inputs as numpy arrays, JSON or binary.

JSON ``data`` (flat or nested) is read with numpy in one step; binary tensors (the binary tensor
data extension) with ``numpy.frombuffer`` in place. Protocol faults (datatype, shape, sizes) are
400s here; the values themselves are checked by the core (`fairloss.scoring`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fairloss.checks import FLOAT32_MAX, check_shape
from service.errors import ProblemError
from service.json_arrays import element_limit, holds_a_boolean

INPUT_TYPES = {"logits": {"FP32": "<f4", "FP64": "<f8"}, "labels": {"INT32": "<i4", "INT64": "<i8"}}
INPUT_RANKS = {"logits": 2, "labels": 1}
INPUT_KEYS = frozenset({"name", "shape", "datatype", "parameters", "data"})


def bad_request(detail: str) -> ProblemError:
    return ProblemError(400, "Bad request", detail)


def json_object(value: Any, what: str, keys: frozenset[str] | None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad_request(f"{what} must be a JSON object")
    if keys is not None and (unknown := sorted(set(value) - keys)):
        raise bad_request(
            f"{what} has unknown field(s) {', '.join(map(repr, unknown))}; "
            f"expected {', '.join(sorted(keys))}"
        )
    return dict(value)


def read_inputs(
    request: dict[str, Any], body: bytearray, split: int, max_elements: int
) -> dict[str, np.ndarray]:
    value = request.get("inputs")
    if not isinstance(value, list):
        raise bad_request("'inputs' must be an array of tensors named 'logits' and 'labels'")
    names = [item.get("name") if isinstance(item, dict) else None for item in value]
    if sorted(map(str, names)) != sorted(INPUT_RANKS):
        raise bad_request(f"Expected the inputs 'logits' and 'labels', once each, but got {names}")
    booleans = _data_may_hold_booleans(body, split, request)
    offset = split
    tensors: dict[str, np.ndarray] = {}
    for item in value:
        spec = json_object(item, "An input", INPUT_KEYS)
        tensor, offset = _input(spec, body, offset, booleans, max_elements)
        tensors[item["name"]] = tensor
    if offset != len(body):
        raise bad_request(
            f"The inputs' binary_data_size add up to {offset - split} bytes, but "
            f"{len(body) - split} bytes follow the JSON header"
        )
    return tensors


def _input(
    spec: dict[str, Any], body: bytearray, offset: int, booleans: bool, max_elements: int
) -> tuple[np.ndarray, int]:
    name = spec["name"]
    dtypes = INPUT_TYPES[name]
    datatype = spec.get("datatype")
    if datatype not in dtypes:
        raise bad_request(
            f"Input {name!r} has datatype {datatype!r}; expected {' or '.join(dtypes)}"
        )
    dtype = np.dtype(dtypes[datatype])
    shape = _shape(name, spec.get("shape"))
    count = math.prod(shape)
    element_limit(shape, max_elements, [name])
    parameters = json_object(spec.get("parameters", {}), f"Input {name!r} parameters", None)
    size = parameters.pop("binary_data_size", None)
    if parameters:
        raise bad_request(
            f"Input {name!r} has unknown parameter(s) {sorted(parameters)}; "
            "expected only binary_data_size"
        )
    if (size is None) == ("data" not in spec):
        raise bad_request(f"Input {name!r} needs either 'data' or binary_data_size, not both")
    if size is not None:
        if type(size) is not int or size != count * dtype.itemsize:
            raise bad_request(
                f"Input {name!r} has binary_data_size {size!r}; {datatype} {shape} takes "
                f"{count * dtype.itemsize} bytes"
            )
        if offset + size > len(body):
            raise bad_request(
                f"Input {name!r} needs {size} bytes of binary data; only "
                f"{len(body) - offset} are left in the body"
            )
        array = np.frombuffer(body, dtype=dtype, count=count, offset=offset)
        if not array.flags.aligned:
            array = array.copy()
        return array.reshape(shape), offset + size
    return _json_data(name, datatype, shape, spec["data"], booleans), offset


def _shape(name: str, value: Any) -> list[int]:
    rank = INPUT_RANKS[name]
    if (
        not isinstance(value, list)
        or len(value) != rank
        or any(type(d) is not int or d < 0 for d in value)
    ):
        expected = "[N, C]" if rank == 2 else "[N]"
        raise bad_request(f"Input {name!r} has shape {value!r}; expected {expected}")
    if rank == 2:
        check_shape(tuple(value))
    return value


def _json_data(name: str, datatype: str, shape: list[int], data: Any, booleans: bool) -> np.ndarray:
    kinds = "fi" if name == "logits" else "i"
    try:
        array = np.asarray(data)
    except ValueError:
        array = np.asarray([None])
    if (
        not isinstance(data, list)
        or array.dtype.kind not in kinds
        or (booleans and holds_a_boolean(data))
    ):
        if name == "labels" and _integers_past_int64(array):
            raise bad_request(f"Input 'labels' holds a value too large for {datatype}")
        wanted = "numbers" if name == "logits" else "integers"
        raise bad_request(f"Input {name!r} ({datatype}) must hold {wanted} in its 'data' array")
    if array.size != math.prod(shape):
        raise bad_request(
            f"Input {name!r} holds {array.size} values in 'data'; shape {shape} takes "
            f"{math.prod(shape)}"
        )
    if datatype == "FP32" and (np.abs(array) > FLOAT32_MAX).any():
        raise bad_request(f"Input {name!r} holds a value too large for FP32")
    if datatype == "INT32" and ((array < -(2**31)) | (array >= 2**31)).any():
        raise bad_request(f"Input {name!r} holds a value too large for INT32")
    return array.astype(np.float64 if name == "logits" else np.int64, copy=False).reshape(shape)


def _integers_past_int64(array: np.ndarray) -> bool:
    """Whether every value is an integer and one lies outside int64. Integer literals past 64
    bits parse as floats (rounded to at or past the bounds) or as Python ints."""
    values = array.ravel().tolist()
    integers = all(type(v) is int or (type(v) is float and v.is_integer()) for v in values)
    return integers and any(
        not -(2**63) <= v < 2**63 if type(v) is int else abs(v) >= 2**63 for v in values
    )


def _data_may_hold_booleans(body: bytearray, split: int, request: dict[str, Any]) -> bool:
    """Whether any input's ``data`` may hold ``true``/``false`` (numpy reads them as 1 and 0).

    The header's ``true``/``false`` tokens are counted against the booleans outside ``data``;
    only when they differ (or a string holds those words) does a Python scan of the data run.
    """
    tokens = body.count(b"true", 0, split) + body.count(b"false", 0, split)
    if tokens == 0:
        return False
    outside = 0
    pending: list[Any] = [{k: v for k, v in request.items() if k != "inputs"}]
    pending.extend({k: v for k, v in i.items() if k != "data"} for i in request["inputs"])
    while pending:
        item = pending.pop()
        if isinstance(item, bool):
            outside += 1
        elif isinstance(item, str):
            if "true" in item or "false" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return tokens != outside
