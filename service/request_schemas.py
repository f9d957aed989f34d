"""The documented shapes of request bodies, for ``/openapi.json``.

The loss options' model is built from the core's one declaration (`fairloss.options`), so the
schema cannot drift from what the core checks. Bodies are not validated through these models:
the codecs read them (`service.json_codec`) and the core checks them (`fairloss.scoring`,
`fairloss.slices`). Only `ResponseOptions`, which shape the JSON answer and exist nowhere else,
are validated here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, create_model

from fairloss.options import Spec, specs
from fairloss.slices import MAX_COLUMNS, MAX_KEYS, MAX_NAME
from fairloss_wire.typed_arrays import WIRE


class TypedArray(BaseModel):
    """An array as its bytes: little-endian elements in row-major order, standard base64
    (`fairloss_wire.typed_arrays`). float16, bfloat16, float32 and float64 hold predictions and
    weights, int32 and int64 labels and keys; answers use bool too."""

    dtype: Literal["float16", "bfloat16", "float32", "float64", "int32", "int64", "bool"]
    shape: list[int]
    data: str = Field(description="the elements' bytes in standard base64")


assert TypedArray.model_fields["dtype"].annotation.__args__ == tuple(WIRE)  # type: ignore[union-attr]


README_LOGITS: JsonValue = [[0.34, 0.33, 0.33], [0.49, 0.51, 0.0]]
README_LABELS: JsonValue = [0, 0]

ExtraColumn = Literal["confidence", "log_loss", "brier", "pll", "pbs"]
# N x C rows, N binary scores of class 1, N x C x d1 x ... x dk nested arrays, or a typed array
Predictions = list[list[float]] | list[float] | list[list[list[Any]]] | TypedArray
# N labels (or weights), or N x d1 x ... x dk nested arrays, or a typed array
Labels = list[int] | list[list[Any]] | TypedArray
Weights = list[float] | list[list[Any]] | TypedArray


def _field(default: Any, doc: str, spec: Spec) -> tuple[Any, Any]:
    """A pydantic field documenting one declared option: its type, bounds and default."""
    types: dict[str, Any] = {
        "number": float,
        "integer": int,
        "choice": Literal[spec.choices] if spec.choices else str,
        "weights": list[Annotated[float, Field(ge=0, allow_inf_nan=False)]],
        "device": str,
    }
    kind = types[spec.kind]
    bounds = {k: getattr(spec, k) for k in ("gt", "ge", "le", "lt") if getattr(spec, k) is not None}
    return (kind | None if spec.nullable else kind), Field(default, description=doc, **bounds)


LossOptions: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "LossOptions",
    __config__=ConfigDict(extra="forbid"),
    **{name: _field(*declared) for name, declared in specs().items()},
)


class ResponseOptions(BaseModel):
    """What the JSON answer holds besides the aggregates; unknown fields are for the codec."""

    model_config = ConfigDict(strict=True, frozen=True)

    per_sample: bool = Field(True, description="false: aggregates only, no per-sample columns")
    extra_columns: list[ExtraColumn] = Field(
        default_factory=list, description="more per-sample columns to return"
    )
    response_arrays: Literal["json", "base64"] = Field(
        "json",
        description="base64: the per-sample columns as typed arrays {dtype, shape, data}",
    )
    per_class: bool = Field(
        False, description="add `classes` (per-class metrics and the confusion cells)"
    )


TYPED = "or a typed array {dtype, shape, data (base64)}"


class BootstrapRequest(BaseModel):
    """A paired Poisson bootstrap over the items (rows, or first-axis entries)."""

    model_config = ConfigDict(extra="forbid")

    replicates: int = Field(1000, ge=1, le=10_000)
    confidence_level: float = Field(0.95, gt=0, lt=1)
    seed: int = Field(
        0,
        ge=0,
        lt=2**64,
        description="every bit changes the draws (past 2**53, send it as JSON's exact integer; "
        "JavaScript's numbers round it)",
        json_schema_extra={"format": "uint64"},
    )
    replicate_sums: bool = Field(False, description="return the per-replicate sums (mergeable)")


class Resampled(BaseModel):
    bootstrap: BootstrapRequest | None = Field(None, description="intervals and paired tests")
    row_offset: int = Field(
        0, ge=0, lt=2**63, description="index in the whole dataset of this request's first item"
    )


Int64 = Annotated[int, Field(ge=-(2**63), lt=2**63)]


class GroupCounts(BaseModel):
    """The whole dataset's keys of one column and how many items hold each."""

    model_config = ConfigDict(extra="forbid")

    keys: list[str] | list[Int64]
    counts: list[Annotated[int, Field(ge=1)]]


class Grouped(BaseModel):
    groups: (
        dict[
            Annotated[str, Field(min_length=1, max_length=MAX_NAME)],
            list[str] | list[Int64] | TypedArray,
        ]
        | None
    ) = Field(
        None,
        min_length=1,
        max_length=MAX_COLUMNS,
        description=f"1 to {MAX_COLUMNS} group columns, each one key per item (the labels' "
        "first axis), all strings or all integers (or a typed int32/int64 array), at most "
        f"{MAX_KEYS} distinct keys; each scored body gains `groups`, one entry per key",
    )
    group_counts: dict[str, GroupCounts] | None = Field(
        None,
        description="with groups and a bootstrap, for a dataset sent in chunks: each column's "
        "keys and item counts in the whole dataset (default: this request's), so every chunk's "
        "slice-versus-rest randomization draws at the dataset's shares",
    )


class ScoreRequest(LossOptions, ResponseOptions, Resampled, Grouped):
    logits: Predictions | None = Field(
        None,
        description="N x C (or N x C x d1 x ... x dk) logits, one row per sample, or N binary "
        "scores s of class 1 (read as the logits (0, s)), "
        + TYPED
        + "; exactly one of logits, probabilities and log_probabilities",
    )
    probabilities: Predictions | None = Field(
        None,
        description="probabilities in [0, 1], each sample summing to 1 (or N of class 1), "
        "clipped at the machine epsilon of their dtype as scikit-learn's log_loss clips, " + TYPED,
    )
    log_probabilities: Predictions | None = Field(
        None,
        description="log-probabilities <= 0 (or N of class 1), each sample's logsumexp 0, "
        "clipped as the probabilities are, " + TYPED,
    )
    labels: Labels = Field(
        description="class labels in [0, C) or equal to ignore_index, one per sample (the "
        "predictions' shape without C), " + TYPED
    )
    sample_weight: Weights | None = Field(
        None, description="non-negative weights of the labels' shape, " + TYPED
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"logits": README_LOGITS, "labels": README_LABELS}]},
    )


class Candidate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    logits: Predictions | None = Field(
        None, description="exactly one of logits, probabilities and log_probabilities"
    )
    probabilities: Predictions | None = None
    log_probabilities: Predictions | None = None


class CompareRequest(LossOptions, ResponseOptions, Resampled, Grouped):
    labels: Labels
    sample_weight: Weights | None = None
    candidates: list[Candidate] = Field(min_length=1, description="unique names, one shape")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "labels": README_LABELS,
                    "candidates": [{"name": "model-a", "logits": README_LOGITS}],
                }
            ]
        },
    )
