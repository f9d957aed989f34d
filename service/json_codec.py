"""``POST /score`` and ``POST /compare``: JSON bytes to the core's inputs, its scores to bytes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np
import orjson
from pydantic import ValidationError

from fairloss.bootstrap import Bootstrap
from fairloss.breakdown import group_report
from fairloss.checks import KINDS, Kind
from fairloss.errors import InputError, path, text_fault
from fairloss.options import OPTION_NAMES, ScoringOptions
from fairloss.replicates import with_replicates
from fairloss.scoring import DEFAULT_OPTIONS, BatchScores, score_batch
from fairloss.slices import Column, check_bootstrap_keys, checked_groups
from fairloss.sums import rank
from fairloss.uncertainty import differences
from fairloss_wire.answers import scored
from fairloss_wire.typed_arrays import FLOATS, INTEGERS, decode, is_typed
from service.errors import field_errors, invalid, unknown_fields
from service.json_arrays import labels_array, may_hold_booleans, predictions_array, weights_array
from service.memory import Reserve, no_reserve, reserve_parsed
from service.payload import parse_reserved
from service.request_schemas import ResponseOptions
from service.resampling import (
    REQUEST_FIELDS,
    Resampling,
    parse_resampling,
    uncertainty,
)

RESPONSE_OPTIONS = tuple(ResponseOptions.model_fields)
DEFAULT_RESPONSE = ResponseOptions()
CANDIDATE = ("name", *KINDS)
GROUP_FIELDS = ("groups", "group_counts")


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
    given = {k: fields[k] for k in RESPONSE_OPTIONS if k in fields}
    try:
        response = ResponseOptions.model_validate(given) if given else DEFAULT_RESPONSE
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        raise field_errors(
            [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]
        ) from None
    given = {k: fields[k] for k in OPTION_NAMES if k in fields}
    if is_typed(given.get("class_weights")):  # an array field, so it may be typed too
        given["class_weights"] = decode(
            given["class_weights"], ["class_weights"], FLOATS, invalid
        ).tolist()
    return (ScoringOptions(**given) if given else DEFAULT_OPTIONS), response


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


def prediction(item: dict[str, Any], *loc: str | int) -> tuple[Kind, Any]:
    """Which of ``logits``, ``probabilities`` and ``log_probabilities`` ``item`` holds (exactly
    one of them), and its value."""
    given = [kind for kind in KINDS if item.get(kind) is not None]
    if len(given) == 1:
        return given[0], item[given[0]]
    if not given:
        where = path([*loc, "logits"])
        raise invalid(
            f"Field {where!r} is required (or 'probabilities' or 'log_probabilities' instead)",
            [*loc, "logits"],
            "missing",
        )
    raise invalid(
        "Expected exactly one of 'logits', 'probabilities' or 'log_probabilities', but got "
        + " and ".join(map(repr, given)),
        [*loc, given[1]],
        "conflicting_predictions",
    )


def _arrays(
    data: dict[str, Any], values: list[Any], body: bytes | bytearray
) -> tuple[bool, np.ndarray[Any, Any] | None]:
    """Whether lists may hide JSON booleans, and the sample weights if given."""
    weight = data.get("sample_weight")
    booleans = _lists_present([*values, weight]) and may_hold_booleans(body)
    return booleans, None if weight is None else weights_array(weight, may_hold_booleans=booleans)


def _groups(
    data: dict[str, Any], items: int, bootstrap: Bootstrap | None
) -> dict[str, Column] | None:
    """``groups``, each column a list of keys or a typed integer array, checked by the core
    (with a bootstrap, their number of keys too) before the memory they need is reserved."""
    value = data.get("groups")
    if value is None:
        return None
    if isinstance(value, dict):
        value = {
            name: decode(keys, ["groups", name], INTEGERS, invalid) if is_typed(keys) else keys
            for name, keys in value.items()
        }
    columns = checked_groups(value, items)
    if bootstrap is not None:
        check_bootstrap_keys(columns, bootstrap)
    return columns


def _keys(columns: dict[str, Column] | None) -> int:
    return 0 if columns is None else sum(len(column.keys) for column in columns.values())


def score_body(
    body: bytes | bytearray, default_device: str, max_elements: int, reserve: Reserve = no_reserve
) -> Reply:
    """``POST /score``: request bytes to response bytes. ``reserve(bytes)`` is asked for the
    memory a bootstrap needs besides the body's (`fairloss.replicates.replicates_bytes`)."""
    data = parse_reserved(body, reserve)
    options, response = parse_options(
        data, *KINDS, "labels", "sample_weight", *REQUEST_FIELDS, *GROUP_FIELDS
    )
    resampling = parse_resampling(data)
    kind, value = prediction(data)
    (labels_value,) = _required(data, "labels")
    booleans, weight = _arrays(data, [value, labels_value], body)
    predictions = predictions_array(
        value, [kind], max_elements=max_elements, may_hold_booleans=booleans
    )
    labels = labels_array(
        labels_value, predictions.shape[1], options.ignore_index, may_hold_booleans=booleans
    )
    bootstrap = resampling.bootstrap
    groups = _groups(data, labels.shape[0], bootstrap)
    reserve_parsed(
        reserve, labels.size, 1, bootstrap, labels.shape[0], options.ece_bins, _keys(groups)
    )
    batch = score_batch(
        predictions,
        labels,
        options,
        kind=kind,
        sample_weight=weight,
        default_device=default_device,
        bootstrap=resampling.bootstrap,
        row_offset=resampling.row_offset,
        per_class=response.per_class,
        groups=groups,
        group_counts=data.get("group_counts"),
    )
    result = _scored(batch, response, resampling)
    return Reply(_dumps(result), batch.n, batch.num_classes, batch.device)


def _scored(
    batch: BatchScores, response: ResponseOptions, resampling: Resampling
) -> dict[str, Any]:
    arrays = response.response_arrays
    body = scored(
        batch,
        per_sample=response.per_sample,
        extra_columns=tuple(response.extra_columns),
        arrays=arrays,
        replicate_sums=resampling.replicate_sums,
    )
    body = uncertainty(body, batch.sums, resampling, arrays)
    if batch.sums.groups is not None:
        bootstrap = resampling.bootstrap
        body["groups"] = group_report(
            batch.sums.groups,
            batch.sums,
            batch.options.reduction,
            batch.weighted,
            None if bootstrap is None else bootstrap.confidence_level,
        )
    return body


def _candidates(value: Any) -> list[tuple[str, Kind, Any]]:
    if not isinstance(value, list) or not value:
        raise invalid(
            "Expected candidates to be a non-empty array of {name, logits} objects",
            ["candidates"],
            "not_an_array",
        )
    named: list[tuple[str, Kind, Any]] = []
    for k, item in enumerate(value):
        if not isinstance(item, dict):
            raise invalid(
                f"Expected candidates[{k}] to be an object with 'name' and 'logits'",
                ["candidates", k],
                "bad_candidate",
            )
        if "name" not in item:
            raise field_errors(
                [{"loc": ["candidates", k, "name"], "msg": "Field required", "type": "missing"}]
            )
        unknown_fields(item, CANDIDATE, "candidates", k)
        kind, value = prediction(item, "candidates", k)
        name = item["name"]
        if not isinstance(name, str) or not name:
            raise invalid(
                f"Expected candidates[{k}].name to be a non-empty string",
                ["candidates", k, "name"],
                "bad_name",
            )
        if (fault := text_fault(name)) is not None:  # the answer echoes every name
            raise invalid(
                f"Expected candidates[{k}].name to be text, but {fault}",
                ["candidates", k, "name"],
                "bad_name",
            )
        if any(name == seen for seen, _, _ in named):
            raise invalid(
                f"Candidate names must be unique, but {name!r} appears twice",
                ["candidates", k, "name"],
                "duplicate_name",
            )
        named.append((name, kind, value))
    return named


def _shape(shape: tuple[int, ...]) -> str:
    return " x ".join(map(str, shape))


def compare_body(
    body: bytes | bytearray, default_device: str, max_elements: int, reserve: Reserve = no_reserve
) -> Reply:
    """``POST /compare``: request bytes to response bytes; ``reserve`` as for `score_body`."""
    data = parse_reserved(body, reserve)
    named = _candidates(data.get("candidates"))
    options, response = parse_options(
        data, "labels", "candidates", "sample_weight", *REQUEST_FIELDS, *GROUP_FIELDS
    )
    resampling = parse_resampling(data)
    (labels_value,) = _required(data, "labels")
    booleans, weight = _arrays(data, [labels_value, *(value for _, _, value in named)], body)
    used = 0
    arrays: list[np.ndarray[Any, Any]] = []
    for k, (_, kind, value) in enumerate(named):
        loc: list[str | int] = ["candidates", k, kind]
        array = predictions_array(
            value, loc, max_elements=max_elements, may_hold_booleans=booleans, used=used
        )
        if arrays and array.shape != arrays[0].shape:
            raise invalid(
                f"Every candidate must have one shape: candidates[{k}] is {_shape(array.shape)}, "
                f"candidates[0] is {_shape(arrays[0].shape)}",
                loc,
                "shape_mismatch",
            )
        used += array.size
        arrays.append(array)
    labels = labels_array(
        labels_value, arrays[0].shape[1], options.ignore_index, may_hold_booleans=booleans
    )
    groups = _groups(data, labels.shape[0], resampling.bootstrap)
    reserve_parsed(
        reserve,
        labels.size,
        len(arrays),
        resampling.bootstrap,
        labels.shape[0],
        options.ece_bins,
        _keys(groups),
    )
    batches: dict[str, BatchScores] = {}
    for k, ((name, kind, _), array) in enumerate(zip(named, arrays, strict=True)):
        try:
            batches[name] = score_batch(
                array,
                labels,
                options,
                kind=kind,
                sample_weight=weight,
                default_device=default_device,
                violations=True,
                per_class=response.per_class,
                groups=groups,
                group_counts=data.get("group_counts"),
            )
        except InputError as error:
            raise (error.within("candidates", k) if error.loc[:1] == (kind,) else error) from None
    if resampling.bootstrap is not None:  # one draw of weights for all candidates: paired
        bootstrapped = with_replicates(
            list(batches.values()), resampling.bootstrap, resampling.row_offset
        )
        batches = dict(zip(batches, bootstrapped, strict=True))
    results = [
        {"name": name, **_scored(batch, response, resampling)} for name, batch in batches.items()
    ]
    ranking = rank({name: batch.sums for name, batch in batches.items()})
    first = next(iter(batches.values()))
    answer: dict[str, Any] = {"candidates": results, "ranking": ranking}
    if resampling.bootstrap is not None:
        answer["differences"] = differences(
            list(batches),
            [batch.sums for batch in batches.values()],
            [batch.columns["correct"] for batch in batches.values()],
            first.columns["counted"],
            resampling.bootstrap.confidence_level,
        )
    return Reply(_dumps(answer), first.n, first.num_classes, first.device)
