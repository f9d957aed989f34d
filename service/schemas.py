"""Request options (validated with pydantic) and the documented shapes of bodies.

Only the small options are validated through pydantic; logits and labels are checked as arrays
(`service.payload`). The request and response models document the API in ``/openapi.json``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

INT64 = 2**63

README_LOGITS: JsonValue = [[0.34, 0.33, 0.33], [0.49, 0.51, 0.0]]
README_LABELS: JsonValue = [0, 0]

Weight = Annotated[float, Field(ge=0, allow_inf_nan=False)]
ExtraColumn = Literal["confidence", "log_loss", "brier", "pll", "pbs"]


class LossOptions(BaseModel):
    """Everything a scoring request may carry besides its arrays; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    smooth_max_beta: float = Field(1000.0, gt=0, allow_inf_nan=False)
    scaling_factor: float = Field(1000.0, gt=0, allow_inf_nan=False)
    class_weights: list[Weight] | None = Field(None, description="C non-negative weights")
    label_smoothing: float = Field(0.0, ge=0, le=1)
    ignore_index: int | None = Field(
        None, ge=-INT64, lt=INT64, description="label of samples that score 0 and do not count"
    )
    reduction: Literal["mean", "sum"] = "mean"
    device: str | None = Field(
        None, description="'auto', 'cpu', 'cuda' or 'cuda:K'; the server default when absent"
    )
    precision: Literal["float32", "float64"] = "float32"
    ece_bins: int = Field(15, ge=1, le=1000, description="equal-width bins for the ECE")
    per_sample: bool = Field(True, description="false: aggregates only, no per-sample columns")
    extra_columns: list[ExtraColumn] = Field(
        default_factory=list, description="more per-sample columns to return"
    )


class ScoreRequest(LossOptions):
    logits: list[list[float]] = Field(description="N x C logits, one row per sample")
    labels: list[int] = Field(description="N class labels in [0, C) or equal to ignore_index")

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"logits": README_LOGITS, "labels": README_LABELS}]}
    )


class Candidate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    logits: list[list[float]]


class CompareRequest(LossOptions):
    labels: list[int]
    candidates: list[Candidate] = Field(min_length=1, description="unique names, one shape")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "labels": README_LABELS,
                    "candidates": [{"name": "model-a", "logits": README_LOGITS}],
                }
            ]
        }
    )


class PerSample(BaseModel):
    ce: list[float]
    penalty: list[float]
    total: list[float]
    predicted: list[int]
    correct: list[bool]
    counted: list[bool] | None = Field(None, description="present when ignore_index is set")
    confidence: list[float] | None = None
    log_loss: list[float] | None = None
    brier: list[float] | None = None
    pll: list[float] | None = None
    pbs: list[float] | None = None


class Reduced(BaseModel):
    reduction: Literal["mean", "sum"]
    ce: float | None
    penalty: float | None
    total: float | None


class Metrics(BaseModel):
    """Means over the counted samples; null when no sample counts."""

    accuracy: float | None
    log_loss: float | None
    brier: float | None = Field(description="summed over classes, as in the paper")
    pll: float | None = Field(description="Penalized Log Loss")
    pbs: float | None = Field(description="Penalized Brier Score")
    ece: float | None = Field(description="top-label expected calibration error")


class Bins(BaseModel):
    count: list[int]
    confidence: list[float]
    correct: list[int]


class Sums(BaseModel):
    """Sums and counts that merge across chunks by addition."""

    count: int
    correct: int
    ce: float
    penalty: float
    total: float
    log_loss: float
    brier: float
    pll: float
    pbs: float
    bins: Bins


class ScoreResponse(BaseModel):
    n: int
    num_classes: int
    device: str
    precision: Literal["float32", "float64"]
    reduced: Reduced
    metrics: Metrics
    sums: Sums
    per_sample: PerSample | None = None


class ViolationCount(BaseModel):
    count: int = Field(description="pairs (i correct, j wrong) with score_i > score_j")
    pairs: int = Field(description="all (correct, wrong) pairs")
    examples: list[tuple[int, int]]


class CandidateResult(ScoreResponse):
    name: str
    violations: dict[str, ViolationCount]


class CompareResponse(BaseModel):
    candidates: list[CandidateResult]
    ranking: dict[str, list[str]] = Field(description="candidate names, best first")


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, object]] | None = None
