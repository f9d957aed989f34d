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
ArrayLike = npt.ArrayLike | torch.Tensor


def as_numpy(value: ArrayLike) -> Array:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        return (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
    return np.asarray(value)


def as_logits(value: ArrayLike, name: str, precision: str) -> Array:
    array = as_numpy(value)
    if array.ndim != 2 or array.shape[0] == 0 or array.dtype.kind not in "fiu":
        raise ValueError(
            f"Expected `{name}` to be a non-empty (N, C) array of numbers, but got "
            f"shape {array.shape} of {array.dtype}"
        )
    with np.errstate(over="ignore"):
        array = np.ascontiguousarray(array, np.float32 if precision == "float32" else np.float64)
    finite = np.isfinite(array)
    if not finite.all():
        i, j = (int(k) for k in np.argwhere(~finite)[0])
        raise ValueError(
            f"Expected finite `{name}` within {precision} range, but [{i}, {j}] is "
            f"{as_numpy(value)[i, j]}"
        )
    return array


def as_labels(value: ArrayLike, n: int) -> Array:
    array = as_numpy(value)
    if array.shape != (n,) or array.dtype.kind not in "iu":
        raise ValueError(
            f"Expected `labels` to be {n} integer class labels, but got shape {array.shape} "
            f"of {array.dtype}"
        )
    return np.ascontiguousarray(array, np.int64)
