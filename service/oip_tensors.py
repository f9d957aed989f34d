"""Open Inference Protocol tensors: a request's inputs as numpy arrays, JSON or binary.

The inputs are exactly one of ``logits``, ``probabilities`` and ``log_probabilities`` (FP16,
BF16, FP32 or FP64; [N, C] or [N, C, d1, ..., dk], or [N] binary scores), ``labels`` (INT32 or
INT64; [N] or [N, d1, ..., dk]) and, optionally, ``sample_weight`` (a floating point datatype;
the labels' shape). JSON ``data`` (flat or nested) is read with numpy in one step; binary
tensors (the binary tensor data extension) with ``numpy.frombuffer`` in place, little-endian
(`service.oip_dtypes`).
Protocol faults (names, datatypes, shapes, sizes) are 400s here; the values themselves, and how
the shapes fit together, are checked by the core (`fairloss.scoring`), in the words it uses for
every route.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from fairloss.checks import KINDS, Kind, check_shape
from fairloss_wire.typed_arrays import MAX_DIMS, oversized
from service.errors import ProblemError, echoed, invalid, said
from service.json_arrays import element_limit, holds_a_boolean
from service.json_fields import prediction
from service.oip_dtypes import FLOATS, INTEGERS, WIRE, from_wire, rounded

INPUT_NAMES = (*KINDS, "labels", "sample_weight")
INPUT_DATATYPES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys((*KINDS, "sample_weight"), FLOATS),
    "labels": INTEGERS,
}
SHAPES: dict[str, str] = {
    **dict.fromkeys(KINDS, "[N, C] or [N, C, d1, ..., dk], or [N] binary scores"),
    "labels": "[N] or [N, d1, ..., dk]",
    "sample_weight": "the labels' shape, [N] or [N, d1, ..., dk]",
}
EXPECTED_INPUTS = (
    "logits (or probabilities or log_probabilities), labels and optionally sample_weight"
)
INPUT_KEYS = frozenset({"name", "shape", "datatype", "parameters", "data"})
PARAMETERS = frozenset({"parameters"})


@dataclass(frozen=True)
class Inputs:
    """A request's tensors, ready for `fairloss.score_batch`."""

    kind: Kind
    predictions: np.ndarray[Any, Any]
    labels: np.ndarray[Any, Any]
    sample_weight: np.ndarray[Any, Any] | None
    ignored: tuple[
        str, ...
    ] = ()  # the inputs' parameters not taken, as "inputs.NAME.parameters.KEY"


def bad_request(detail: str) -> ProblemError:
    return ProblemError(400, "Bad request", detail)


def json_object(
    value: Any, what: str, keys: frozenset[str] | None, optional: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """``value``, a JSON object of only ``keys`` (any keys where None); a null in one of the
    ``optional`` keys is as if it were absent, as KServe's server reads it."""
    if not isinstance(value, dict):
        raise bad_request(f"{what} must be a JSON object")
    if keys is not None and (unknown := sorted(set(value) - keys)):
        raise bad_request(
            f"{what} has unknown field(s) {', '.join(map(repr, unknown))}; "
            f"expected {', '.join(sorted(keys))}"
        )
    return {key: item for key, item in value.items() if item is not None or key not in optional}


def read_inputs(request: dict[str, Any], body: bytearray, split: int, max_elements: int) -> Inputs:
    value = request.get("inputs")
    if not isinstance(value, list):
        raise bad_request(f"'inputs' must be an array of tensors: {EXPECTED_INPUTS}")
    specs = [json_object(item, "An input", INPUT_KEYS, PARAMETERS) for item in value]
    named = _named(specs)
    kind, _ = prediction(named)
    if "labels" not in named:
        raise invalid("Field 'labels' is required", ["labels"], "missing")
    # Only lists (the general parser's) may hide JSON booleans; the fast parser refuses them.
    lists = any(isinstance(spec.get("data"), list) for spec in specs)
    booleans = lists and _data_may_hold_booleans(body, split, request)
    offset = split
    tensors: dict[str, np.ndarray[Any, Any]] = {}
    ignored: list[str] = []
    for spec in specs:  # binary data lies in the order of the inputs
        tensors[spec["name"]], offset = _input(spec, body, offset, booleans, max_elements)
        unknown = set(spec.get("parameters", {})) - {"binary_data_size"}
        ignored += (f"inputs.{spec['name']}.parameters.{echoed(key)}" for key in sorted(unknown))
    if offset != len(body):
        raise bad_request(
            f"The inputs' binary_data_size add up to {offset - split} bytes, but "
            f"{len(body) - split} bytes follow the JSON header"
        )
    weight = tensors.get("sample_weight")
    return Inputs(kind, tensors[kind], tensors["labels"], weight, tuple(ignored))


def _named(specs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The inputs by name; a 400 naming every unknown name, or one sent twice."""
    names = [spec.get("name") for spec in specs]
    unknown = [name for name in names if name not in INPUT_NAMES]
    if unknown:
        raise bad_request(
            f"Unknown input(s) {', '.join(map(said, unknown))}; expected {EXPECTED_INPUTS}"
        )
    if twice := [name for k, name in enumerate(names) if name in names[:k]]:
        raise bad_request(f"Input {twice[0]!r} is sent more than once; send each input once")
    return {spec["name"]: spec for spec in specs}


def _input(
    spec: dict[str, Any], body: bytearray, offset: int, booleans: bool, max_elements: int
) -> tuple[np.ndarray[Any, Any], int]:
    name = spec["name"]
    datatypes = INPUT_DATATYPES[name]
    datatype = spec.get("datatype")
    if datatype not in datatypes:
        expected = f"{', '.join(datatypes[:-1])} or {datatypes[-1]}"
        raise bad_request(f"Input {name!r} has datatype {said(datatype)}; expected {expected}")
    dtype = np.dtype(WIRE[datatype])
    shape = _shape(name, spec.get("shape"))
    count = math.prod(shape)
    element_limit(shape, max_elements, [name])
    # Other parameters are taken and ignored, as KServe and Triton take them (`read_inputs`
    # names them in the response).
    parameters = json_object(spec.get("parameters", {}), f"Input {name!r} parameters", None)
    size = parameters.get("binary_data_size")
    if (size is None) == ("data" not in spec):
        raise bad_request(f"Input {name!r} needs either 'data' or binary_data_size, not both")
    if size is not None:
        if type(size) is not int or size != count * dtype.itemsize:
            raise bad_request(
                f"Input {name!r} has binary_data_size {said(size)}; {datatype} {shape} takes "
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
        return from_wire(array, datatype).reshape(shape), offset + size
    return _json_data(name, datatype, shape, spec["data"], booleans), offset


def _shape(name: str, value: Any) -> list[int]:
    if (
        not isinstance(value, list)
        or len(value) < 1
        or any(type(d) is not int or d < 0 for d in value)
    ):
        raise bad_request(f"Input {name!r} has shape {said(value)}; expected {SHAPES[name]}")
    if len(value) > MAX_DIMS:
        raise bad_request(
            f"Input {name!r} has {len(value)} dimensions; expected {SHAPES[name]}, "
            f"with at most {MAX_DIMS} dimensions"
        )
    if oversized(value):
        raise bad_request(
            f"Input {name!r} has shape {said(value)}; its sizes multiply past 2**48"[:300]
        )
    if name in KINDS:
        check_shape(tuple(value), name)
    return value


def _json_data(
    name: str, datatype: str, shape: list[int], data: Any, booleans: bool
) -> np.ndarray[Any, Any]:
    integers = datatype in INTEGERS
    try:  # lists from the general parser; flat numbers as an array from the fast one
        array = np.asarray(data)
    except ValueError:  # nested lists of unequal lengths
        raise bad_request(
            f"Input {name!r} has ragged 'data': its nested arrays differ in length; send "
            f"{math.prod(shape)} values for shape {shape}, flat in row-major order or nested"
        ) from None
    if (
        not isinstance(data, list | np.ndarray)
        or array.dtype.kind not in ("i" if integers else "fi")
        or (booleans and holds_a_boolean(data))
    ):
        if integers and _integers_past_int64(array):
            raise bad_request(f"Input {name!r} holds a value too large for {datatype}")
        wanted = "integers" if integers else "numbers"
        raise bad_request(f"Input {name!r} ({datatype}) must hold {wanted} in its 'data' array")
    if array.size != math.prod(shape):
        raise bad_request(
            f"Input {name!r} holds {array.size} values in 'data'; shape {shape} takes "
            f"{math.prod(shape)}"
        )
    if integers:
        if datatype == "INT32" and ((array < -(2**31)) | (array >= 2**31)).any():
            raise bad_request(f"Input {name!r} holds a value too large for INT32")
        return array.astype(np.int64, copy=False).reshape(shape)
    values = array.astype(np.float64, copy=False)
    held = rounded(values, datatype)
    # Infinities and NaN pass, for the core to refuse in its words ("Expected finite numbers");
    # a finite number too large is one that rounds to infinity (3.4028235e38 fits FP32).
    if (np.isfinite(values) & ~np.isfinite(held)).any():
        raise bad_request(f"Input {name!r} holds a value too large for {datatype}")
    return held.reshape(shape)


def _integers_past_int64(array: np.ndarray[Any, Any]) -> bool:
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
