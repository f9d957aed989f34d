"""``POST /score`` and ``POST /compare``: JSON bytes to the core's inputs, its scores to bytes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np
import orjson
from pydantic import ValidationError

from fairloss.errors import InputError
from fairloss.metrics import rank
from fairloss.options import OPTION_NAMES, ScoringOptions
from fairloss.scoring import BatchScores, score_batch
from service.errors import field_errors, invalid, unknown_fields
from service.payload import labels_array, logits_array, may_hold_booleans, parse_object
from service.schemas import ResponseOptions
from service.wire import scored

RESPONSE_OPTIONS = tuple(ResponseOptions.model_fields)
CANDIDATE = ("name", "logits")


class Reply(NamedTuple):
    """A response body, and what the access log and metrics note about the batch."""

    body: bytes
    n: int
    num_classes: int
    device: str


def parse_options(fields: dict[str, Any], *arrays: str) -> tuple[ScoringOptions, ResponseOptions]:
    """The request's scoring and response options; every field that is neither, nor one of
    ``arrays``, is refused by name."""
    unknown_fields(fields, {*OPTION_NAMES, *RESPONSE_OPTIONS, *arrays})
    try:
        response = ResponseOptions.model_validate(
            {k: fields[k] for k in RESPONSE_OPTIONS if k in fields}
        )
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        raise field_errors(
            [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]
        ) from None
    return ScoringOptions(**{k: fields[k] for k in OPTION_NAMES if k in fields}), response


def _dumps(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def _lists_present(values: Iterable[Any]) -> bool:
    """Whether an array came as lists (the general path), which may hide JSON booleans."""
    return any(isinstance(value, list) for value in values)


def _required(data: dict[str, Any], *names: str) -> list[Any]:
    for name in names:
        if data.get(name) is None:
            raise invalid(f"Field {name!r} is required", [name], "missing")
    return [data[name] for name in names]


def score_body(body: bytes | bytearray, default_device: str, max_elements: int) -> Reply:
    """``POST /score``: request bytes to response bytes."""
    data = parse_object(body)
    options, response = parse_options(data, "logits", "labels")
    value, labels_value = _required(data, "logits", "labels")
    booleans = _lists_present([value, labels_value]) and may_hold_booleans(body)
    logits = logits_array(
        value,
        ["logits"],
        max_elements=max_elements,
        may_hold_booleans=booleans,
    )
    labels = labels_array(
        labels_value,
        logits.shape[0],
        logits.shape[1],
        options.ignore_index,
        may_hold_booleans=booleans,
    )
    batch = score_batch(logits, labels, options, default_device=default_device)
    result = scored(
        batch, per_sample=response.per_sample, extra_columns=tuple(response.extra_columns)
    )
    return Reply(_dumps(result), batch.n, batch.num_classes, batch.device)


def _candidates(value: Any) -> list[tuple[str, Any]]:
    if not isinstance(value, list) or not value:
        raise invalid(
            "Expected candidates to be a non-empty array of {name, logits} objects",
            ["candidates"],
            "not_an_array",
        )
    named: list[tuple[str, Any]] = []
    for k, item in enumerate(value):
        if not isinstance(item, dict):
            raise invalid(
                f"Expected candidates[{k}] to be an object with 'name' and 'logits'",
                ["candidates", k],
                "bad_candidate",
            )
        missing = [
            {"loc": ["candidates", k, key], "msg": "Field required", "type": "missing"}
            for key in CANDIDATE
            if key not in item
        ]
        if missing:
            raise field_errors(missing)
        unknown_fields(item, CANDIDATE, "candidates", k)
        name = item["name"]
        if not isinstance(name, str) or not name:
            raise invalid(
                f"Expected candidates[{k}].name to be a non-empty string",
                ["candidates", k, "name"],
                "bad_name",
            )
        if any(name == seen for seen, _ in named):
            raise invalid(
                f"Candidate names must be unique, but {name!r} appears twice",
                ["candidates", k, "name"],
                "duplicate_name",
            )
        named.append((name, item["logits"]))
    return named


def compare_body(body: bytes | bytearray, default_device: str, max_elements: int) -> Reply:
    """``POST /compare``: request bytes to response bytes."""
    data = parse_object(body)
    named = _candidates(data.get("candidates"))
    options, response = parse_options(data, "labels", "candidates")
    (labels_value,) = _required(data, "labels")
    values = [labels_value, *(logits for _, logits in named)]
    booleans = _lists_present(values) and may_hold_booleans(body)
    budget = max_elements
    arrays: list[np.ndarray[Any, Any]] = []
    for k, (_, value) in enumerate(named):
        logits = logits_array(
            value,
            ["candidates", k, "logits"],
            max_elements=budget,
            may_hold_booleans=booleans,
        )
        if arrays and logits.shape != arrays[0].shape:
            raise invalid(
                f"Every candidate must have one shape: candidates[{k}] is "
                f"{logits.shape[0]} x {logits.shape[1]}, candidates[0] is "
                f"{arrays[0].shape[0]} x {arrays[0].shape[1]}",
                ["candidates", k, "logits"],
                "shape_mismatch",
            )
        budget -= logits.size
        arrays.append(logits)
    n, num_classes = arrays[0].shape
    labels = labels_array(
        labels_value, n, num_classes, options.ignore_index, may_hold_booleans=booleans
    )
    batches: dict[str, BatchScores] = {}
    for k, ((name, _), logits) in enumerate(zip(named, arrays, strict=True)):
        try:
            batches[name] = score_batch(
                logits, labels, options, default_device=default_device, violations=True
            )
        except InputError as error:
            raise (
                error.within("candidates", k) if error.loc[:1] == ("logits",) else error
            ) from None
    results = [
        {
            "name": name,
            **scored(
                batch, per_sample=response.per_sample, extra_columns=tuple(response.extra_columns)
            ),
        }
        for name, batch in batches.items()
    ]
    ranking = rank({name: batch.sums for name, batch in batches.items()})
    first = next(iter(batches.values()))
    return Reply(_dumps({"candidates": results, "ranking": ranking}), n, num_classes, first.device)
