"""The JSON form of the service's answers, written by the service and read back by the client.

Numbers from headers are read here too, one strict way, for both sides. This module needs only
the standard library, numpy, typed arrays (`fairloss_wire.typed_arrays`) and the core.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from fairloss.bootstrap import FIELDS, ReplicateSums
from fairloss.classes import CLASS_FIELDS, ClassSums, class_report, pack, unpack
from fairloss.metrics import Violations
from fairloss.scoring import BatchScores, metrics, reduced
from fairloss.slices import Slices
from fairloss.sums import ScoreSums
from fairloss_wire.typed_arrays import FLOATS, INTEGERS, decode, encode, is_typed

SUMMED = ("count", "items", "correct", "ce", "penalty", "total", "log_loss", "brier", "pll", "pbs")
COLUMNS = ("ce", "penalty", "total", "predicted", "correct")
EXTRA_COLUMNS = ("confidence", "log_loss", "brier", "pll", "pbs")
_DIGITS = re.compile(r"[0-9]+")


def _whole(value: float) -> float | int:
    """Counts as integers where they are whole and exact (they are, without sample weights);
    a weighted count past 2**53 stays a float (an int past 64 bits is no JSON orjson writes)."""
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else value


def sums_to_dict(
    sums: ScoreSums, weighted: bool = False, arrays: str = "json", replicates: bool = False
) -> dict[str, Any]:
    """``sums``: the scalar sums, the calibration bins under ``bins``, the weight total when
    the samples were ``weighted``, the per-class sums when kept (their arrays as typed arrays
    when ``arrays`` is ``base64``), the bootstrap's ``replicates`` when asked, and each group
    column's ``{"keys": [...], "sums": [one such object per key]}``."""
    scalars: dict[str, Any] = {name: getattr(sums, name) for name in SUMMED}
    scalars["correct"] = _whole(sums.correct)
    if weighted:
        scalars = {"count": sums.count, "weight": sums.weight, **scalars}
    bins = {
        "count": [_whole(v) for v in sums.bin_count],
        "confidence": sums.bin_confidence,
        "correct": [_whole(v) for v in sums.bin_correct],
    }
    body = {**scalars, "bins": bins}
    if sums.scale:  # the weighted sums are in units of 2**scale (`fairloss.sums.weight_scale`)
        body["scale"] = sums.scale
    if sums.classes is not None:
        body["classes"] = classes_to_dict(sums.classes, arrays)
    if replicates and sums.replicates is not None:
        body["replicates"] = replicates_to_dict(sums.replicates, arrays)
    if sums.groups is not None:
        body["groups"] = {
            name: {
                "keys": list(slices.keys),
                "seen": list(slices.seen),
                "sums": [sums_to_dict(s, weighted, arrays, replicates) for s in slices.sums],
            }
            for name, slices in sums.groups.items()
        }
    return body


def classes_to_dict(sums: ClassSums, arrays: str) -> dict[str, Any]:
    """The per-class sums in `fairloss.classes.pack`'s sparse form (its arrays as lists or
    typed arrays), with the nonzero confusion cells."""
    form = encode if arrays == "base64" else (lambda a: a)
    packed = {k: form(v) if isinstance(v, np.ndarray) else v for k, v in pack(sums).items()}
    confusion = {
        "true": sums.true,
        "predicted": sums.predicted,
        "count": [_whole(v) for v in sums.count.tolist()],
    }
    return {"fields": list(CLASS_FIELDS), **packed, "confusion": confusion}


def classes_from_dict(body: Mapping[str, Any]) -> ClassSums:
    """The inverse of `classes_to_dict`."""
    arrays = ("rows", "values", "p_totals", "cells", "cell_values")
    packed = {k: _floats(v) if k in arrays else v for k, v in body.items()}
    cells = body["confusion"]
    return unpack(
        packed,
        np.asarray(cells["true"], dtype=np.int64),
        np.asarray(cells["predicted"], dtype=np.int64),
        np.asarray(cells["count"], dtype=np.float64),
    )


def classes_body(sums: ClassSums, scale: int = 0) -> dict[str, Any]:
    """The ``classes`` of a scored body: `fairloss.classes.class_report`, NaN as null."""
    report = class_report(sums, scale)
    for name, values in report.items():
        if name in ("support", "predicted"):
            report[name] = [_whole(v) for v in values]
        elif name != "confusion":
            report[name] = [number(v) for v in values]
    report["confusion"]["count"] = [_whole(v) for v in report["confusion"]["count"]]
    return report


def sums_from_dict(body: Mapping[str, Any]) -> ScoreSums:
    """The inverse of `sums_to_dict`."""
    bins = body["bins"]
    summed: dict[str, Any] = {name: float(body[name]) for name in SUMMED[3:]}
    return ScoreSums(
        count=int(body["count"]),
        items=int(body["items"]),
        weight=float(body.get("weight", body["count"])),
        correct=float(body["correct"]),
        **summed,
        bin_count=tuple(float(v) for v in bins["count"]),
        bin_confidence=tuple(float(v) for v in bins["confidence"]),
        bin_correct=tuple(float(v) for v in bins["correct"]),
        replicates=replicates_from_dict(body["replicates"]) if "replicates" in body else None,
        classes=classes_from_dict(body["classes"]) if "classes" in body else None,
        groups={
            name: Slices(
                tuple(column["keys"]),
                tuple(sums_from_dict(s) for s in column["sums"]),
                tuple(int(k) for k in column["seen"]),
            )
            for name, column in body["groups"].items()
        }
        if "groups" in body
        else None,
        scale=int(body.get("scale", 0)),
    )


def number(value: float) -> float | None:
    """A float for JSON: NaN (a mean of no sample) and infinities are written as null."""
    return value if math.isfinite(value) else None


def scored(
    batch: BatchScores,
    *,
    per_sample: bool = True,
    extra_columns: tuple[str, ...] = (),
    arrays: str = "json",
    replicate_sums: bool = False,
) -> dict[str, Any]:
    """The body of one scored batch (``/score``, or one candidate of ``/compare``).

    ``shape`` is the labels' shape, whose positions the columns list in row-major order.
    ``per_sample`` adds the columns (numpy arrays, serialised by orjson): ``ce``, ``penalty``,
    ``total``, ``predicted``, ``correct``, then ``counted`` when an ``ignore_index`` is set, then
    ``extra_columns``. ``violations`` comes with the batch's violations, when counted.
    """
    options = batch.options
    body: dict[str, Any] = {
        "n": batch.n,
        "shape": list(batch.shape),
        "num_classes": batch.num_classes,
        "device": batch.device,
        "precision": options.precision,
        "reduced": {
            "reduction": options.reduction,
            **{k: number(v) for k, v in reduced(batch.sums, options.reduction).items()},
        },
        "metrics": {k: number(v) for k, v in metrics(batch.sums).items()},
        "sums": sums_to_dict(batch.sums, batch.weighted, arrays, replicate_sums),
    }
    if batch.warnings:
        body["warnings"] = list(batch.warnings)
    if batch.sums.classes is not None:
        body["classes"] = classes_body(batch.sums.classes, batch.sums.scale)
    if per_sample:
        columns = per_sample_columns(batch, extra_columns)
        body["per_sample"] = (
            {k: encode(v) for k, v in columns.items()} if arrays == "base64" else columns
        )
    if batch.violations is not None:
        body["violations"] = {
            name: violations_dict(v, batch.weighted) for name, v in batch.violations.items()
        }
    return body


def violations_dict(found: Violations, weighted: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"count": found.count, "pairs": found.pairs, "examples": found.examples}
    if weighted:
        body |= {"weighted_count": found.weighted_count, "weighted_pairs": found.weighted_pairs}
    return body


def per_sample_columns(
    batch: BatchScores, extra_columns: tuple[str, ...] = ()
) -> dict[str, np.ndarray[Any, Any]]:
    """The columns a body holds, as numpy arrays: ``ce``, ``penalty``, ``total``,
    ``predicted``, ``correct``, then ``counted`` when an ``ignore_index`` is set, then
    ``extra_columns``."""
    counted = ("counted",) if batch.options.ignore_index is not None else ()
    names = [*COLUMNS, *counted, *extra_columns]
    found = {name: batch.columns[name].cpu().numpy() for name in names}
    # int32, which every language's arrays hold (a browser's int64 is a BigInt64Array)
    found["predicted"] = found["predicted"].astype(np.int32)
    return found


def column(name: str, chunks: list[Any], precision: str) -> np.ndarray[Any, Any]:
    """One per-sample column from the JSON of consecutive chunks (lists or typed arrays), in
    its dtype."""
    dtype: Any = np.float32 if precision == "float32" else np.float64
    if name in ("correct", "counted"):
        dtype = np.bool_
    elif name == "predicted":
        dtype = np.int64
    return np.concatenate([np.asarray(_typed(chunk), dtype=dtype) for chunk in chunks])


def _typed(chunk: Any) -> Any:
    if not is_typed(chunk):
        return chunk
    return decode(chunk, ["per_sample"], (*FLOATS, *INTEGERS, "bool"), _bad_column)


def _bad_column(message: str, loc: list[str | int], kind: str) -> Exception:
    return ValueError(f"The service sent a column that is not a typed array: {message}")


def header_int(value: str | None) -> int | None:
    """The non-negative integer a header field holds, or None when it holds anything else.

    RFC 9110 writes numeric fields (``Content-Length``, ``Retry-After`` in seconds,
    ``Inference-Header-Content-Length``) as ``1*DIGIT``: ASCII digits only, with optional
    white space around them. ``str.isdigit`` also takes ``'²'``, which ``int`` refuses, and
    ``int`` takes signs, underscores and non-ASCII digits: neither is used alone.
    """
    if value is None:
        return None
    stripped = value.strip(" \t")
    return int(stripped) if _DIGITS.fullmatch(stripped) else None


def replicates_to_dict(replicates: ReplicateSums, arrays: str) -> dict[str, Any]:
    """``{"fields": [...], "values": R x 9, "bins": R x 3 x B}``, as lists or typed arrays,
    and the randomization tests' sums in the same form under ``flips`` and ``relabels`` when
    kept."""
    form = encode if arrays == "base64" else (lambda a: a)
    body: dict[str, Any] = {
        "fields": list(FIELDS),
        "values": form(replicates.values),
        "bins": form(replicates.bins),
    }
    for name in ("flips", "relabels"):
        extra = getattr(replicates, name)
        if extra is not None:
            body[name] = replicates_to_dict(extra, arrays)
    return body


def replicates_from_dict(body: Mapping[str, Any]) -> ReplicateSums:
    """The inverse of `replicates_to_dict`."""
    extra = {
        name: replicates_from_dict(body[name]) for name in ("flips", "relabels") if name in body
    }
    return ReplicateSums(_floats(body["values"]), _floats(body["bins"]), **extra)


def _floats(value: Any) -> np.ndarray[Any, Any]:
    """A float64 array from nested lists or a typed array."""
    if is_typed(value):
        return decode(value, ["sums"], (*FLOATS, *INTEGERS), _bad).astype(np.float64)
    return np.asarray(value, dtype=np.float64)


def _bad(message: str, loc: list[str | int], kind: str) -> Exception:
    return ValueError(f"The sums hold an array that is not a typed array: {message}")
