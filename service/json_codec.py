"""``POST /score`` and ``POST /compare``: JSON bytes to the core's inputs, its scores to bytes."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import orjson

from fairloss.breakdown import group_report
from fairloss.checks import KINDS, num_classes, scored_shape
from fairloss.errors import InputError
from fairloss.replicates import with_replicates
from fairloss.scoring import BatchScores, score_batch
from fairloss.sums import rank
from fairloss.uncertainty import differences
from fairloss_wire.answers import scored
from service.errors import invalid
from service.json_arrays import labels_array, predictions_array
from service.json_fields import (
    GROUP_FIELDS,
    arrays_of,
    candidates_of,
    groups_of,
    keys_of,
    parse_options,
    prediction,
    required,
)
from service.memory import Reserve, no_reserve, reserve_parsed
from service.payload import parse_reserved
from service.request_schemas import ResponseOptions
from service.resampling import (
    REQUEST_FIELDS,
    Resampling,
    parse_resampling,
    uncertainty,
)


class Reply(NamedTuple):
    """A response body, and what the access log and metrics note about the batch."""

    body: bytes
    n: int
    num_classes: int
    device: str


def _dumps(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


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
    (labels_value,) = required(data, "labels")
    booleans, weight = arrays_of(data, [value, labels_value], body)
    predictions = predictions_array(
        value, [kind], max_elements=max_elements, may_hold_booleans=booleans
    )
    labels = labels_array(
        labels_value,
        num_classes(predictions.shape),
        options.ignore_index,
        may_hold_booleans=booleans,
    )
    bootstrap = resampling.bootstrap
    groups = groups_of(data, labels.shape[0], bootstrap, options.ece_bins)
    reserve_parsed(
        reserve,
        labels.size,
        1,
        bootstrap,
        labels.shape[0],
        options.ece_bins,
        keys_of(groups),
        resampling.replicate_sums,
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


def _shape(shape: tuple[int, ...]) -> str:
    return " x ".join(map(str, shape))


def compare_body(
    body: bytes | bytearray, default_device: str, max_elements: int, reserve: Reserve = no_reserve
) -> Reply:
    """``POST /compare``: request bytes to response bytes; ``reserve`` as for `score_body`."""
    data = parse_reserved(body, reserve)
    named = candidates_of(data.get("candidates"))
    options, response = parse_options(
        data, "labels", "candidates", "sample_weight", *REQUEST_FIELDS, *GROUP_FIELDS
    )
    resampling = parse_resampling(data)
    (labels_value,) = required(data, "labels")
    booleans, weight = arrays_of(data, [labels_value, *(value for _, _, value in named)], body)
    used = 0
    arrays: list[np.ndarray[Any, Any]] = []
    for k, (_, kind, value) in enumerate(named):
        loc: list[str | int] = ["candidates", k, kind]
        array = predictions_array(
            value, loc, max_elements=max_elements, may_hold_booleans=booleans, used=used
        )
        if arrays and scored_shape(array.shape) != scored_shape(arrays[0].shape):
            raise invalid(
                f"Every candidate must have one shape: candidates[{k}] is {_shape(array.shape)}, "
                f"candidates[0] is {_shape(arrays[0].shape)}",
                loc,
                "shape_mismatch",
            )
        used += array.size
        arrays.append(array)
    labels = labels_array(
        labels_value, num_classes(arrays[0].shape), options.ignore_index, may_hold_booleans=booleans
    )
    groups = groups_of(data, labels.shape[0], resampling.bootstrap, options.ece_bins)
    reserve_parsed(
        reserve,
        labels.size,
        len(arrays),
        resampling.bootstrap,
        labels.shape[0],
        options.ece_bins,
        keys_of(groups),
        resampling.replicate_sums,
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
