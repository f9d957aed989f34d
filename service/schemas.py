"""The documented shapes of response bodies, for ``/openapi.json`` (requests:
`service.request_schemas`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from service.request_schemas import TypedArray


class PerSample(BaseModel):
    """Equal-length columns, one value per sample (position, with K-dimensional outputs, in the
    row-major order of ``shape``); typed arrays with ``"response_arrays": "base64"``."""

    ce: list[float] | TypedArray
    penalty: list[float] | TypedArray
    total: list[float] | TypedArray
    predicted: list[int] | TypedArray
    correct: list[bool] | TypedArray
    counted: list[bool] | TypedArray | None = Field(None, description="when ignore_index is set")
    confidence: list[float] | TypedArray | None = None
    log_loss: list[float] | TypedArray | None = None
    brier: list[float] | TypedArray | None = None
    pll: list[float] | TypedArray | None = None
    pbs: list[float] | TypedArray | None = None


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
    values: list[list[float]] | TypedArray = Field(description="R x len(fields)")
    bins: list[list[list[float]]] | TypedArray = Field(
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
    predicted class; ``count`` is weighted with sample_weight (null past float64's range, as
    a weight total in the weights' own units can be)."""

    true: list[int]
    predicted: list[int]
    count: list[float | None]


class ClassSumsBody(BaseModel):
    """Per-class sums that merge across chunks, in a form that grows with the data, not with C
    (`fairloss.classes.pack`): ``values`` (rows x len(fields)) of the classes in ``rows``, the
    calibration bins past each class's first that hold anything (``cells``: class x ece_bins +
    bin; ``cell_values``: their weight, sum of p_c and weight with y == c) and the first bins'
    outcome weights where not 0; each first bin's weight and sum of p_c are ``weight`` and
    ``p_totals`` less the class's other bins."""

    fields: list[str]
    classes: int
    ece_bins: int
    rows: list[int] | TypedArray
    values: list[list[float]] | TypedArray
    weight: float
    p_totals: list[float] | TypedArray
    cells: list[int] | TypedArray
    cell_values: list[list[float]] | TypedArray
    confusion: Confusion


class Classes(BaseModel):
    """Per class c (arrays of length C, index = class), as scikit-learn's
    precision_recall_fscore_support(average=None); null where a denominator is 0."""

    support: list[float | None] = Field(
        description="samples of true class c (weighted; integers without sample_weight; null "
        "past float64's range, as a weight total in the weights' own units can be)"
    )
    predicted: list[float | None] = Field(
        description="samples predicted as c (weighted; null past float64's range)"
    )
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


class GroupSums(BaseModel):
    """One group column's sums: its keys, and one `Sums` per key (merged by key)."""

    keys: list[str] | list[int]
    seen: list[int] = Field(description="items holding each key (0: a key of group_counts only)")
    sums: list[Sums]


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
    groups: dict[str, GroupSums] | None = Field(None, description="with groups")
    scale: int | None = Field(
        None,
        description="present when the largest sample weight lies outside [2**-400, 2**959]: "
        "every "
        "weighted sum is then in units of 2**scale (exact), so that none leaves float64; to "
        "merge, bring two scales to the larger (multiply the other's sums by 2**(its - larger))",
    )


class Interval(BaseModel):
    estimate: float | None
    low: float | None
    high: float | None
    note: str | None = Field(None, description="why low and high are null, when they are")


class BootstrapUsed(BaseModel):
    replicates: int
    confidence_level: float
    seed: int = Field(json_schema_extra={"format": "uint64"})


class GroupEntry(BaseModel):
    """One key of a group column: its samples' numbers, as at the top level."""

    key: str | int
    count: int = Field(description="samples that count")
    weight: float | None = Field(None, description="their total weight, with sample_weight")
    reduced: Reduced
    metrics: Metrics
    intervals: dict[str, Interval] | None = Field(None, description="with a bootstrap")
    vs_rest: dict[str, Difference] | None = Field(
        None,
        description="with a bootstrap: the key's value minus all other items'; p_value from "
        "the slice-versus-rest randomization test, p_adjusted Holm's over the column's keys",
    )


class ScoreResult(BaseModel):
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
    warnings: list[str] | None = Field(
        None,
        description="what about the input looks like a mistake (logits that look like "
        "probabilities)",
    )
    groups: dict[str, list[GroupEntry]] | None = Field(
        None, description="with groups: one entry per key seen, in key order"
    )


class ViolationCount(BaseModel):
    count: int = Field(description="pairs (i correct, j wrong) with score_i > score_j")
    pairs: int = Field(description="all (correct, wrong) pairs")
    examples: list[tuple[int, int]]
    weighted_count: float | None = Field(None, description="sum of w_i * w_j over those pairs")
    weighted_pairs: float | None = Field(None, description="sum of w_i * w_j over all pairs")


class CandidateResult(ScoreResult):
    name: str
    violations: dict[str, ViolationCount]


class Difference(Interval):
    p_value: float | None = Field(
        description="two-sided, paired randomization test: (1 + k) / (1 + R), never 0"
    )
    p_adjusted: float | None = Field(description="Holm's adjustment over the pairs of candidates")
    mcnemar_p_value: float | None = Field(None, description="accuracy only")


class KeyDifference(BaseModel):
    key: str | int
    criteria: dict[str, Difference] = Field(
        description="a - b inside the key's items; p_adjusted: Holm's over the column's keys"
    )


class PairedDifference(BaseModel):
    a: str
    b: str
    criteria: dict[str, Difference] = Field(description="a - b")
    discordant: tuple[int, int] = Field(description="samples only a, only b gets right")
    groups: dict[str, list[KeyDifference]] | None = Field(None, description="with groups")


class CompareResult(BaseModel):
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
