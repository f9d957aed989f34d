"""The documented shapes of bodies, for ``/openapi.json``.

The loss options' model is built from the core's one declaration (`fairloss.options`), so the
schema cannot drift from what the core checks. Bodies are not validated through these models:
the codecs read them (`service.json_codec`) and the core checks them (`fairloss.scoring`).
Only `ResponseOptions`, which shape the JSON answer and exist nowhere else, are validated here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, create_model

from fairloss.options import Spec, specs

README_LOGITS: JsonValue = [[0.34, 0.33, 0.33], [0.49, 0.51, 0.0]]
README_LABELS: JsonValue = [0, 0]

ExtraColumn = Literal["confidence", "log_loss", "brier", "pll", "pbs"]


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
    seed: int = Field(0, ge=0, lt=2**64, description="every bit changes the draws")
    replicate_sums: bool = Field(False, description="return the per-replicate sums (mergeable)")


class Resampled(BaseModel):
    bootstrap: BootstrapRequest | None = Field(None, description="intervals and paired tests")
    row_offset: int = Field(
        0, ge=0, lt=2**63, description="index in the whole dataset of this request's first item"
    )


class ScoreRequest(LossOptions, ResponseOptions, Resampled):
    logits: list[list[float]] | dict[str, Any] | None = Field(
        None,
        description="N x C (or N x C x d1 x ... x dk) logits, one row per sample, "
        + TYPED
        + "; exactly one of logits, probabilities and log_probabilities",
    )
    probabilities: list[list[Any]] | dict[str, Any] | None = Field(
        None, description="probabilities in [0, 1], each sample summing to 1, " + TYPED
    )
    log_probabilities: list[list[Any]] | dict[str, Any] | None = Field(
        None, description="log-probabilities <= 0, each sample's logsumexp 0, " + TYPED
    )
    labels: list[Any] | dict[str, Any] = Field(
        description="class labels in [0, C) or equal to ignore_index, one per sample (the "
        "predictions' shape without C), " + TYPED
    )
    sample_weight: list[Any] | dict[str, Any] | None = Field(
        None, description="non-negative weights of the labels' shape, " + TYPED
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"logits": README_LOGITS, "labels": README_LABELS}]},
    )


class Candidate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    logits: list[list[float]] | dict[str, Any] | None = Field(
        None, description="exactly one of logits, probabilities and log_probabilities"
    )
    probabilities: list[list[float]] | dict[str, Any] | None = None
    log_probabilities: list[list[float]] | dict[str, Any] | None = None


class CompareRequest(LossOptions, ResponseOptions, Resampled):
    labels: list[int] | dict[str, Any]
    sample_weight: list[float] | dict[str, Any] | None = None
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


Typed = dict[str, Any]  # {"dtype", "shape", "data"}: a typed base64 array


class PerSample(BaseModel):
    """Equal-length columns, one value per sample (position, with K-dimensional outputs, in the
    row-major order of ``shape``); typed arrays with ``"response_arrays": "base64"``."""

    ce: list[float] | Typed
    penalty: list[float] | Typed
    total: list[float] | Typed
    predicted: list[int] | Typed
    correct: list[bool] | Typed
    counted: list[bool] | Typed | None = Field(None, description="when ignore_index is set")
    confidence: list[float] | Typed | None = None
    log_loss: list[float] | Typed | None = None
    brier: list[float] | Typed | None = None
    pll: list[float] | Typed | None = None
    pbs: list[float] | Typed | None = None


class Reduced(BaseModel):
    reduction: Literal["mean", "sum"]
    ce: float | None
    penalty: float | None
    total: float | None


class Metrics(BaseModel):
    """Weighted means over the counted samples; null when they weigh nothing."""

    accuracy: float | None
    log_loss: float | None
    brier: float | None = Field(description="summed over classes, as in the paper")
    pll: float | None = Field(description="Penalized Log Loss")
    pbs: float | None = Field(description="Penalized Brier Score")
    ece: float | None = Field(description="top-label expected calibration error")
    classwise_ece: float | None = Field(
        None, description="with per_class: the mean of classes.ece (Kull et al. 2019)"
    )


class Bins(BaseModel):
    """Per calibration bin: the samples' count (weight total with sample_weight), and their
    confidence and correct sums; whole numbers without weights."""

    count: list[float]
    confidence: list[float]
    correct: list[float]


class ReplicateArrays(BaseModel):
    """Per-replicate sums (R rows), to add up across chunks."""

    fields: list[str]
    values: list[list[float]] | Typed = Field(description="R x len(fields)")
    bins: list[list[list[float]]] | Typed = Field(
        description="R x 3 (count, confidence, correct) x bins"
    )


class Replicates(ReplicateArrays):
    flips: ReplicateArrays | None = Field(
        None,
        description="/compare: the same sums with each item weighted by its randomization "
        "sign (+1, or -1 to swap two candidates' outputs) instead of its Poisson weight",
    )


class Confusion(BaseModel):
    """The nonzero cells of the confusion matrix (rows: true classes), sorted by true then
    predicted class; ``count`` is weighted with sample_weight."""

    true: list[int]
    predicted: list[int]
    count: list[float]


class ClassSumsBody(BaseModel):
    """Per-class sums that merge across chunks: ``values`` C x len(fields) (weighted sums over
    the samples of true class c, ``predicted`` over those predicted as c), ``bins`` C x 3
    (weight, sum of p_c, weight with y == c) x bins, and the confusion cells (added per cell)."""

    fields: list[str]
    values: list[list[float]] | Typed
    bins: list[list[list[float]]] | Typed
    confusion: Confusion


class Classes(BaseModel):
    """Per class c (arrays of length C, index = class), as scikit-learn's
    precision_recall_fscore_support(average=None); null where a denominator is 0."""

    support: list[float] = Field(description="samples of true class c (weighted)")
    predicted: list[float] = Field(description="samples predicted as c (weighted)")
    recall: list[float | None]
    precision: list[float | None]
    f1: list[float | None]
    ce: list[float | None] = Field(description="mean over the samples of true class c")
    total: list[float | None]
    pll: list[float | None]
    pbs: list[float | None]
    ece: list[float | None] = Field(
        description="one-vs-rest calibration error of p_c against y == c, equal-width bins"
    )
    confusion: Confusion


class Sums(BaseModel):
    """Sums and counts that merge across chunks by addition; every mean divides by ``weight``
    (present with sample_weight; ``count`` without)."""

    count: int
    items: int = Field(description="items (first-axis entries) with a counted sample of weight > 0")
    weight: float | None = None
    correct: float
    ce: float
    penalty: float
    total: float
    log_loss: float
    brier: float
    pll: float
    pbs: float
    bins: Bins
    replicates: Replicates | None = None
    classes: ClassSumsBody | None = None


class Interval(BaseModel):
    estimate: float | None
    low: float | None
    high: float | None
    note: str | None = Field(None, description="why low and high are null, when they are")


class BootstrapUsed(BaseModel):
    replicates: int
    confidence_level: float
    seed: int


class ScoreResponse(BaseModel):
    n: int = Field(description="scored samples (positions, with K-dimensional outputs)")
    shape: list[int] = Field(description="the labels' shape")
    num_classes: int
    device: str
    precision: Literal["float32", "float64"]
    reduced: Reduced
    metrics: Metrics
    sums: Sums
    per_sample: PerSample | None = None
    bootstrap: BootstrapUsed | None = None
    intervals: dict[str, Interval] | None = Field(None, description="percentile intervals")
    classes: Classes | None = Field(None, description="with per_class")


class ViolationCount(BaseModel):
    count: int = Field(description="pairs (i correct, j wrong) with score_i > score_j")
    pairs: int = Field(description="all (correct, wrong) pairs")
    examples: list[tuple[int, int]]
    weighted_count: float | None = Field(None, description="sum of w_i * w_j over those pairs")
    weighted_pairs: float | None = Field(None, description="sum of w_i * w_j over all pairs")


class CandidateResult(ScoreResponse):
    name: str
    violations: dict[str, ViolationCount]


class Difference(Interval):
    p_value: float | None = Field(
        description="two-sided, paired randomization test: (1 + k) / (1 + R), never 0"
    )
    p_adjusted: float | None = Field(description="Holm's adjustment over the pairs of candidates")
    mcnemar_p_value: float | None = Field(None, description="accuracy only")


class PairedDifference(BaseModel):
    a: str
    b: str
    criteria: dict[str, Difference] = Field(description="a - b")
    discordant: tuple[int, int] = Field(description="samples only a, only b gets right")


class CompareResponse(BaseModel):
    candidates: list[CandidateResult]
    ranking: dict[str, list[str]] = Field(description="candidate names, best first")
    differences: list[PairedDifference] | None = Field(None, description="with a bootstrap")


class FieldError(BaseModel):
    """One fault of a request, as pydantic words it: where (``loc``, field names and indices
    from the body's top), what (``msg``) and its kind (``type``, e.g. ``ragged_row``)."""

    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None
