"""The one check of a batch's arrays, each fault an `InputError` that says where it is.

Predictions (``logits``, ``probabilities`` or ``log_probabilities``; turned into logits by
`fairloss.predictions`) have shape (N, C) or (N, C, d1, ..., dk), or (N) for a binary
classifier's positive-class scores; labels and sample weights have the labels' shape, (N) or
(N, d1, ..., dk), as for ``nn.CrossEntropyLoss``. Locations name the array and the index in it
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
ArrayLike = Tensor | np.ndarray[Any, Any]


def check_shape(shape: tuple[int, ...], name: str = "logits") -> None:
    """Raise `InputError` at ``name`` unless ``shape`` is (N, C, ...) with N >= 1, C >= 2, or
    (N) with N >= 1 (a binary classifier's scores of the positive class)."""
    if len(shape) < 1:
        raise InputError(
            "Expected {where} of shape (N, C), (N, C, d1, ..., dk), or (N) for a binary "
            "classifier's scores of class 1, but got a single number",
            (name,),
            "bad_shape",
        )
    if shape[0] < 1:
        raise InputError("Expected {where} to hold at least one row", (name,), "empty_batch")
    if len(shape) > 1 and shape[1] < 2:
        raise InputError(
            f"Expected at least 2 classes, but {{where}} has {shape[1]}",
            (name, 0),
            "too_few_classes",
        )


def scored_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """The shape predictions of ``shape`` are scored in: (N, 2) for binary scores (N)."""
    return (int(shape[0]), 2) if len(shape) == 1 else tuple(int(d) for d in shape)


def num_classes(shape: Sequence[int]) -> int:
    """The classes C of predictions of ``shape``: (N, C, ...), or 2 for binary scores (N)."""
    return 2 if len(shape) == 1 else int(shape[1])


NUMPY_FLOATS = (torch.float16, torch.float32, torch.float64)


FINITE_BLOCK = 1 << 20  # elements checked at once: the mask of a large batch is never whole


def all_finite(values: Tensor) -> bool:
    """Whether every value is finite: in numpy for a CPU tensor of a dtype numpy has (a third
    of ``torch.isfinite``'s time on a small batch, whose several operations each cost more than
    the whole numpy pass), a block at a time, else in torch."""
    if values.device.type == "cpu" and values.dtype in NUMPY_FLOATS:
        array = values.detach().numpy()
        if array.size <= FINITE_BLOCK or not array.flags.c_contiguous:
            return bool(np.isfinite(array).all())
        flat = array.reshape(-1)
        return all(
            np.isfinite(flat[k : k + FINITE_BLOCK]).all() for k in range(0, flat.size, FINITE_BLOCK)
        )
    return bool(torch.isfinite(values).all())


def first_index(mask: Tensor) -> tuple[int, ...]:
    return tuple(int(k) for k in mask.nonzero()[0])


def element_error(
    mask: Tensor, values: Tensor, name: str, expected: str, kind: str, after: str = ""
) -> InputError:
    """The error at the first element of ``values`` where ``mask`` holds: ``"{expected}, but
    {name}[i][j] is {value}{after}"``, located at ``(name, i, j)``."""
    at = first_index(mask)
    return InputError(f"{expected}, but {{where}} is {float(values[at])}{after}", (name, *at), kind)


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
        at = first_index(~allowed)
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
        raise element_error(bad, w, "sample_weight", "Expected finite weights >= 0", "bad_weight")
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
