"""Typed arrays in JSON: ``{"dtype": D, "shape": [...], "data": "<base64>"}``.

Any array field of a JSON body may come in this form, and ``"response_arrays": "base64"`` asks
for the per-sample columns in it: bytes little-endian, row-major, standard base64 (RFC 4648
section 4). A number written as text takes about 20 bytes of JSON and a Python object to read;
in this form a float32 takes 5.3 bytes and numpy reads the lot in one step.

This module needs only numpy and pybase64 (SIMD base64, a dependency of both the client and the
service): the service and the client both read and write typed arrays with it.
"""

from __future__ import annotations

import binascii
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

FLOATS = ("float16", "bfloat16", "float32", "float64")
INTEGERS = ("int32", "int64")
# numpy's dtype for each name; bfloat16 travels as its 16 bits and is widened to float32.
WIRE = {
    "float16": "<f2",
    "bfloat16": "<u2",
    "float32": "<f4",
    "float64": "<f8",
    "int32": "<i4",
    "int64": "<i8",
    "bool": "|b1",
}
NAMES = {np.dtype(v): k for k, v in WIRE.items() if k != "bfloat16"}
KEYS = ("dtype", "shape", "data")
MAX_DIMS = 64  # numpy's limit on an array's dimensions
MAX_SIZE = 2**48  # elements, counting a size of 0 as 1 (numpy's index range is 2**63)

# What to raise: (message, location, kind) -> exception; the service passes its own.
Fault = Callable[[str, list[str | int], str], Exception]


def _where(loc: Sequence[str | int]) -> str:
    parts = (f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
    return "".join(parts).lstrip(".")


def is_typed(value: object) -> bool:
    """Whether a JSON value is a typed array (an object) rather than nested lists."""
    return isinstance(value, Mapping)


def typed_shape(value: Mapping[str, Any], loc: list[str | int], fault: Fault) -> list[int]:
    """The shape a typed array declares, checked, before any of its data is decoded."""
    unknown = [k for k in value if k not in KEYS]
    missing = [k for k in KEYS if k not in value]
    if unknown or missing:
        said = ", ".join([*(f"unknown {k!r}" for k in unknown), *(f"no {k!r}" for k in missing)])
        raise fault(
            f"Expected {_where(loc)} to be an array, or an object with exactly 'dtype', 'shape' "
            f"and 'data', but it has {said}",
            loc,
            "bad_typed_array",
        )
    shape = value["shape"]
    if not isinstance(shape, list) or any(type(d) is not int or d < 0 for d in shape):
        raise fault(
            f"Expected {_where([*loc, 'shape'])} to be a list of sizes (integers >= 0), but got "
            f"{json.dumps(shape)}"[:300],
            [*loc, "shape"],
            "bad_shape",
        )
    if oversized(shape):
        raise fault(
            f"Expected {_where([*loc, 'shape'])} to have at most {MAX_DIMS} sizes whose "
            f"product is at most 2**48, but got {shape!r}"[:300],
            [*loc, "shape"],
            "bad_shape",
        )
    return shape


def oversized(shape: Sequence[int]) -> bool:
    """Whether a shape of sizes >= 0 is past what numpy holds: more than `MAX_DIMS` sizes, or
    sizes whose product (a size of 0 counted as 1, since numpy refuses such a shape even when
    another size makes the array empty) is past `MAX_SIZE`."""
    return len(shape) > MAX_DIMS or math.prod(max(d, 1) for d in shape) > MAX_SIZE


def decode(
    value: Mapping[str, Any], loc: list[str | int], dtypes: Sequence[str], fault: Fault
) -> np.ndarray[Any, Any]:
    """The array a typed array holds (bfloat16 widened to float32), or ``fault`` naming the
    part that is wrong: an unknown dtype, a shape, base64, or a length that does not fit."""
    shape = typed_shape(value, loc, fault)
    dtype = value["dtype"]
    if dtype not in dtypes:
        raise fault(
            f"Expected {_where([*loc, 'dtype'])} to be one of {', '.join(dtypes)}, but got "
            f"{dtype!r}"[:300],
            [*loc, "dtype"],
            "bad_dtype",
        )
    data = value["data"]
    import pybase64  # SIMD base64, several times the standard library's speed; here, so that
    # the command line scores files in process without it

    try:
        raw = (
            pybase64.b64decode_as_bytearray(data, validate=True) if isinstance(data, str) else None
        )
    except (binascii.Error, ValueError) as exc:
        raise fault(
            f"Expected {_where([*loc, 'data'])} to be standard base64, but {_base64_fault(data)}"
            if isinstance(data, str)
            else f"Expected {_where([*loc, 'data'])} to be standard base64: {exc}",
            [*loc, "data"],
            "bad_base64",
        ) from None
    if raw is None:
        raise fault(
            f"Expected {_where([*loc, 'data'])} to be a base64 string", [*loc, "data"], "bad_base64"
        )
    wire = np.dtype(WIRE[dtype])
    wanted = math.prod(shape) * wire.itemsize
    if len(raw) != wanted:
        raise fault(
            f"{_where([*loc, 'data'])} holds {len(raw)} bytes, but dtype {dtype} and shape "
            f"{shape} take {wanted}",
            [*loc, "data"],
            "bad_length",
        )
    array = np.frombuffer(raw, dtype=wire).reshape(shape)  # writable, as torch wants it
    if dtype == "bfloat16":
        return bfloat16_bits_to_float32(array)
    return array


def _base64_fault(text: str) -> str:
    """What makes ``text`` other than standard base64 (RFC 4648 §4, padded), in words."""
    stray = re.search(r"[^A-Za-z0-9+/=]", text)
    if stray is not None:
        char, at = stray.group(), stray.start()
        if char in "-_":
            return (
                f"it holds {char!r} at index {at}: that is URL-safe base64 (RFC 4648 §5); "
                "send the standard alphabet, with '+' and '/'"
            )
        return f"it holds {char!r} at index {at}, which is not a base64 character"
    padding = text.find("=")
    if padding != -1 and text[padding:].strip("=") != "":
        return f"it holds '=' at index {padding}, before its end"
    if len(text) % 4:
        return (
            f"its length, {len(text):,}, is not a multiple of 4: the '=' padding at its end is "
            "missing or cut short"
        )
    return "it does not decode"


def encode(array: np.ndarray[Any, Any]) -> dict[str, Any]:
    """A typed array of ``array`` (float16/32/64, int32/64 or bool)."""
    array = np.ascontiguousarray(array)
    wire = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    name = NAMES[np.dtype(wire)]
    import pybase64

    data = pybase64.b64encode(array.astype(wire, copy=False).tobytes())
    return {"dtype": name, "shape": list(array.shape), "data": data.decode("ascii")}


def bfloat16_bits_to_float32(bits: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """BF16 elements, given as their 16 bits, as the float32 values they are (exactly: every
    bfloat16, subnormals, infinities and NaN included, is the float32 of those top 16 bits)."""
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)
