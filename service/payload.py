"""From request bytes to checked arrays: size and media type, JSON, then vectorised checks.

Big batches are the normal case, so arrays are never validated element by element in Python:
numpy converts each array in one step and the checks run on the result. A Python scan runs only
to say where a bad element is, or when the body holds a JSON ``true``/``false`` that numpy would
have taken for a number.
"""

from __future__ import annotations

import gc
import json
import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import orjson
from starlette.requests import Request

from fairloss.errors import InputError, describe, path
from fairloss.scoring import check_shape, label_out_of_range
from service.errors import ProblemError, invalid
from service.fastjson import parse_fast
from service.wire import header_int

Loc = list[str | int]


def require_json(request: Request) -> None:
    """Raise a 415 unless the body is declared as JSON (or not declared at all)."""
    content_type = request.headers.get("content-type")
    if content_type is None:
        return
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    ):
        return
    raise ProblemError(
        415,
        "Unsupported media type",
        f"This endpoint takes application/json, not {media or 'an empty media type'}.",
    )


# How to score more rows than one request holds; said with every 413 and element-limit 422.
SEND_MORE = (
    "the Python client (Client, in the fairloss_client package) splits any number of rows into "
    "requests under this server's limits"
)


def too_large(limit: int) -> ProblemError:
    return ProblemError(
        413,
        "Content too large",
        f"The request body is larger than the limit of {limit} bytes. To send more: {SEND_MORE}; "
        "binary tensors through the Open Inference Protocol (POST /v2/models/fairloss/infer) "
        "take 4 bytes a float32 logit, against about 20 as JSON text; or raise "
        "FAIRLOSS_MAX_BODY_BYTES on the server.",
    )


async def read_body(request: Request, limit: int) -> bytearray:
    """The whole body, counted as it streams in (chunked bodies too); a 413 past ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        length = header_int(declared)
        if length is None:
            raise ProblemError(400, "Bad request", "Content-Length is not a number.")
        if length > limit:
            raise too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large(limit)
    return body


_parsing = 0
_parsing_lock = threading.Lock()


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No garbage collection while any thread parses: a big body's many lists hold no cycles,
    and collections triggered by their allocation made ``orjson.loads`` a third slower."""
    global _parsing
    with _parsing_lock:
        _parsing += 1
        gc.disable()
    try:
        yield
    finally:
        with _parsing_lock:
            _parsing -= 1
            if _parsing == 0:
                gc.enable()


def parse_object(body: bytes | bytearray) -> dict[str, Any]:
    """Parse a JSON object; NaN and Infinity literals parse, to be refused later with a 422.

    Numeric ``logits`` and ``labels`` come back as numpy arrays when the fast path
    (`service.fastjson`) can take the body, and as lists otherwise.
    """
    fast = parse_fast(body)
    if fast is not None:
        return fast
    try:
        with _collector_paused():
            data = orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            data = json.loads(_utf8_text(body))
        except (ValueError, RecursionError) as exc:
            raise ProblemError(
                400, "Bad request", f"The body is not valid JSON: {_first_line(exc)}"
            ) from None
    if not isinstance(data, dict):
        raise ProblemError(400, "Bad request", "The body must be a JSON object.")
    return data


def _utf8_text(body: bytes | bytearray) -> str:
    """The body as UTF-8 text (a leading byte order mark is allowed, as RFC 8259 permits), for
    the general parser; ``json.loads`` given bytes would guess UTF-16 or UTF-32 instead."""
    try:
        text = bytes(body).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ProblemError(
            400,
            "Bad request",
            f"The body is not UTF-8: byte {exc.start} is 0x{body[exc.start]:02x}. "
            "Send JSON encoded as UTF-8.",
        ) from None
    if "\x00" in text:
        raise ProblemError(
            400,
            "Bad request",
            "The body is not UTF-8 JSON: it holds NUL bytes, as UTF-16 and UTF-32 text does. "
            "Send JSON encoded as UTF-8.",
        )
    return text


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _is_number(value: object) -> bool:
    return type(value) is float or type(value) is int


def _first_non_number(rows: list[Any], loc: Loc) -> InputError | None:
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            if not _is_number(value):
                return invalid(
                    f"Expected a number at {path([*loc, i, j])}, but got {describe(value)}",
                    [*loc, i, j],
                    "not_a_number",
                )
    return None


def _ragged(rows: list[Any], width: int, loc: Loc) -> InputError:
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            return invalid(
                f"Expected {path([*loc, i])} to be an array of numbers, but got {describe(row)}",
                [*loc, i],
                "not_a_row",
            )
        if len(row) != width:
            return invalid(
                f"Ragged rows: {path([*loc, i])} has {len(row)} numbers, row 0 has {width}",
                [*loc, i],
                "ragged_row",
            )
    return _first_non_number(rows, loc) or invalid(
        f"Expected {path(loc)} to be an N x C array of numbers", loc, "bad_shape"
    )


def logits_array(
    value: Any, loc: Loc, *, max_elements: int, may_hold_booleans: bool
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """An N x C float64 array, N x C within ``max_elements``; its values are checked by the
    core (`fairloss.scoring`), which also words a bad shape.

    ``value`` is the parsed JSON (lists), or an array from the fast path (`service.fastjson`).
    """
    if isinstance(value, np.ndarray):
        rows, width = value.shape
    elif not isinstance(value, list):
        raise invalid(f"Expected {path(loc)} to be an array of rows", loc, "not_an_array")
    elif value and not isinstance(value[0], list):
        raise _ragged(value, 0, loc)
    else:
        rows, width = len(value), len(value[0]) if value else 0
    try:
        check_shape((rows, width))
    except InputError as error:
        raise error.within(*loc[:-1]) from None
    element_limit((rows, width), max_elements, loc)
    if isinstance(value, np.ndarray):
        return value
    return _matrix(value, width, loc, may_hold_booleans)


def element_limit(shape: Sequence[int], limit: int, loc: Loc) -> None:
    """An error at ``loc`` when an array of ``shape`` holds more than ``limit`` elements."""
    count = math.prod(shape)
    if count > limit:
        sizes = " x ".join(map(str, shape))
        raise invalid(
            f"{sizes} = {count} elements is more than this server's limit of {limit}. "
            f"To send more: {SEND_MORE}; or raise FAIRLOSS_MAX_ELEMENTS on the server.",
            loc,
            "too_many_elements",
        )


def _matrix(
    rows: list[Any], width: int, loc: Loc, may_hold_booleans: bool
) -> np.ndarray[Any, np.dtype[np.float64]]:
    try:
        array = np.asarray(rows)
    except ValueError:
        raise _ragged(rows, width, loc) from None
    if array.ndim != 2 or array.dtype.kind not in "fiu":
        raise _ragged(rows, width, loc)
    if may_hold_booleans and (problem := _first_non_number(rows, loc)):
        raise problem
    return array.astype(np.float64, copy=False)


def labels_array(
    value: Any, n: int, num_classes: int, ignore_index: int | None, *, may_hold_booleans: bool
) -> np.ndarray[Any, np.dtype[np.int64]]:
    """N integer labels as int64; their range is checked by the core (`fairloss.scoring`),
    except for integers past int64, which are out of range here, worded as the core words it."""
    loc: Loc = ["labels"]
    if not isinstance(value, list | np.ndarray):
        raise invalid("Expected labels to be an array of integers", loc, "not_an_array")
    if len(value) != n:
        raise invalid(f"Expected {n} labels, one per row, but got {len(value)}", loc, "bad_length")
    try:
        array = np.asarray(value)
    except ValueError:
        array = np.asarray([None])
    if (
        array.ndim != 1
        or array.dtype.kind not in "iu"
        or (isinstance(value, list) and may_hold_booleans)
    ):
        for k, label in enumerate(value):
            if type(label) is not int and not _integer_past_64_bits(label):
                raise invalid(
                    f"Expected an integer class label at labels[{k}], but got {describe(label)}",
                    [*loc, k],
                    "not_an_integer",
                )
    if array.dtype.kind != "i":  # uint64 past int64, or Python ints and floats past 64 bits
        past = [
            k
            for k, label in enumerate(value)
            if type(label) is float or not -(2**63) <= label < 2**63
        ]
        if past:
            raise label_out_of_range(past[0], value[past[0]], num_classes, ignore_index)
    return array.astype(np.int64, copy=False)


def _integer_past_64_bits(value: object) -> bool:
    """Whether ``value`` is what the JSON parser makes of an integer literal past 64 bits: orjson
    keeps integers in [-2**63, 2**64) as ints and gives a float, rounded to at or past those
    bounds, for any other. Such a label is out of range, not "not an integer"."""
    return type(value) is float and value.is_integer() and not -(2**63) < value < 2**64


def may_hold_booleans(body: bytes | bytearray) -> bool:
    """Whether a JSON ``true``/``false`` may be in ``body`` (numpy would read it as 1/0)."""
    return b"true" in body or b"false" in body
