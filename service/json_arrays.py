"""JSON arrays to numpy: nested lists (or the fast path's arrays) converted in one step.

numpy converts each array at once; a Python walk runs only to say where a bad element is, or
when the body holds a JSON ``true``/``false`` that numpy would have taken for a number. The
values themselves (finite, in range, shapes that fit together) are checked by the core
(`fairloss.checks`); here only what JSON can get wrong: nesting, and what each leaf is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from fairloss.checks import check_shape, label_out_of_range
from fairloss.errors import InputError, describe, path
from fairloss_wire.typed_arrays import FLOATS, INTEGERS, KEYS, decode, is_typed, typed_shape
from service.errors import invalid

Loc = list[str | int]
# How to score more rows than one request holds; said with every 413 and element-limit error.
SEND_MORE = (
    "the Python client (Client, in the fairloss_client package) splits any number of rows into "
    "requests under this server's limits"
)


def _is_number(value: object) -> bool:
    return type(value) is float or type(value) is int


def _is_label(value: object) -> bool:
    return type(value) is int or _integer_past_64_bits(value)


def _first_shape(value: Any) -> list[int]:
    """The shape the first elements spell: ``[[1, 2], [3]]`` -> ``[2, 2]``."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        value = value[0] if value else None
    return shape


def _fault(value: Any, loc: Loc, leaf: Callable[[object], bool], what: str) -> InputError:
    """The first place where ``value`` is not a regular array of ``what``."""
    items = _PLURALS[what]
    shape = _first_shape(value)
    pending: list[tuple[Any, Loc]] = [(value, loc)]
    while pending:
        node, at = pending.pop()
        depth = len(at) - len(loc)
        if depth < len(shape):
            if not isinstance(node, list):
                return invalid(
                    f"Expected {path(at)} to be an array of {items}, but got {describe(node)}",
                    at,
                    "not_a_row",
                )
            if len(node) != shape[depth]:
                first = "row 0" if depth == 1 else path([*loc, *[0] * depth])
                return invalid(
                    f"Ragged rows: {path(at)} has {len(node)} {items}, {first} has {shape[depth]}",
                    at,
                    "ragged_row",
                )
            pending.extend((item, [*at, k]) for k, item in reversed(list(enumerate(node))))
        elif not leaf(node):
            article = "an integer class label" if what == "label" else f"a {what}"
            return invalid(
                f"Expected {article} at {path(at)}, but got {describe(node)}", at, _kinds[what]
            )
    return invalid(f"Expected {path(loc)} to be an array of {items}", loc, "bad_shape")


_kinds = {"number": "not_a_number", "label": "not_an_integer"}
_PLURALS = {"number": "numbers", "label": "integers"}


def holds_a_boolean(value: Any) -> bool:
    """Whether nested lists hold a JSON ``true``/``false`` among their leaves."""
    pending = [value]
    while pending:
        node = pending.pop()
        if isinstance(node, list):
            pending.extend(node)
        elif type(node) is bool:
            return True
    return False


def _typed(value: Any, loc: Loc, items: str) -> bool:
    """Whether ``value`` is a typed array; an object with none of its keys is no array at all."""
    if not is_typed(value):
        return False
    if not any(key in value for key in KEYS):
        raise invalid(
            f"Expected {path(loc)} to be an array of {items}, or a typed array "
            "{dtype, shape, data}",
            loc,
            "not_an_array",
        )
    return True


def _convert(
    value: Any, loc: Loc, kinds: str, leaf: Callable[[object], bool], what: str, booleans: bool
) -> np.ndarray[Any, Any]:
    if not isinstance(value, list):
        raise invalid(
            f"Expected {path(loc)} to be an array of {_PLURALS[what]}", loc, "not_an_array"
        )
    try:
        array = np.asarray(value)
    except ValueError:  # ragged: numpy will not build it
        raise _fault(value, loc, leaf, what) from None
    if array.dtype.kind not in kinds or (booleans and holds_a_boolean(value)):
        raise _fault(value, loc, leaf, what)
    return array


def predictions_array(
    value: Any, loc: Loc, *, max_elements: int, may_hold_booleans: bool, used: int = 0
) -> np.ndarray[Any, Any]:
    """(N, C) or (N, C, d1, ..., dk) floats, or (N) binary scores (float64 from JSON lists, a
    typed array's own dtype otherwise), within ``max_elements``.

    ``value`` is the parsed JSON (lists), or an array from the fast path (`service.fastjson`).
    """
    if _typed(value, loc, "rows"):
        shape = typed_shape(value, loc, invalid)
        _check_shape(shape, loc)
        element_limit(shape, max_elements, loc, used)
        value = decode(value, loc, FLOATS, invalid)
    if not isinstance(value, np.ndarray):
        if not isinstance(value, list):
            raise invalid(f"Expected {path(loc)} to be an array of rows", loc, "not_an_array")
        shape = _first_shape(value)
        _check_shape(shape, loc)
        element_limit(shape, max_elements, loc, used)
        value = _convert(value, loc, "fiu", _is_number, "number", may_hold_booleans)
    _check_shape(list(value.shape), loc)
    element_limit(value.shape, max_elements, loc, used)
    array: np.ndarray[Any, Any] = value
    if value.dtype.kind != "f":  # a typed array's own float dtype stays: the core widens it
        array = value.astype(np.float64)
    return array


def _check_shape(shape: list[int], loc: Loc) -> None:
    try:
        check_shape(tuple(shape), str(loc[-1]))
    except InputError as error:
        raise error.within(*loc[:-1]) from None


def labels_array(
    value: Any, num_classes: int, ignore_index: int | None, *, may_hold_booleans: bool
) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Integer labels as int64, of any shape; their range and shape are checked by the core,
    except for integers past int64, which are out of range here, worded as the core words it."""
    if _typed(value, ["labels"], "integers"):
        value = decode(value, ["labels"], INTEGERS, invalid)
    if isinstance(value, np.ndarray):
        return value.astype(np.int64, copy=False)
    array = _convert(value, ["labels"], "iuOf", _is_label, "label", may_hold_booleans)
    if array.dtype.kind != "i":  # floats, Python ints past int64, or uint64: read the leaves
        for at, label in _leaves(value):
            if not _is_label(label):
                raise _fault(value, ["labels"], _is_label, "label")
            if type(label) is float or not -(2**63) <= label < 2**63:
                raise label_out_of_range(at, label, num_classes, ignore_index)
    return array.astype(np.int64, copy=False)


def _leaves(value: Any) -> Iterator[tuple[tuple[int, ...], Any]]:
    """Each leaf of nested lists with its index, in row-major order."""
    if not isinstance(value, list):
        yield (), value
        return
    for k, item in enumerate(value):
        for at, leaf in _leaves(item):
            yield (k, *at), leaf


def weights_array(value: Any, *, may_hold_booleans: bool) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Sample weights as float64 numbers, of any shape (the core checks shape and values)."""
    if _typed(value, ["sample_weight"], "numbers"):
        value = decode(value, ["sample_weight"], FLOATS, invalid)
    if isinstance(value, np.ndarray):
        return value.astype(np.float64, copy=False)
    array = _convert(value, ["sample_weight"], "fiu", _is_number, "number", may_hold_booleans)
    return array.astype(np.float64, copy=False)


def element_limit(shape: Sequence[int], limit: int, loc: Loc, used: int = 0) -> None:
    """An error at ``loc`` when an array of ``shape``, after ``used`` elements of the same
    request, takes the request past ``limit`` elements."""
    count = math.prod(shape)
    if used + count > limit:
        sizes = " x ".join(map(str, shape))
        before = f" after {used} in the arrays before it" if used else ""
        raise invalid(
            f"{sizes} = {count} elements{before} is more than this server's limit of {limit}. "
            f"To send more: {SEND_MORE}; or raise FAIRLOSS_MAX_ELEMENTS on the server.",
            loc,
            "too_many_elements",
        )


def _integer_past_64_bits(value: object) -> bool:
    """Whether ``value`` is what the JSON parser makes of an integer literal past 64 bits: orjson
    keeps integers in [-2**63, 2**64) as ints and gives a float, rounded to at or past those
    bounds, for any other. Such a label is out of range, not "not an integer"."""
    return type(value) is float and value.is_integer() and not -(2**63) < value < 2**64


def may_hold_booleans(body: bytes | bytearray) -> bool:
    """Whether a JSON ``true``/``false`` may be in ``body`` (numpy would read it as 1/0)."""
    return b"true" in body or b"false" in body
