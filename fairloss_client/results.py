"""Results merged from the answers to consecutive chunks, as one request would have given them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import reduce
from typing import Any

import torch

from fairloss.bootstrap import Bootstrap
from fairloss.breakdown import group_report
from fairloss.classes import class_report
from fairloss.metrics import CRITERIA, Violations, superior_violations
from fairloss.scoring import BatchScores, metrics, reduced
from fairloss.sums import ScoreSums, rank
from fairloss.uncertainty import differences, intervals
from fairloss_client.arrays import Array, ArrayLike, as_numpy
from fairloss_wire.answers import EXTRA_COLUMNS, column, per_sample_columns, sums_from_dict

RULE_COLUMNS = tuple(c for c in CRITERIA if c in EXTRA_COLUMNS)
"""The scoring rules' per-sample columns (``brier``, ``pll``, ``pbs``) that `compare` asks for
to count violations; the command line asks for them in ``score`` too, so that both write the
same columns."""


@dataclass(frozen=True)
class ScoreResult:
    """One batch's scores, however many chunks it was sent in; aggregates come from `sums`."""

    n: int
    shape: tuple[int, ...]
    num_classes: int
    reduction: str
    precision: str
    devices: tuple[str, ...]
    sums: ScoreSums
    per_sample: dict[str, Array]
    chunks: int
    bootstrap: Bootstrap | None = None
    weighted: bool = False
    warnings: tuple[str, ...] = ()

    @property
    def intervals(self) -> dict[str, dict[str, Any]]:
        """Each criterion's percentile interval (``estimate``, ``low``, ``high``) when a
        bootstrap was asked for, from the merged replicate sums; empty otherwise."""
        if self.bootstrap is None:
            return {}
        return intervals(self.sums, self.bootstrap.confidence_level)

    @property
    def classes(self) -> dict[str, Any] | None:
        """With ``per_class``: per-class support, precision, recall, F1, losses and calibration
        error (lists of length C, NaN where a denominator is 0) and the confusion cells, from
        the merged per-class sums (`fairloss.classes.class_report`); None otherwise."""
        if self.sums.classes is None:
            return None
        return class_report(self.sums.classes, self.sums.scale)

    @property
    def groups(self) -> dict[str, list[dict[str, Any]]] | None:
        """With ``groups``: each column's entries, one per key in key order, shaped as the
        service's ``groups`` (`fairloss.breakdown.group_report`) from the sums merged by key;
        None otherwise."""
        if self.sums.groups is None:
            return None
        level = None if self.bootstrap is None else self.bootstrap.confidence_level
        return group_report(self.sums.groups, self.sums, self.reduction, self.weighted, level)

    @property
    def reduced(self) -> dict[str, float]:
        """``ce``, ``penalty`` and ``total`` reduced as asked (NaN: a mean of no sample)."""
        return reduced(self.sums, self.reduction)

    @property
    def metrics(self) -> dict[str, float]:
        """Accuracy, log loss, Brier, PLL, PBS (means) and ECE."""
        return metrics(self.sums)


@dataclass(frozen=True, kw_only=True)
class CandidateResult(ScoreResult):
    name: str
    violations: dict[str, Violations]


@dataclass(frozen=True)
class CompareResult:
    candidates: list[CandidateResult]
    ranking: dict[str, list[str]]
    differences: list[dict[str, Any]] = field(default_factory=list)


def score_result(
    batch: BatchScores, extra_columns: tuple[str, ...] = (), bootstrap: Bootstrap | None = None
) -> ScoreResult:
    """The result of one batch scored in this process (`fairloss.score_batch`)."""
    return ScoreResult(
        n=batch.n,
        shape=batch.shape,
        num_classes=batch.num_classes,
        reduction=batch.options.reduction,
        precision=batch.options.precision,
        devices=(batch.device,),
        sums=batch.sums,
        per_sample=per_sample_columns(batch, extra_columns),
        chunks=1,
        bootstrap=bootstrap,
        weighted=batch.weighted,
        warnings=batch.warnings,
    )


def compare_result(
    batches: Mapping[str, BatchScores], bootstrap: Bootstrap | None = None
) -> CompareResult:
    """The result of candidates scored in this process, with their violations and every
    criterion's column (as `Client.compare` asks for them)."""
    results = [
        CandidateResult(
            **{
                f.name: getattr(score_result(batch, RULE_COLUMNS, bootstrap), f.name)
                for f in fields(ScoreResult)
            },
            name=name,
            violations=batch.violations or {},
        )
        for name, batch in batches.items()
    ]
    return CompareResult(results, rank({r.name: r.sums for r in results}), _differences(results))


def _differences(results: Sequence[CandidateResult]) -> list[dict[str, Any]]:
    """Paired differences of every pair of candidates, when bootstrapped."""
    first = results[0]
    if first.bootstrap is None:
        return []
    counted = first.per_sample.get("counted")
    mask = torch.ones(first.n, dtype=torch.bool) if counted is None else torch.from_numpy(counted)
    return differences(
        [r.name for r in results],
        [r.sums for r in results],
        [torch.from_numpy(r.per_sample["correct"]) for r in results],
        mask,
        first.bootstrap.confidence_level,
    )


def decode_columns(body: dict[str, Any]) -> dict[str, Any]:
    """A ``/score`` or ``/compare`` answer with its per-sample columns (typed arrays or lists)
    made numpy arrays in their dtypes, in place. The drivers call it as each chunk's answer
    arrives, so that decoding overlaps the other chunks' scoring and `merge_scores` only
    concatenates.

    Raises:
        ValueError: a column that is neither a list nor a well-formed typed array.
    """
    for scored in body.get("candidates") or [body]:
        columns = scored.get("per_sample") or {}
        for name, value in columns.items():
            columns[name] = column(name, [value], scored["precision"])
    return body


def merge_scores(parts: Sequence[Mapping[str, Any]]) -> ScoreResult:
    """One result from the ``/score`` bodies (or one candidate's) of consecutive chunks."""
    first = parts[0]
    precision = first["precision"]
    per_sample = {
        name: column(name, [part["per_sample"][name] for part in parts], precision)
        for name in first.get("per_sample") or {}
    }
    return ScoreResult(
        n=sum(int(part["n"]) for part in parts),
        shape=(sum(int(part["shape"][0]) for part in parts), *map(int, first["shape"][1:])),
        num_classes=int(first["num_classes"]),
        reduction=first["reduced"]["reduction"],
        precision=precision,
        devices=tuple(sorted({part["device"] for part in parts})),
        sums=reduce(ScoreSums.merge, (sums_from_dict(part["sums"]) for part in parts)),
        per_sample=per_sample,
        chunks=len(parts),
        bootstrap=Bootstrap(**first["bootstrap"]) if "bootstrap" in first else None,
        weighted="weight" in first["sums"],
        warnings=tuple(dict.fromkeys(w for part in parts for w in part.get("warnings", ()))),
    )


def violations(
    per_sample: Mapping[str, Array], sample_weight: ArrayLike | None = None
) -> dict[str, Violations]:
    """Superior violations under each criterion whose per-sample column is present, counted
    over the merged columns (pairs cross chunks), weighted by ``sample_weight`` if given."""
    correct = torch.from_numpy(per_sample["correct"])
    counted = per_sample.get("counted")
    mask = None if counted is None else torch.from_numpy(counted)
    weight = (
        None if sample_weight is None else torch.from_numpy(as_numpy(sample_weight).reshape(-1))
    )
    return {
        name: superior_violations(
            torch.from_numpy(per_sample[name]), correct, mask, sample_weight=weight
        )
        for name in CRITERIA
        if name in per_sample
    }


def merge_comparisons(
    parts: Sequence[Mapping[str, Any]], sample_weight: ArrayLike | None = None
) -> CompareResult:
    """One result from the ``/compare`` bodies of consecutive chunks."""
    results = []
    for k, entry in enumerate(parts[0]["candidates"]):
        merged = merge_scores([part["candidates"][k] for part in parts])
        results.append(
            CandidateResult(
                **{f.name: getattr(merged, f.name) for f in fields(merged)},
                name=entry["name"],
                violations=violations(merged.per_sample, sample_weight),
            )
        )
    return CompareResult(results, rank({r.name: r.sums for r in results}), _differences(results))
