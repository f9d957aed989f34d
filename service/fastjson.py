"""The fast path for the common request: numeric arrays parsed by simdjson straight into numpy.

The general path (orjson, then numpy) makes a Python object of every number first, which is most
of a big request's time. simdjson parses the body once and hands ``logits`` and ``labels`` over
as flat buffers, and an Open Inference Protocol tensor's ``data``, flat or nested, likewise.
The fast path takes a body only when each of its arrays is exactly what it seems, and returns
None for anything else (invalid JSON, NaN literals, booleans or strings among the numbers,
ragged rows, predictions nested past two levels, duplicate keys): the general path then parses
that body and says what is wrong. Both paths accept the same bodies and give the same arrays.
"""

from __future__ import annotations

from collections.abc import Iterable, Sized
from typing import Any, Literal, NamedTuple, cast

import numpy as np
import simdjson

from service.memory import MIB

MATRICES = frozenset({"logits", "probabilities", "log_probabilities"})
VECTORS: dict[str, Literal["i", "d"]] = {"labels": "i", "sample_weight": "d"}  # element types
NESTED = frozenset({"candidates", "inputs"})  # arrays of objects: /compare's, OIP's tensors
INTEGER_DATATYPES = frozenset({"INT32", "INT64"})


class _NotFastError(Exception):
    """This body needs the general path."""


class Structure(NamedTuple):
    """How many commas and opening brackets a JSON body holds: about one per number and one
    per array, which is what parsing it costs (`service.memory.JSON_COST`)."""

    commas: int
    opening: int


def structure(body: bytes | bytearray) -> Structure:
    """`Structure` of ``body``, counted by numpy a MiB at a time into one reused array of
    flags (no array of flags as long as the body)."""
    data = np.frombuffer(body, dtype=np.uint8)
    found = np.empty(min(data.size, MIB), dtype=bool)
    commas = opening = 0
    for start in range(0, data.size, MIB):
        block = data[start : start + MIB]
        flags = found[: block.size]
        commas += int(np.count_nonzero(np.equal(block, ord(","), out=flags)))
        opening += int(np.count_nonzero(np.equal(block, ord("["), out=flags)))
    return Structure(commas, opening)


def parse_fast(body: bytes | bytearray, opening: int | None = None) -> dict[str, Any] | None:
    """The body's object, with 2-D predictions (N x C float64), flat ``labels`` (int64),
    flat ``sample_weight`` (float64) and the flat ``data`` of OIP tensors as arrays;
    ``opening`` is the count of ``[`` in the body, when `structure` has counted it already."""
    if opening is None:
        opening = structure(body).opening
    try:
        document = simdjson.Parser().parse(body)
        if not isinstance(document, simdjson.Object):
            return None
        data, brackets = _object(document)
    except (_NotFastError, TypeError, ValueError, RuntimeError, UnicodeDecodeError, KeyError):
        return None  # KeyError: a key simdjson cannot look up again, one holding a NUL
    # Every '[' of the body must be one the conversion accounted for: a row nested inside a
    # flattened buffer (or a '[' inside a string) sends the body to the general path.
    return data if opening == brackets else None


def _object(element: Any) -> tuple[dict[str, Any], int]:
    keys = list(element.keys())
    if len(set(keys)) != len(keys):
        raise _NotFastError
    data: dict[str, Any] = {}
    brackets = 0
    for key in keys:
        value = element[key]
        if key in MATRICES:
            data[key], count = _matrix(value)
        elif key in VECTORS:
            data[key], count = _vector(value, VECTORS[key])
        elif key in NESTED and isinstance(value, simdjson.Array):
            data[key], count = _objects(value)
        elif key == "data" and "datatype" in keys and isinstance(value, simdjson.Array):
            data[key], count = _tensor_data(value, element["datatype"])
        else:
            data[key], count = _plain(value)
        brackets += count
    return data, brackets


def _matrix(value: Any) -> tuple[np.ndarray[Any, np.dtype[np.float64]], int]:
    if not isinstance(value, simdjson.Array) or len(value) == 0:
        raise _NotFastError
    rows = len(value)
    first = value[0]
    if not isinstance(first, simdjson.Array):
        raise _NotFastError
    width = len(first)
    # A row that is a number has no len (TypeError); one that is a string or an object has,
    # but then as_buffer below refuses it.
    if set(map(len, cast("Iterable[Sized]", value))) != {width}:
        raise _NotFastError
    flat = np.frombuffer(value.as_buffer(of_type="d"), dtype=np.float64)
    if flat.size != rows * width:
        raise _NotFastError
    return flat.reshape(rows, width), rows + 1


def _vector(value: Any, of_type: Literal["i", "d"]) -> tuple[np.ndarray[Any, Any], int]:
    if not isinstance(value, simdjson.Array):
        raise _NotFastError
    dtype = np.int64 if of_type == "i" else np.float64
    flat = np.frombuffer(value.as_buffer(of_type=of_type), dtype=dtype)
    if flat.size != len(value):
        raise _NotFastError
    return flat, 1


def _tensor_data(value: Any, datatype: Any) -> tuple[np.ndarray[Any, Any], int]:
    """An Open Inference Protocol tensor's ``data``, flat or nested (rectangular at every
    level, as numpy reads nested lists), flattened: int64 for an integer datatype, float64
    otherwise. The codec reshapes it to the tensor's ``shape``."""
    of_type: Literal["i", "d"] = "i" if datatype in INTEGER_DATATYPES else "d"
    level, brackets, size = [value], 1, len(value)
    while size and isinstance(level[0][0], simdjson.Array):
        # A row that is a number has no len (TypeError); a string has, but as_buffer refuses it.
        widths = {len(row) for array in level for row in array}
        if len(widths) != 1:
            raise _NotFastError
        brackets += size
        size *= widths.pop()
        if not size or not isinstance(level[0][0][0], simdjson.Array):
            break
        level = [row for array in level for row in array]  # one level deeper
    dtype = np.int64 if of_type == "i" else np.float64
    flat = np.frombuffer(value.as_buffer(of_type=of_type), dtype=dtype)
    if flat.size != size:
        raise _NotFastError
    return flat, brackets


def _objects(value: Any) -> tuple[list[Any], int]:
    items: list[Any] = []
    brackets = 1
    for element in value:
        if not isinstance(element, simdjson.Object):
            raise _NotFastError
        item, count = _object(element)
        items.append(item)
        brackets += count
    return items, brackets


def _plain(value: Any) -> tuple[Any, int]:
    if isinstance(value, simdjson.Array):
        converted: Any = value.as_list()
    elif isinstance(value, simdjson.Object):
        converted = value.as_dict()
    else:
        return value, 0
    return converted, _lists_in(converted)


def _lists_in(value: Any) -> int:
    if isinstance(value, list):
        return 1 + sum(_lists_in(item) for item in value)
    if isinstance(value, dict):
        return sum(_lists_in(item) for item in value.values())
    return 0
