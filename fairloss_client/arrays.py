"""Arrays in: numpy arrays or torch tensors, checked before anything is sent or scored.

numpy and torch only, so that the command line scores files in this process without the
client's HTTP dependencies.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch

Array = npt.NDArray[Any]
LOG_OF_ZERO = (
    "; -inf is the log of a probability of 0: send log-probabilities as log_probabilities "
    '(kind="log_probabilities", --kind log_probabilities)'
)
ArrayLike = npt.ArrayLike | torch.Tensor


def as_numpy(value: ArrayLike) -> Array:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        return (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
    return np.asarray(value)


def as_predictions(value: ArrayLike, name: str, precision: str, kind: str = "logits") -> Array:
    """Predictions of shape (N, C) or (N, C, d1, ..., dk), or (N) binary scores, N >= 1: logits
    as float32 or float64 (the compute precision), finite; probabilities and log-probabilities
    in their own float dtype (float64 for integers), which sets where the service clips them
    (`fairloss.predictions`), finite but for log-probabilities of -inf (probability 0)."""
    array = as_numpy(value)
    if array.ndim < 1 or array.shape[0] == 0 or array.dtype.kind not in "fiu":
        raise ValueError(
            f"Expected `{name}` to be a non-empty (N, C) array of numbers (or (N, C, d1, ..., "
            f"dk), or (N) binary scores), but got shape {array.shape} of {array.dtype}"
        )
    if kind == "logits":
        dtype: Any = np.float32 if precision == "float32" else np.float64
    else:
        dtype = array.dtype if array.dtype.kind == "f" else np.float64
    with np.errstate(over="ignore"):
        array = np.ascontiguousarray(array, dtype)
    finite = np.isfinite(array)
    if kind == "log_probabilities":
        finite |= array == -np.inf
    if not finite.all():
        at = tuple(int(k) for k in np.argwhere(~finite)[0])
        within = f" within {precision} range" if kind == "logits" else ""
        hint = LOG_OF_ZERO if kind == "logits" and array[at] == -np.inf else ""
        raise ValueError(
            f"Expected finite `{name}`{within}, but {list(at)} is {as_numpy(value)[at]}{hint}"
        )
    return array


def as_labels(value: ArrayLike, shape: tuple[int, ...]) -> Array:
    """Integer labels of the predictions' ``shape`` without its class axis, as int64 (an
    unsigned label past int64 is refused rather than wrapped to a negative number)."""
    array = as_numpy(value)
    if array.dtype.kind == "u" and array.size and int(array.max()) >= 2**63:
        at = [int(k) for k in np.unravel_index(int(array.argmax()), array.shape)]
        raise ValueError(f"Expected `labels` within int64, but {at} is {int(array.max())}")
    wanted = (shape[0], *shape[2:])
    if array.shape != wanted or array.dtype.kind not in "iu":
        what = (
            f"{shape[0]} integer class labels"
            if len(wanted) == 1
            else (f"integer class labels of shape {wanted}")
        )
        raise ValueError(
            f"Expected `labels` to be {what}, but got shape {array.shape} of {array.dtype}"
        )
    return np.ascontiguousarray(array, np.int64)


def as_weights(value: ArrayLike, shape: tuple[int, ...]) -> Array:
    """Sample weights of the labels' ``shape``, as float64 (the service checks their values)."""
    array = as_numpy(value)
    if array.shape != shape or array.dtype.kind not in "fiu":
        raise ValueError(
            f"Expected `sample_weight` to be numbers of the labels' shape {shape}, but got "
            f"shape {array.shape} of {array.dtype}"
        )
    return np.ascontiguousarray(array, np.float64)
