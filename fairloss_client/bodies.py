"""Request bodies: the checked options as JSON fields, and each chunk's arrays (typed base64
arrays by default). Sans-IO, like `fairloss_client.plan`."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import orjson
import pybase64

from fairloss.bootstrap import Bootstrap
from fairloss.checks import KINDS, scored_shape
from fairloss.metrics import CRITERIA
from fairloss.options import OPTION_NAMES, ScoringOptions
from fairloss.slices import Column, checked_groups, work_rows
from fairloss_client.arrays import Array, ArrayLike, as_labels, as_numpy, as_predictions, as_weights
from fairloss_wire.answers import EXTRA_COLUMNS
from fairloss_wire.typed_arrays import NAMES


def typed_array(array: Array) -> dict[str, Any]:
    """``array`` (float32/64 or int64, any shape) as a typed array of `fairloss_wire.typed_arrays`,
    whose base64 text orjson copies into the body as it is (an `orjson.Fragment`: base64 needs
    no escaping), written by pybase64 straight from the array's buffer. Against a ``str`` in
    the object this saves two copies of the text and orjson's scan of it: a 300,000 x 100
    float32 body took 0.15 s to encode that way, 0.06 s this way."""
    wire = np.ascontiguousarray(array, array.dtype.newbyteorder("<"))
    text = orjson.Fragment(b'"' + pybase64.b64encode(wire.data) + b'"')
    return {"dtype": NAMES[wire.dtype], "shape": list(wire.shape), "data": text}


def option_fields(
    options: ScoringOptions,
    per_sample: bool,
    extra_columns: Sequence[str],
    *,
    compare: bool,
    typed: bool = True,
) -> dict[str, Any]:
    """The JSON fields for ``options``; `compare` asks for every column a criterion needs;
    ``typed`` asks for the columns as typed arrays."""
    body: dict[str, Any] = {k: v for k, v in asdict(options).items() if v is not None}
    columns = list(extra_columns)
    if compare:
        if not per_sample:
            raise ValueError("compare needs the per-sample columns to count violations")
        columns += [c for c in CRITERIA if c in EXTRA_COLUMNS and c not in columns]
    arrays = "base64" if typed else "json"
    return {**body, "per_sample": per_sample, "extra_columns": columns, "response_arrays": arrays}


def request_fields(
    options: dict[str, Any],
    per_sample: bool,
    extra_columns: Sequence[str],
    compare: bool,
    typed: bool,
    bootstrap: Bootstrap | Mapping[str, Any] | None = None,
    per_class: bool = False,
) -> dict[str, Any]:
    """Keyword arguments to JSON fields, checked here first (unknown names: TypeError; bad
    values: `fairloss.InputError`) so that no request is sent for them. With a ``bootstrap``,
    each chunk asks for its replicate sums, to be merged."""
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise TypeError(
            f"score() and compare() got the unknown keyword {', '.join(map(repr, unknown))}; "
            "they take kind, sample_weight, bootstrap, per_sample, extra_columns, per_class "
            f"and the scoring options {', '.join(OPTION_NAMES)} (progress, concurrency, retry "
            "and the like are Client(...)'s)"
        )
    weights = options.get("class_weights")
    if weights is not None:  # numpy arrays and tensors too
        options = {**options, "class_weights": as_numpy(weights).astype(float).tolist()}
    checked = ScoringOptions(**options)
    fields = option_fields(checked, per_sample, extra_columns, compare=compare, typed=typed)
    if per_class:
        fields["per_class"] = True
    if bootstrap is not None:
        resample = bootstrap if isinstance(bootstrap, Bootstrap) else Bootstrap(**bootstrap)
        fields["bootstrap"] = {**asdict(resample), "replicate_sums": True}
    return fields


def _offset(rows: slice | Array, fields: dict[str, Any]) -> dict[str, Any]:
    """``row_offset``, the chunk's first item in the dataset, when bootstrapping."""
    if "bootstrap" not in fields:
        return {}
    return {"row_offset": rows.start if isinstance(rows, slice) else 0}


@dataclass(frozen=True)
class Request:
    """One call's items (the first axis): ``body(rows)`` is the JSON object for a slice."""

    path: str
    n: int
    row_elements: int
    body: Callable[[slice | Array], dict[str, Any]]
    min_rows: int = 1
    """Rows a chunk should hold at least (within the limits): with ``per_class`` every answer
    carries arrays of length C, which a chunk of `CLASS_ROWS` rows outweighs many times."""
    max_rows: int = 2**62
    """Rows a chunk may hold at most: with a bootstrap over group keys, the work a request may
    hold (`fairloss.slices.work_rows`)."""


@dataclass(frozen=True)
class Inputs:
    """Checked arrays: the labels, the sample weights (or None), and how to send an array."""

    labels: Array
    weights: Array | None
    typed: bool
    groups: dict[str, Column] | None = None
    keys: dict[str, Array] | None = None

    def send(self, array: Array) -> Any:
        """An array as the JSON body holds it: a typed array, or nested lists."""
        return typed_array(array) if self.typed else array

    def predictions(self, array: Array) -> Any:
        """Predictions as the body holds them; as JSON numbers, a log-probability of -inf (which
        JSON cannot hold) as the float's lowest, which the service clips to the same value."""
        if self.typed or not np.isneginf(array).any():
            return self.send(array)
        return self.send(np.maximum(array, np.finfo(array.dtype).min))

    def fields(self, rows: slice | Array) -> dict[str, Any]:
        fields = {"labels": self.send(self.labels[rows])}
        if self.weights is not None:
            fields["sample_weight"] = self.send(self.weights[rows])
        if self.keys is not None:  # strings as lists, integers as lists or typed arrays
            fields["groups"] = {
                name: self.send(keys[rows]) if keys.dtype == np.int64 else keys[rows].tolist()
                for name, keys in self.keys.items()
            }
        return fields


def _inputs(
    labels: ArrayLike,
    weights: ArrayLike | None,
    shape: tuple[int, ...],
    typed: bool,
    groups: Mapping[str, Any] | None = None,
) -> Inputs:
    y = as_labels(labels, shape)
    w = None if weights is None else as_weights(weights, y.shape)
    if groups is None:
        return Inputs(y, w, typed)
    columns = checked_groups(_listed(groups), y.shape[0])
    keys = {
        name: np.asarray(c.keys, dtype=np.int64 if isinstance(c.keys[0], int) else object)[c.codes]
        for name, c in columns.items()
    }
    return Inputs(y, w, typed, columns, keys)


def _listed(groups: Mapping[str, Any]) -> Any:
    """Group columns as the core checks them: lists as they are, anything else (numpy and
    pandas columns, tuples, tensors) as a numpy array, whose keys the core reads."""
    if not isinstance(groups, Mapping):
        return groups
    return {
        name: keys if isinstance(keys, list) else np.asarray(keys) for name, keys in groups.items()
    }


def group_counts(inputs: Inputs) -> dict[str, Any] | None:
    """The whole dataset's count of each key, sent with every chunk of a bootstrapped call so
    that each key's slice-versus-rest randomization draws at the dataset's share."""
    if inputs.groups is None:
        return None
    found = {}
    for name, column in inputs.groups.items():
        counts = column.counts()
        found[name] = {"keys": list(counts), "counts": list(counts.values())}
    return found


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"Expected `kind` to be one of {', '.join(KINDS)}, but got {kind!r}")


def score_request(
    predictions: ArrayLike,
    labels: ArrayLike,
    fields: dict[str, Any],
    *,
    kind: str = "logits",
    sample_weight: ArrayLike | None = None,
    groups: Mapping[str, Any] | None = None,
) -> Request:
    _check_kind(kind)
    z = as_predictions(predictions, kind, fields["precision"], kind)
    typed = fields["response_arrays"] == "base64"
    inputs = _inputs(labels, sample_weight, z.shape, typed, groups)
    fields = _with_counts(fields, inputs)

    def body(rows: slice | Array) -> dict[str, Any]:
        return {
            kind: inputs.predictions(z[rows]),
            **inputs.fields(rows),
            **fields,
            **_offset(rows, fields),
        }

    rows = _rows(fields, inputs)
    return Request("/score", z.shape[0], math.prod(z.shape[1:]), body, *rows)


def compare_request(
    candidates: Mapping[str, ArrayLike],
    labels: ArrayLike,
    fields: dict[str, Any],
    *,
    kind: str | Mapping[str, str] = "logits",
    sample_weight: ArrayLike | None = None,
    groups: Mapping[str, Any] | None = None,
) -> Request:
    """``kind``: of every candidate, or each candidate's by name (candidates of different
    kinds compare alike: binary scores (N) as the (N, 2) they are scored as)."""
    if not candidates:
        raise ValueError("Expected at least one candidate")
    kinds = {name: kind if isinstance(kind, str) else kind[name] for name in candidates}
    for each in kinds.values():
        _check_kind(each)
    precision = fields["precision"]
    arrays = {
        name: as_predictions(v, f"candidates[{name!r}]", precision, kinds[name])
        for name, v in candidates.items()
    }
    shapes = {scored_shape(a.shape) for a in arrays.values()}
    if len(shapes) != 1:
        raise ValueError(f"Expected every candidate to have one shape, but got {sorted(shapes)}")
    shape = shapes.pop()
    inputs = _inputs(labels, sample_weight, shape, fields["response_arrays"] == "base64", groups)
    fields = _with_counts(fields, inputs)

    def body(rows: slice | Array) -> dict[str, Any]:
        named = [
            {"name": name, kinds[name]: inputs.predictions(a[rows])} for name, a in arrays.items()
        ]
        return {**inputs.fields(rows), "candidates": named, **fields, **_offset(rows, fields)}

    rows = _rows(fields, inputs)
    numbers = sum(math.prod(a.shape[1:]) for a in arrays.values())
    return Request("/compare", shape[0], numbers, body, *rows)


CLASS_ROWS = 256


def _rows(fields: dict[str, Any], inputs: Inputs) -> tuple[int, int]:
    """The fewest and the most rows a chunk should hold."""
    least = CLASS_ROWS if fields.get("per_class") else 1
    bootstrap = fields.get("bootstrap")
    if bootstrap is None or inputs.groups is None:
        return least, 2**62
    keys = sum(len(column.keys) for column in inputs.groups.values())
    return least, work_rows(keys, bootstrap["replicates"])


def _with_counts(fields: dict[str, Any], inputs: Inputs) -> dict[str, Any]:
    """``fields`` with ``group_counts`` when bootstrapping groups."""
    counts = group_counts(inputs)
    if counts is None or "bootstrap" not in fields:
        return fields
    return {**fields, "group_counts": counts}


def encode(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
