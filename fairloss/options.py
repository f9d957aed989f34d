"""The scoring options, declared once.

`ScoringOptions` is the one list: each field carries its default, its documentation and its
`Spec` (what values it takes). Every surface derives from it: the JSON schema of ``/score`` and
``/compare``, the Open Inference Protocol's request ``parameters``, the Python client's keyword
arguments and the command line's flags. Its check, `ScoringOptions.__post_init__`, is the only
one: a bad value raises `InputError` with the same words on every surface.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from fairloss.errors import InputError, describe

INT64 = 2**63
REDUCTIONS = ("mean", "sum")
PRECISIONS = ("float32", "float64")


@dataclass(frozen=True)
class Spec:
    """What one option takes: a ``number`` (finite, within bounds), an ``integer`` (within
    bounds), one of ``choices``, class ``weights`` (finite numbers >= 0) or a ``device`` name;
    ``nullable`` options also take None (JSON null)."""

    kind: Literal["number", "integer", "choice", "weights", "device"]
    gt: float | None = None
    ge: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[str, ...] = ()
    nullable: bool = False


def option(default: Any, doc: str, spec: Spec) -> Any:
    return field(default=default, metadata={"doc": doc, "spec": spec})


@dataclass(frozen=True)
class ScoringOptions:
    """How a batch is scored. Defaults are pytorch-fairloss 0.1.1's and the paper's.

    Raises:
        InputError: (a ``ValueError``) naming the first option whose value is not allowed.
    """

    smooth_max_beta: float = option(
        1000.0, "sharpness beta of the smooth maximum", Spec("number", gt=0)
    )
    scaling_factor: float = option(1000.0, "steepness of the penalty", Spec("number", gt=0))
    class_weights: Sequence[float] | None = option(
        None, "C non-negative weights, one per class", Spec("weights", nullable=True)
    )
    label_smoothing: float = option(
        0.0, "label smoothing of the cross-entropy, as torch's", Spec("number", ge=0, le=1)
    )
    ignore_index: int | None = option(
        None,
        "label of samples that score 0 and do not count",
        Spec("integer", ge=-INT64, lt=INT64, nullable=True),
    )
    reduction: Literal["mean", "sum"] = option(
        "mean", "how `reduced` aggregates the per-sample terms", Spec("choice", choices=REDUCTIONS)
    )
    precision: Literal["float32", "float64"] = option(
        "float32", "compute precision", Spec("choice", choices=PRECISIONS)
    )
    device: str | None = option(
        None,
        "'auto', 'cpu', 'cuda' or 'cuda:K'; the server's default device when absent",
        Spec("device", nullable=True),
    )
    ece_bins: int = option(15, "equal-width bins of the ECE", Spec("integer", ge=1, le=1000))

    def __post_init__(self) -> None:
        for f in fields(self):
            value = _checked(f.name, getattr(self, f.name), f.metadata["spec"])
            object.__setattr__(self, f.name, value)


OPTION_NAMES: tuple[str, ...] = tuple(f.name for f in fields(ScoringOptions))


def specs() -> dict[str, tuple[Any, str, Spec]]:
    """Each option's default, documentation and `Spec`, in declaration order."""
    return {
        f.name: (f.default, f.metadata["doc"], f.metadata["spec"]) for f in fields(ScoringOptions)
    }


def _checked(name: str, value: Any, spec: Spec) -> Any:
    if value is None and spec.nullable:
        return None
    if spec.kind == "choice":
        if not isinstance(value, str) or value not in spec.choices:
            shown = repr(value) if isinstance(value, str) else describe(value)
            wanted = " or ".join(map(repr, spec.choices))
            raise InputError(
                f"Expected `{name}` to be {wanted}, but got {shown}", (name,), "literal_error"
            )
        return value
    if spec.kind == "device":
        if not isinstance(value, str):
            raise InputError(
                f"Expected `{name}` to be a device name, but got {describe(value)}",
                (name,),
                "string_type",
            )
        return value
    if spec.kind == "weights":
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise InputError(
                f"Expected `{name}` to be an array of numbers or null, but got {describe(value)}",
                (name,),
                "list_type",
            )
        weight = Spec("number", ge=0)
        return tuple(_number(f"{name}[{k}]", v, weight, (name, k)) for k, v in enumerate(value))
    if spec.kind == "integer":
        return _integer(name, value, spec)
    return _number(name, value, spec, (name,))


def _number(name: str, value: Any, spec: Spec, loc: tuple[str | int, ...]) -> float:
    expected = f"Expected `{name}` to be a finite number {_range(spec)}, but got"
    if type(value) not in (int, float):
        raise InputError(f"{expected} {describe(value)}", loc, "float_type")
    if not math.isfinite(value):
        raise InputError(f"{expected} {value}", loc, "finite_number")
    if kind := _outside(value, spec):
        raise InputError(f"{expected} {value}", loc, kind)
    return float(value)


def _integer(name: str, value: Any, spec: Spec) -> int:
    null = " (or null)" if spec.nullable else ""
    expected = f"Expected `{name}` to be an integer {_range(spec)}{null}, but got"
    if type(value) is not int:
        raise InputError(f"{expected} {describe(value)}", (name,), "int_type")
    if kind := _outside(value, spec):
        raise InputError(f"{expected} {value}", (name,), kind)
    return value


def _range(spec: Spec) -> str:
    """``larger than 0``, ``at least 0``, ``in [0, 1]`` or ``in [-2**63, 2**63)``."""
    if spec.gt is not None:
        return f"larger than {_bound(spec.gt)}"
    low = _bound(spec.ge if spec.ge is not None else -math.inf)
    if spec.le is None and spec.lt is None:
        return f"at least {low}"
    high = f"{_bound(spec.le)}]" if spec.le is not None else f"{_bound(spec.lt or 0)})"
    return f"in [{low}, {high}"


def _outside(value: float, spec: Spec) -> str | None:
    """The kind of the first bound ``value`` breaks, or None."""
    if spec.gt is not None and not value > spec.gt:
        return "greater_than"
    if spec.ge is not None and not value >= spec.ge:
        return "greater_than_equal"
    if spec.le is not None and not value <= spec.le:
        return "less_than_equal"
    if spec.lt is not None and not value < spec.lt:
        return "less_than"
    return None


def _bound(value: float) -> str:
    if abs(value) == INT64:
        return f"{'-' if value < 0 else ''}2**63"
    return f"{value:g}"
