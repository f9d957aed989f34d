"""The fields of a ``/score`` or ``/compare`` body, read and checked: the options, the
predictions of each candidate, the sample weights and the group columns (the core checks the
arrays themselves, `fairloss.scoring`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from pydantic import ValidationError

from fairloss.bootstrap import Bootstrap
from fairloss.checks import KINDS, Kind
from fairloss.errors import path, text_fault
from fairloss.options import OPTION_NAMES, ScoringOptions
from fairloss.scoring import DEFAULT_OPTIONS
from fairloss.slices import Column, check_bootstrap_keys, checked_groups
from fairloss_wire.typed_arrays import FLOATS, INTEGERS, decode, is_typed
from service.errors import field_errors, invalid, unknown_fields
from service.json_arrays import may_hold_booleans, weights_array
from service.request_schemas import ResponseOptions

RESPONSE_OPTIONS = tuple(ResponseOptions.model_fields)
DEFAULT_RESPONSE = ResponseOptions()
CANDIDATE = ("name", *KINDS)
GROUP_FIELDS = ("groups", "group_counts")


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


def lists_present(values: Iterable[Any]) -> bool:
    """Whether an array came as lists (the general path), which may hide JSON booleans."""
    return any(isinstance(value, list) for value in values)


def required(data: dict[str, Any], *names: str) -> list[Any]:
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


def arrays_of(
    data: dict[str, Any], values: list[Any], body: bytes | bytearray
) -> tuple[bool, np.ndarray[Any, Any] | None]:
    """Whether lists may hide JSON booleans, and the sample weights if given."""
    weight = data.get("sample_weight")
    booleans = lists_present([*values, weight]) and may_hold_booleans(body)
    return booleans, None if weight is None else weights_array(weight, may_hold_booleans=booleans)


def groups_of(
    data: dict[str, Any], items: int, bootstrap: Bootstrap | None, n_bins: int
) -> dict[str, Column] | None:
    """``groups``, each column a list of keys or a typed integer array, checked by the core
    (with a bootstrap, their number of keys too) before the memory they need is reserved."""
    value = data.get("groups")
    if value is None:
        if data.get("group_counts") is not None:
            raise invalid(
                "Expected `group_counts` only with `groups`: it counts their keys",
                ["group_counts"],
                "bad_group_counts",
            )
        return None
    if isinstance(value, dict):
        value = {
            name: decode(keys, ["groups", name], INTEGERS, invalid) if is_typed(keys) else keys
            for name, keys in value.items()
        }
    columns = checked_groups(value, items)
    if bootstrap is not None:
        check_bootstrap_keys(columns, bootstrap, n_bins, items)
    return columns


def keys_of(columns: dict[str, Column] | None) -> int:
    return 0 if columns is None else sum(len(column.keys) for column in columns.values())


def candidates_of(value: Any) -> list[tuple[str, Kind, Any]]:
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
