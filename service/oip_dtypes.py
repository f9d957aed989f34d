"""Open Inference Protocol datatypes: the bytes of each, and its numbers as numpy arrays.

FP16 and BF16 predictions and weights are widened, exactly, to float32 (the core computes in at
least float32). numpy has no bfloat16: a BF16 element is the top half of a float32's bits, so its
bytes are read as ``<u2`` and shifted into place. JSON ``data`` declared FP16, BF16 or FP32 is
rounded to that datatype (to nearest, ties to even), so JSON and binary tensors of the same
datatype give the same numbers; a finite number that rounds to infinity is too large for it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fairloss_wire.typed_arrays import bfloat16_bits_to_float32

FLOATS = ("FP16", "BF16", "FP32", "FP64")
INTEGERS = ("INT32", "INT64")
# The little-endian layout of one element; BF16 as its raw bits.
WIRE = {"FP16": "<f2", "BF16": "<u2", "FP32": "<f4", "FP64": "<f8", "INT32": "<i4", "INT64": "<i8"}


def from_wire(raw: np.ndarray[Any, Any], datatype: str) -> np.ndarray[Any, Any]:
    """A binary tensor's elements (read as `WIRE` says) as numbers: BF16 as float32."""
    if datatype == "BF16":
        return bfloat16_bits_to_float32(raw)
    return raw


def rounded(values: np.ndarray[Any, Any], datatype: str) -> np.ndarray[Any, Any]:
    """float64 ``values`` rounded to ``datatype`` (to nearest, ties to even; past the largest
    finite value, to infinity), held as the binary tensor of ``datatype`` is: float16 for FP16,
    float32 for BF16 and FP32, float64 for FP64 (the dtype sets where probabilities clip)."""
    with np.errstate(over="ignore"):
        if datatype == "FP16":
            return values.astype(np.float16)  # numpy rounds float64 directly
        if datatype == "BF16":
            return round_to_bfloat16(values)
        if datatype == "FP32":
            return values.astype(np.float32)
    return values


def round_to_bfloat16(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """float64 ``values`` rounded to the nearest bfloat16 (ties to even), as float32.

    Rounding to float32 first and then to bfloat16 can round twice the wrong way (torch and
    ml_dtypes do: 1 + 2**-8 + 2**-30 becomes 1, not 1 + 2**-7). Here the first step rounds to
    odd (toward zero, then the last bit set when anything was lost), which keeps the second
    step exact, as float32 has 16 bits more than bfloat16 at every magnitude.
    """
    x = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore"):  # past float32's range: infinity, as in bfloat16
        single = x.astype(np.float32)
    back = single.astype(np.float64)
    inexact = back != x
    bits = single.view(np.uint32)
    bits -= (inexact & (np.abs(back) > np.abs(x))).astype(np.uint32)  # one step toward zero
    bits |= inexact.astype(np.uint32)
    bits += np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    bits &= np.uint32(0xFFFF0000)
    return single
