"""Request bodies in, response bodies out: the service's only caller of the fairloss core."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np
import orjson
import torch
from pydantic import ValidationError

from fairloss import (
    FairLossTerms,
    ScoreSums,
    Violations,
    fair_loss_terms,
    sample_scores,
    score_sums,
    superior_violations,
)
from fairloss.metrics import rank
from service.devices import resolve_device
from service.errors import ProblemError, invalid
from service.payload import labels_array, logits_array, may_hold_booleans, parse_object
from service.schemas import LossOptions

DTYPES = {"float32": torch.float32, "float64": torch.float64}
FAIRLOSS_TERMS = ("ce", "penalty", "total")


def field_errors(errors: list[dict[str, Any]]) -> ProblemError:
    """A 422 for errors in pydantic's form (``loc``, ``msg``, ``type``), whatever found them;
    the detail reads ``candidates.0.epoch: Extra inputs are not permitted``."""
    detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
    return ProblemError(422, "Invalid request", detail, errors=errors)


def parse_options(fields: dict[str, Any]) -> LossOptions:
    try:
        return LossOptions.model_validate(fields)
    except ValidationError as exc:
        errors = [
            {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise field_errors(errors) from None


def class_weights(options: LossOptions, num_classes: int) -> torch.Tensor | None:
    """The request's class weights as a tensor, one per class (a 422 otherwise)."""
    if options.class_weights is None:
        return None
    if len(options.class_weights) != num_classes:
        raise invalid(
            f"Expected {num_classes} class_weights, one per class, "
            f"but got {len(options.class_weights)}",
            ["class_weights"],
            "bad_length",
        )
    return torch.tensor(options.class_weights, dtype=torch.float64)


def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None


class Reply(NamedTuple):
    """A response body, and what the access log and metrics note about the batch."""

    body: bytes
    n: int
    num_classes: int
    device: str


def _check_finite(terms: FairLossTerms, options: LossOptions, loc: list[str | int] | None) -> None:
    """A 422 naming the first row whose loss overflowed the compute precision."""
    bad_ce = ~terms.ce.isfinite()
    if bool(bad_ce.any()):
        i = int(bad_ce.nonzero()[0, 0])
        hint = 'send "precision": "float64"' if options.precision == "float32" else "scale down"
        raise invalid(
            f"The cross-entropy of row {i} overflows {options.precision} (logits too far apart "
            f"or class weight too large); {hint}",
            [*(loc or ["logits"]), i],
            "not_finite_result",
        )
    if not bool(terms.penalty.isfinite().all()):
        raise invalid(
            "These parameters give non-finite penalties; use smaller smooth_max_beta or "
            'scaling_factor, or "precision": "float64"',
            ["smooth_max_beta"],
            "not_finite_result",
        )


def evaluate(
    logits: np.ndarray[Any, Any],
    labels: np.ndarray[Any, Any],
    options: LossOptions,
    device: str,
    *,
    violations: bool = False,
    loc: list[str | int] | None = None,
) -> dict[str, Any]:
    """Score one batch on ``device``; the result's arrays are numpy, on the CPU."""
    num_classes = logits.shape[1]
    weight = class_weights(options, num_classes)
    z = torch.from_numpy(logits).to(device=device, dtype=DTYPES[options.precision])
    y = torch.from_numpy(labels).to(device)
    terms = fair_loss_terms(
        z,
        y,
        smooth_max_beta=options.smooth_max_beta,
        scaling_factor=options.scaling_factor,
        weight=weight,
        label_smoothing=options.label_smoothing,
        ignore_index=options.ignore_index,
    )
    _check_finite(terms, options, loc)
    scores = sample_scores(z, torch.where(terms.counted, y, 0))
    correct = scores.correct & terms.counted
    sums = score_sums(terms, scores, options.ece_bins)
    scale = 1 if options.reduction == "sum" else sums.count
    result: dict[str, Any] = {
        "n": logits.shape[0],
        "num_classes": num_classes,
        "device": str(z.device),
        "precision": options.precision,
        "reduced": {
            "reduction": options.reduction,
            **{k: _number(getattr(sums, k) / scale) if scale else None for k in FAIRLOSS_TERMS},
        },
        "metrics": {
            "accuracy": _number(sums.accuracy),
            **{k: _number(sums.mean(k)) for k in ("log_loss", "brier", "pll", "pbs")},
            "ece": _number(sums.ece),
        },
        "sums": sums.to_dict(),
    }
    if options.per_sample:
        columns = {
            "ce": terms.ce,
            "penalty": terms.penalty,
            "total": terms.total,
            "predicted": scores.predicted,
            "correct": correct,
        }
        if options.ignore_index is not None:
            columns["counted"] = terms.counted
        columns.update({name: getattr(scores, name) for name in options.extra_columns})
        result["per_sample"] = {k: v.cpu().numpy() for k, v in columns.items()}
    if violations:
        per_criterion = {"ce": terms.ce, "total": terms.total}
        per_criterion.update({k: getattr(scores, k) for k in ("brier", "pll", "pbs")})
        result["violations"] = {
            name: _violations_body(superior_violations(values, correct, terms.counted))
            for name, values in per_criterion.items()
        }
    return result


def _violations_body(violations: Violations) -> dict[str, Any]:
    return {
        "count": violations.count,
        "pairs": violations.pairs,
        "examples": violations.examples,
    }


def device_for(options: LossOptions, devices: list[str], default: str) -> str:
    """The request's device, or the server default when it names none."""
    return default if options.device is None else resolve_device(options.device, devices)


def _dumps(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def _lists_present(values: Iterable[Any]) -> bool:
    """Whether an array came as lists (the general path), which may hide JSON booleans."""
    return any(isinstance(value, list) for value in values)


def score_body(
    body: bytes | bytearray, devices: list[str], default: str, max_elements: int
) -> Reply:
    """``POST /score``: request bytes to response bytes."""
    data = parse_object(body)
    arrays = {k: data.pop(k, None) for k in ("logits", "labels")}
    options = parse_options(data)
    for name, value in arrays.items():
        if value is None:
            raise invalid(f"Field {name!r} is required", [name], "missing")
    booleans = _lists_present(arrays.values()) and may_hold_booleans(body)
    logits = logits_array(
        arrays["logits"],
        ["logits"],
        max_elements=max_elements,
        float32=options.precision == "float32",
        may_hold_booleans=booleans,
    )
    labels = labels_array(
        arrays["labels"],
        logits.shape[0],
        logits.shape[1],
        options.ignore_index,
        may_hold_booleans=booleans,
    )
    device = device_for(options, devices, default)
    result = evaluate(logits, labels, options, device)
    return Reply(_dumps(result), logits.shape[0], logits.shape[1], result["device"])


CANDIDATE = ("name", "logits")
EXTRA = "Extra inputs are not permitted"  # pydantic's words for an unknown top-level field


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
        errors = [
            {"loc": ["candidates", k, key], "msg": message, "type": kind}
            for key, message, kind in (
                *((key, "Field required", "missing") for key in CANDIDATE if key not in item),
                *((key, EXTRA, "extra_forbidden") for key in item if key not in CANDIDATE),
            )
        ]
        if errors:
            raise field_errors(errors)
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


def compare_body(
    body: bytes | bytearray, devices: list[str], default: str, max_elements: int
) -> Reply:
    """``POST /compare``: request bytes to response bytes."""
    data = parse_object(body)
    labels_value = data.pop("labels", None)
    named = _candidates(data.pop("candidates", None))
    options = parse_options(data)
    if labels_value is None:
        raise invalid("Field 'labels' is required", ["labels"], "missing")
    values = [labels_value, *(logits for _, logits in named)]
    booleans = _lists_present(values) and may_hold_booleans(body)
    budget = max_elements
    arrays: list[tuple[str, np.ndarray[Any, Any]]] = []
    for k, (name, value) in enumerate(named):
        logits = logits_array(
            value,
            ["candidates", k, "logits"],
            max_elements=budget,
            float32=options.precision == "float32",
            may_hold_booleans=booleans,
        )
        if arrays and logits.shape != arrays[0][1].shape:
            raise invalid(
                f"Every candidate must have one shape: candidates[{k}] is "
                f"{logits.shape[0]} x {logits.shape[1]}, candidates[0] is "
                f"{arrays[0][1].shape[0]} x {arrays[0][1].shape[1]}",
                ["candidates", k, "logits"],
                "shape_mismatch",
            )
        budget -= logits.size
        arrays.append((name, logits))
    n, num_classes = arrays[0][1].shape
    labels = labels_array(
        labels_value, n, num_classes, options.ignore_index, may_hold_booleans=booleans
    )
    device = device_for(options, devices, default)
    results = [
        {
            "name": name,
            **evaluate(
                logits, labels, options, device, violations=True, loc=["candidates", k, "logits"]
            ),
        }
        for k, (name, logits) in enumerate(arrays)
    ]
    ranking = rank({r["name"]: ScoreSums.from_dict(r["sums"]) for r in results})
    body = _dumps({"candidates": results, "ranking": ranking})
    return Reply(body, n, num_classes, results[0]["device"])
