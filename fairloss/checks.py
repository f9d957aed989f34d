"""The one check of a batch's arrays, each fault an `InputError` that says where it is.

Predictions come as ``logits``, ``probabilities`` or ``log_probabilities`` of shape (N, C) or
(N, C, d1, ..., dk); labels and sample weights have the labels' shape, (N) or (N, d1, ..., dk),
as for ``nn.CrossEntropyLoss``. Locations name the array and the index in it
(``probabilities[3]``, ``logits[1][0][2]``), so the codecs can report them as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from fairloss.errors import InputError
from fairloss.functional import FairLossTerms

Kind = Literal["logits", "probabilities", "log_probabilities"]
KINDS: tuple[Kind, ...] = ("logits", "probabilities", "log_probabilities")
FLOAT32_MAX = float(torch.finfo(torch.float32).max)
SUM_TOLERANCE = 1e-3  # how far a sample's probabilities may sum from 1
ArrayLike = Tensor | np.ndarray[Any, Any]


def check_shape(shape: tuple[int, ...], name: str = "logits") -> None:
    """Raise `InputError` at ``name`` unless ``shape`` is (N, C, ...) with N >= 1, C >= 2."""
    if len(shape) < 2:
        raise InputError(
            f"Expected {{where}} of shape (N, C) or (N, C, d1, ..., dk), but got {tuple(shape)}",
            (name,),
            "bad_shape",
        )
    if shape[0] < 1:
        raise InputError("Expected {where} to hold at least one row", (name,), "empty_batch")
    if shape[1] < 2:
        raise InputError(
            f"Expected at least 2 classes, but {{where}} has {shape[1]}",
            (name, 0),
            "too_few_classes",
        )


NUMPY_FLOATS = (torch.float16, torch.float32, torch.float64)


def all_finite(values: Tensor) -> bool:
    """Whether every value is finite: in numpy for a CPU tensor of a dtype numpy has (a third
    of ``torch.isfinite``'s time on a small batch, whose several operations each cost more than
    the whole numpy pass), else in torch."""
    if values.device.type == "cpu" and values.dtype in NUMPY_FLOATS:
        return bool(np.isfinite(values.detach().numpy()).all())
    return bool(torch.isfinite(values).all())


def _first(mask: Tensor) -> tuple[int, ...]:
    return tuple(int(k) for k in mask.nonzero()[0])


def checked_predictions(predictions: ArrayLike, kind: Kind, precision: str) -> Tensor:
    """The predictions as logits: probabilities (scored as ``log(clip(p, eps, 1))``, eps the
    compute precision's machine epsilon, as scikit-learn's ``log_loss`` clips them) in the
    compute precision, float64 logits in float32 when that is the precision, other
    predictions in their own dtype."""
    z = torch.as_tensor(predictions)
    if not torch.is_floating_point(z):
        raise InputError(
            f"Expected {{where}} to hold floating point numbers, not {z.dtype}",
            (kind,),
            "float_type",
        )
    check_shape(tuple(z.shape), kind)
    narrow = kind == "logits" and precision == "float32" and z.dtype == torch.float64
    # One pass checks both faults: a value that is not finite, and (narrowing) one too large
    # once rounded to float32 (3.4028235e38, as float32 prints its largest, fits).
    narrowed = z.to(torch.float32) if narrow else z
    if not all_finite(narrowed):
        finite = torch.isfinite(z)
        if not bool(finite.all()):
            at = _first(~finite)
            raise InputError(
                f"Expected finite numbers, but {{where}} is {float(z[at])}",
                (kind, *at),
                "not_finite",
            )
        at = _first(~torch.isfinite(narrowed))
        raise InputError(
            f'{{where}} = {float(z[at])} is too large for float32; send "precision": "float64"',
            (kind, *at),
            "too_large_for_precision",
        )
    if kind == "probabilities":
        return _from_probabilities(z, precision)
    if kind == "log_probabilities":
        return _from_log_probabilities(z)
    return narrowed


def _sample(at: tuple[int, ...]) -> tuple[int, ...]:
    """The sample of an element's index: the index without the class axis."""
    return (at[0], *at[2:])


def _from_probabilities(p: Tensor, precision: str) -> Tensor:
    outside = (p < 0) | (p > 1)
    if bool(outside.any()):
        at = _first(outside)
        raise InputError(
            f"Expected probabilities in [0, 1], but {{where}} is {float(p[at])}",
            ("probabilities", *at),
            "probability_out_of_range",
        )
    _check_normalised(p.double().sum(dim=1), "probabilities", "sums to")
    dtype = torch.float64 if precision == "float64" else torch.float32
    return p.to(dtype).clamp(torch.finfo(dtype).eps, 1).log()


def _from_log_probabilities(lp: Tensor) -> Tensor:
    positive = lp > 0
    if bool(positive.any()):
        at = _first(positive)
        raise InputError(
            f"Expected log-probabilities <= 0, but {{where}} is {float(lp[at])}",
            ("log_probabilities", *at),
            "log_probability_out_of_range",
        )
    _check_normalised(lp.double().logsumexp(dim=1).exp(), "log_probabilities", "exponentiates to")
    return lp


PROBABILITIES_AS_LOGITS = (
    "`logits` look like probabilities: every value is in [0, 1] and every sample sums to 1. "
    "Logits are scored through a softmax, which flattens probabilities (a log loss far above "
    'theirs); send them as `probabilities` (or --kind probabilities, kind="probabilities")'
)


WARN_SAMPLES = 10  # fewer samples summing to 1 are as likely a hand-written example


def probabilities_as_logits(logits: Tensor) -> bool:
    """Whether logits (N, C, ...) look like probabilities: at least `WARN_SAMPLES` samples,
    every value in [0, 1] and every sample summing to 1 within `SUM_TOLERANCE`."""
    samples = logits.numel() // max(1, logits.shape[1])
    # float() of the reductions: two torch calls a check, which a small batch feels
    if samples < WARN_SAMPLES or float(logits.min()) < 0 or float(logits.max()) > 1:
        return False
    return bool(((logits.double().sum(dim=1) - 1).abs() <= SUM_TOLERANCE).all())


def _check_normalised(totals: Tensor, name: str, verb: str) -> None:
    """``totals`` (N, d1, ..., dk): each sample's sum over the class axis (axis 1)."""
    off = (totals - 1).abs() > SUM_TOLERANCE
    if bool(off.any()):
        at = _first(off)
        # the sample's elements: predictions[n][:][d1]...[dk], the class axis spanned
        classes = "".join(f"[{k}]" for k in at[1:])
        span = f"[:]{classes}" if classes else ""
        raise InputError(
            f"Expected each sample of {name} to sum to 1 over the classes (within "
            f"{SUM_TOLERANCE:g}), but the sample at {{where}}{span} {verb} "
            f"{float(totals[at]):.6g}",
            (name, at[0]),
            "not_normalised",
        )


def checked_labels(labels: ArrayLike, shape: tuple[int, ...], ignore_index: int | None) -> Tensor:
    """Labels of the predictions' shape without its class axis, each a class or ignored."""
    y = torch.as_tensor(labels)
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise InputError(
            f"Expected {{where}} to hold integer class labels, not {y.dtype}",
            ("labels",),
            "int_type",
        )
    wanted = (shape[0], *shape[2:])
    if tuple(y.shape) != wanted:
        if len(wanted) == 1 and y.dim() == 1:
            message = f"Expected {shape[0]} labels, one per row, but got {y.shape[0]}"
        else:
            message = f"Expected labels of shape {list(wanted)}, but got {list(y.shape)}"
        raise InputError(message, ("labels",), "bad_length")
    if ignore_index is None and y.numel():
        low, high = torch.aminmax(y)  # one pass, where nothing is ignored
        if int(low) >= 0 and int(high) < shape[1]:
            return y
    allowed = (y >= 0) & (y < shape[1])
    if ignore_index is not None:
        allowed |= y == ignore_index
    if not bool(allowed.all()):
        at = _first(~allowed)
        raise label_out_of_range(at, int(y[at]), shape[1], ignore_index)
    return y


def label_out_of_range(
    at: int | tuple[int, ...], value: object, num_classes: int, ignore_index: int | None
) -> InputError:
    """The error for the label at ``at``, whose ``value`` is not a class (nor ignored)."""
    also = "" if ignore_index is None else f" or equal to ignore_index {ignore_index}"
    index = (at,) if isinstance(at, int) else at
    return InputError(
        f"Expected labels in [0, {num_classes}){also}, but {{where}} is {value}",
        ("labels", *index),
        "label_out_of_range",
    )


def checked_sample_weight(sample_weight: ArrayLike, shape: tuple[int, ...]) -> Tensor:
    """Finite, non-negative weights of the labels' ``shape``."""
    w = torch.as_tensor(sample_weight)
    if w.dtype.is_complex or w.dtype == torch.bool:
        raise InputError(
            f"Expected {{where}} to hold numbers, not {w.dtype}", ("sample_weight",), "float_type"
        )
    if tuple(w.shape) != shape:
        raise InputError(
            f"Expected sample_weight of the labels' shape {list(shape)}, but got {list(w.shape)}",
            ("sample_weight",),
            "bad_length",
        )
    bad = ~torch.isfinite(w.double()) | (w < 0)
    if bool(bad.any()):
        at = _first(bad)
        raise InputError(
            f"Expected finite weights >= 0, but {{where}} is {float(w[at])}",
            ("sample_weight", *at),
            "bad_weight",
        )
    return w


def class_weights_tensor(
    weights: Sequence[float] | None, num_classes: int, like: Tensor
) -> Tensor | None:
    """The class weights as a tensor like ``like``, one per class."""
    if weights is None:
        return None
    if len(weights) != num_classes:
        raise InputError(
            f"Expected {num_classes} class_weights, one per class, but got {len(weights)}",
            ("class_weights",),
            "bad_length",
        )
    return torch.tensor(weights, dtype=like.dtype, device=like.device)


def check_finite_losses(terms: FairLossTerms, precision: str, shape: tuple[int, ...]) -> None:
    """An `InputError` naming the first sample (of the labels' ``shape``) whose loss overflowed
    the compute precision."""
    if all_finite(terms.total):  # the one pass when nothing overflowed
        return
    bad_ce = ~terms.ce.isfinite()
    if bool(bad_ce.any()):
        at = tuple(int(k) for k in np.unravel_index(int(bad_ce.nonzero()[0, 0]), shape))
        where = f"row {at[0]}" if len(at) == 1 else f"sample {list(at)}"
        hint = 'send "precision": "float64"' if precision == "float32" else "scale down"
        raise InputError(
            f"The cross-entropy of {where} overflows {precision} (logits too far apart or class "
            f"weight too large); {hint}",
            ("logits", *at),
            "not_finite_result",
        )
    raise InputError(
        "These options give non-finite penalties; use a smaller smooth_max_beta or "
        'scaling_factor, or "precision": "float64"',
        ("smooth_max_beta",),
        "not_finite_result",
    )
