"""Weighted means do not depend on the weights' scale: weights of 1e308 or 5e-324 (a field
report: ce null beside penalty 0.0, ce 0.75 where 0.926 is right) score as weights of 1, in the
core, through ``/score``, and merged from chunks summed at different scales."""

from __future__ import annotations

import math
from functools import reduce
from typing import Any

import httpx
import numpy as np
import pytest

from fairloss import ScoringOptions, score_batch
from fairloss.bootstrap import Bootstrap
from fairloss.scoring import BatchScores
from fairloss.sums import ScoreSums
from fairloss_wire.answers import sums_from_dict, sums_to_dict

RNG = np.random.default_rng(8)
N = 60
LOGITS = RNG.normal(size=(N, 3)) * 2
LABELS = RNG.integers(0, 3, N)
GROUPS = {"site": [int(k) for k in RNG.integers(0, 3, N)]}
OPTIONS = ScoringOptions(precision="float64")
# powers of two scale every weighted sum exactly; the others round each w * x once
POWERS = [2.0**-1074, 2.0**-1022, 2.0**-600, 2.0**-401, 2.0**401, 2.0**700, 2.0**1023]
OTHERS = [5e-324, 1e-300, 1e300, 1e308]


def scored(scale: float, **kwargs: Any) -> BatchScores:
    return score_batch(
        LOGITS,
        LABELS,
        OPTIONS,
        sample_weight=np.full(N, scale),
        per_class=True,
        groups=GROUPS,
        bootstrap=Bootstrap(99, seed=3),
        **kwargs,
    )


def answers(batch: BatchScores) -> dict[str, Any]:
    """Every answer that is a ratio of sums: the means, intervals, per-class and per-key."""
    classes = batch.sums.classes
    assert classes is not None
    from fairloss.breakdown import group_report
    from fairloss.classes import class_report
    from fairloss.uncertainty import intervals

    report = class_report(classes, batch.sums.scale)
    groups = batch.sums.groups
    assert groups is not None
    keyed = group_report(groups, batch.sums, "mean", True, 0.95)["site"]
    return {
        "reduced": batch.reduced,
        "metrics": batch.metrics,
        "intervals": intervals(batch.sums, 0.95),
        "classes": {k: report[k] for k in ("recall", "precision", "f1", "ce", "ece")},
        "groups": [{k: e[k] for k in ("metrics", "intervals", "vs_rest")} for e in keyed],
    }


@pytest.mark.parametrize("scale", POWERS, ids=lambda s: f"2**{math.frexp(s)[1] - 1}")
def test_power_of_two_weights_give_the_same_answers_bit_for_bit(scale: float) -> None:
    one = scored(1.0)
    got = scored(scale)
    assert answers(got) == answers(one)
    assert got.sums.unscaled("weight") == N * scale  # exact, or inf past float64
    keyed = [e["weight"] for e in answers_groups(got)]
    assert keyed == [sum(1 for k in GROUPS["site"] if k == key) * scale for key in (0, 1, 2)]


def answers_groups(batch: BatchScores) -> list[dict[str, Any]]:
    from fairloss.breakdown import group_report

    groups = batch.sums.groups
    assert groups is not None
    return group_report(groups, batch.sums, "mean", True)["site"]


@pytest.mark.parametrize("scale", OTHERS)
def test_any_weights_give_the_same_means_to_rounding(scale: float) -> None:
    one, got = scored(1.0), scored(scale)
    for name, value in one.metrics.items():
        assert got.metrics[name] == pytest.approx(value, rel=1e-14, abs=1e-15), name
    for name, value in one.reduced.items():
        assert got.reduced[name] == pytest.approx(value, rel=1e-14), name


def test_a_sum_reduction_is_in_the_weights_own_units() -> None:
    options = ScoringOptions(precision="float64", reduction="sum")
    one = score_batch(LOGITS, LABELS, options, sample_weight=np.ones(N))
    tiny = score_batch(LOGITS, LABELS, options, sample_weight=np.full(N, 2.0**-600))
    huge = score_batch(LOGITS, LABELS, options, sample_weight=np.full(N, 2.0**1023))
    for name, value in one.reduced.items():
        assert value > 2
        assert tiny.reduced[name] == math.ldexp(value, -600)
        assert huge.reduced[name] == math.inf  # 2**1023 times a sum past 2: past float64


def chunks(scales: list[float]) -> list[ScoreSums]:
    """The sums of consecutive chunks of the data, each chunk's weights of one scale."""
    parts = np.array_split(np.arange(N), len(scales))
    return [
        score_batch(
            LOGITS[rows],
            LABELS[rows],
            OPTIONS,
            sample_weight=np.full(len(rows), scale),
            per_class=True,
            groups={"site": [GROUPS["site"][k] for k in rows]},
            bootstrap=Bootstrap(99, seed=3),
            row_offset=int(rows[0]),
        ).sums
        for rows, scale in zip(parts, scales, strict=True)
    ]


def test_chunks_summed_at_different_scales_merge_into_the_whole() -> None:
    """Chunks of weights 2**1000 and 1 each sum at their own scale (42 and 0); merged (through
    the wire format, as the client merges them) they give the whole's sums, where the small
    chunk counts for nothing beside the large one, as it does in the whole."""
    whole = scored(1.0)
    same = reduce(ScoreSums.merge, chunks([2.0**1000, 2.0**1000, 2.0**1000]))
    assert same.scale == 1001 - 959
    assert same.mean("total") == whole.sums.mean("total")
    mixed = [sums_from_dict(sums_to_dict(s, True, "json", True)) for s in chunks([2.0**1000, 1.0])]
    assert [s.scale for s in mixed] == [42, 0]
    merged = mixed[0].merge(mixed[1])
    first = chunks([2.0**1000, 1.0])[0]
    assert merged.scale == 42
    assert merged.mean("total") == pytest.approx(first.mean("total"), rel=1e-15)
    assert merged.count == N


def test_a_class_and_a_key_of_tiny_weights_beside_huge_ones_keep_their_means() -> None:
    """Weights 1e300 and 1e-300 (a newcomer's case: scaled to bring the largest into [0.5, 1),
    the tiny ones fell to 0 and their class and key read null): the class and the key that
    hold only tiny weights score as they do alone."""
    tiny = LABELS == 1
    weights = np.where(tiny, 1e-300, 1e300)
    groups = {"site": ["tiny" if t else "huge" for t in tiny]}
    both = score_batch(
        LOGITS, LABELS, OPTIONS, sample_weight=weights, per_class=True, groups=groups
    )
    alone = score_batch(LOGITS[tiny], LABELS[tiny], OPTIONS, sample_weight=weights[tiny])
    classes = both.sums.classes
    assert classes is not None
    from fairloss.breakdown import group_report
    from fairloss.classes import class_report

    report = class_report(classes, both.sums.scale)
    assert report["ce"][1] == pytest.approx(alone.metrics["log_loss"], rel=1e-9)
    assert report["support"][1] == pytest.approx(weights[tiny].sum(), rel=1e-9)
    assert both.sums.groups is not None
    entries = group_report(both.sums.groups, both.sums, "mean", True)["site"]
    (key,) = (e for e in entries if e["key"] == "tiny")
    assert key["metrics"]["log_loss"] == pytest.approx(alone.metrics["log_loss"], rel=1e-9)
    assert key["weight"] == pytest.approx(weights[tiny].sum(), rel=1e-9)


@pytest.mark.anyio
@pytest.mark.parametrize("weight", [1e308, 5e-324])
async def test_the_field_report(client: httpx.AsyncClient, weight: float) -> None:
    body = {"logits": LOGITS.tolist(), "labels": LABELS.tolist(), "per_class": True}
    body["precision"] = "float64"
    plain = (await client.post("/score", json=body)).json()
    weighted = (await client.post("/score", json={**body, "sample_weight": [weight] * N})).json()
    assert weighted["sums"]["scale"] == (1024 - 959 if weight > 1 else -1073)
    for name, value in plain["metrics"].items():
        assert weighted["metrics"][name] == pytest.approx(value, rel=1e-14), name
    for name in ("ce", "penalty", "total"):
        assert weighted["reduced"][name] == pytest.approx(plain["reduced"][name], rel=1e-14)
    assert weighted["classes"]["recall"] == plain["classes"]["recall"]


@pytest.mark.parametrize("ratio", [1e10, 1e16, 1e20, 1e300])
def test_a_slice_that_holds_nearly_all_the_weight_differs_from_its_rest_exactly(
    ratio: float,
) -> None:
    """A newcomer's case: a key of weights ``ratio`` beside a key of weights 1. Its rest was
    the whole's sums minus its own, which kept no bits of the rest at 1e16 (total -2.45 where
    0.18 is right, ECE's difference outside [-1, 1]); it is now summed from the other keys."""
    from fairloss.breakdown import group_report

    heavy = np.arange(N) % 2 == 0
    weights = np.where(heavy, ratio, 1.0)
    groups = {"site": ["heavy" if h else "light" for h in heavy]}
    both = score_batch(
        LOGITS, LABELS, OPTIONS, sample_weight=weights, groups=groups, bootstrap=Bootstrap(99)
    )
    assert both.sums.groups is not None
    entries = group_report(both.sums.groups, both.sums, "mean", True, 0.95)["site"]
    one, other = (score_batch(LOGITS[h], LABELS[h], OPTIONS) for h in (heavy, ~heavy))
    for entry, sign in zip(entries, (1, -1), strict=True):
        gap = entry["vs_rest"]
        for name in ("log_loss", "pll", "accuracy", "ece"):
            want = sign * (one.metrics[name] - other.metrics[name])
            assert gap[name]["estimate"] == pytest.approx(want, rel=1e-9, abs=1e-12), name
            assert gap[name]["low"] <= gap[name]["estimate"] <= gap[name]["high"]
            assert gap[name]["p_value"] is not None


def test_a_randomization_whose_rest_could_weigh_nothing_is_no_test() -> None:
    """One item of weight 1e20 among items of weight 1: a pseudo-slice that draws it leaves a
    rest whose sums (the whole's minus the pseudo-slice's) keep no bits, so no p-value."""
    weights = np.ones(N)
    weights[0] = 1e20
    groups = {"site": ["a" if k < 10 else "b" for k in range(N)]}
    both = score_batch(
        LOGITS, LABELS, OPTIONS, sample_weight=weights, groups=groups, bootstrap=Bootstrap(99)
    )
    assert both.sums.groups is not None
    from fairloss.breakdown import group_report

    entries = group_report(both.sums.groups, both.sums, "mean", True, 0.95)["site"]
    for entry in entries:
        total = entry["vs_rest"]["total"]
        assert total["p_value"] is None
        assert (
            total["note"] == "a pseudo-slice can hold nearly all the weight: no randomization test"
        )
        assert total["low"] is not None
