"""The paired Poisson bootstrap: split invariance, its weight generator, a brute-force reference,
McNemar's test, statistical validity by simulation, and the service end to end.

Every test is seeded, so its verdict does not depend on chance.
"""

from __future__ import annotations

import base64
import itertools
import math
import warnings
from dataclasses import replace
from functools import reduce
from typing import Any, Literal

import httpx
import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from fairloss.bootstrap import (
    CRITERIA,
    FEW_ITEMS,
    FIELDS,
    Bootstrap,
    ReplicateSums,
    flip_signs,
    mcnemar_p_value,
    poisson_weights,
)
from fairloss.draws import THRESHOLDS, hashes
from fairloss.options import ScoringOptions
from fairloss.replicates import with_replicates
from fairloss.scoring import BatchScores, score_batch
from fairloss.sums import ScoreSums
from fairloss.uncertainty import difference, differences, discordant, holm, intervals
from fairloss_wire.answers import sums_from_dict
from scripts.bootstrap_validity import by_size, simulate
from tests.conftest import SUMMARY_TABLES, assert_no_leak

Floats = np.ndarray[Any, np.dtype[np.float64]]
TOLERANCE = 1e-12
CHUNK = 700
IGNORED = -100


def close(got: Any, want: Any, where: str = "") -> None:
    """``got`` equals ``want`` (nested dicts and lists), numbers within TOLERANCE: absolute up
    to 1, relative above (the statistics are means of O(1) values)."""
    if isinstance(want, dict):
        assert isinstance(got, dict), where
        assert set(got) == set(want), f"{where}: keys {sorted(got)} != {sorted(want)}"
        for key in want:
            close(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list | tuple):
        assert len(got) == len(want), where
        for k, (g, w) in enumerate(zip(got, want, strict=True)):
            close(g, w, f"{where}[{k}]")
    elif want is None or isinstance(want, bool | str):
        assert got == want, f"{where}: {got!r} != {want!r}"
    else:
        assert got is not None, f"{where}: None != {want!r}"
        assert math.isfinite(got) == math.isfinite(want), f"{where}: {got!r} != {want!r}"
        if math.isfinite(want):
            bound = TOLERANCE * max(1.0, abs(want))
            assert abs(got - want) <= bound, f"{where}: {got!r} != {want!r}"


def dataset(
    rng: np.random.Generator, n: int, classes: int, positions: tuple[int, ...] = ()
) -> tuple[Floats, Floats, np.ndarray[Any, Any], Floats]:
    """Two candidates' logits, labels (about 5% ignored) and sample weights (some 0)."""
    shape = (n, classes, *positions)
    labels = rng.integers(0, classes, (n, *positions))
    labels[rng.random(labels.shape) < 0.05] = IGNORED
    weight = rng.uniform(0.0, 2.0, labels.shape)
    weight[rng.random(labels.shape) < 0.05] = 0.0
    truth = np.moveaxis(np.eye(classes)[np.maximum(labels, 0)], -1, 1)
    a = rng.normal(scale=1.5, size=shape) + 1.0 * truth
    b = rng.normal(scale=1.5, size=shape) + 0.7 * truth
    return a, b, labels, weight


OPTIONS = ScoringOptions(ignore_index=IGNORED)


# 1. Chunked equals whole ------------------------------------------------------------------


def scored_in_chunks(
    logits: Floats,
    labels: np.ndarray[Any, Any],
    weight: Floats,
    bootstrap: Bootstrap,
    offsets: bool = True,
) -> list[BatchScores]:
    return [
        score_batch(
            logits[start : start + CHUNK],
            labels[start : start + CHUNK],
            OPTIONS,
            sample_weight=weight[start : start + CHUNK],
            bootstrap=bootstrap,
            row_offset=start if offsets else 0,
        )
        for start in range(0, labels.shape[0], CHUNK)
    ]


def paired_in_chunks(
    a: Floats, b: Floats, labels: np.ndarray[Any, Any], weight: Floats, bootstrap: Bootstrap
) -> list[list[BatchScores]]:
    """Two candidates scored together chunk by chunk (as a `/compare` of each chunk): their
    replicates carry the randomization test's flips."""
    pairs = []
    for start in range(0, labels.shape[0], CHUNK):
        rows = slice(start, start + CHUNK)
        pair = [
            score_batch(z[rows], labels[rows], OPTIONS, sample_weight=weight[rows]) for z in (a, b)
        ]
        pairs.append(with_replicates(pair, bootstrap, start))
    return [list(chunks) for chunks in zip(*pairs, strict=True)]


def merged(batches: list[BatchScores]) -> ScoreSums:
    return reduce(ScoreSums.merge, (batch.sums for batch in batches))


@pytest.mark.parametrize(
    ("n", "classes", "positions"),
    [(5_000, 4, ()), (1_500, 3, (3,))],
    ids=["rows", "k_dimensional"],
)
def test_chunks_of_700_give_the_intervals_and_p_values_of_one_batch(
    n: int, classes: int, positions: tuple[int, ...]
) -> None:
    """5,000 rows cross the core's 4,096-item blocks; the K-dimensional case resamples items
    whose 3 positions each carry their own sample weight."""
    a, b, labels, weight = dataset(np.random.default_rng(11), n, classes, positions)
    bootstrap = Bootstrap(replicates=300, confidence_level=0.9, seed=12_345)
    whole = with_replicates(
        [score_batch(z, labels, OPTIONS, sample_weight=weight) for z in (a, b)], bootstrap
    )
    chunks = paired_in_chunks(a, b, labels, weight, bootstrap)
    assert len(chunks[0]) == math.ceil(n / CHUNK)
    sums = [merged(parts) for parts in chunks]
    for one, parts in zip(whole, sums, strict=True):
        assert one.sums.replicates is not None
        assert parts.replicates is not None
        np.testing.assert_allclose(parts.replicates.values, one.sums.replicates.values, 1e-12)
        np.testing.assert_allclose(parts.replicates.bins, one.sums.replicates.bins, 1e-12)
        assert parts.replicates.flips is not None
        assert one.sums.replicates.flips is not None
        np.testing.assert_allclose(
            parts.replicates.flips.values, one.sums.replicates.flips.values, 1e-12, 1e-9
        )
        close(intervals(parts, 0.9), intervals(one.sums, 0.9), "intervals")
    first, second = whole
    counts = discordant(
        first.columns["correct"], second.columns["correct"], first.columns["counted"]
    )
    chunk_counts = [
        discordant(x.columns["correct"], y.columns["correct"], x.columns["counted"])
        for x, y in zip(*chunks, strict=True)
    ]
    assert tuple(map(sum, zip(*chunk_counts, strict=True))) == counts
    want = difference(first.sums, second.sums, counts, 0.9)
    close(difference(sums[0], sums[1], counts, 0.9), want, "difference")
    # The comparison is not vacuous: the replicates vary, the models differ, and chunks that
    # all claim row_offset 0 resample with other weights and get other replicates.
    reference = first.sums.replicates
    assert reference is not None
    assert np.ptp(reference.statistics()["total"]) > 1e-3
    assert want["total"]["p_value"] is not None
    assert want["total"]["p_value"] < 0.05
    unaligned = merged(scored_in_chunks(a, labels, weight, bootstrap, offsets=False))
    assert unaligned.replicates is not None
    gap = np.abs(unaligned.replicates.values - reference.values).max()
    assert gap > 1.0


def weighted_means(batch: BatchScores, weights: Floats, n_bins: int) -> dict[str, Floats]:
    """Each criterion's replicate statistics, by hand in float64: ``weights`` (R, n) weigh the
    samples (the per-sample columns of ``batch``, flattened)."""
    counted = batch.columns["counted"].numpy()
    weights = weights * counted
    total = weights.sum(axis=1)
    means = {
        name: weights @ batch.columns[name].numpy().astype(np.float64) / total
        for name in ("ce", "penalty", "total", "log_loss", "brier", "pll", "pbs")
    }
    correct = batch.columns["correct"].numpy().astype(np.float64)
    means["accuracy"] = weights @ correct / total
    confidence = batch.columns["confidence"].numpy().astype(np.float64)
    # bin b holds the confidences in (b / B, (b + 1) / B]
    slot = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    onehot = np.eye(n_bins)[slot]
    count = weights @ onehot
    confidences = weights @ (onehot * confidence[:, None])
    corrects = weights @ (onehot * correct[:, None])
    means["ece"] = np.abs(corrects - confidences).sum(axis=1) / count.sum(axis=1)
    return means


def test_positions_of_an_item_share_one_poisson_weight() -> None:
    """A cluster bootstrap: the replicate sums of an (N, C, d) batch are those of its positions
    weighted by the item's Poisson weight, repeated d times; not by a weight per position."""
    n, classes, d, offset = 400, 3, 4, 977
    a, _, labels, weight = dataset(np.random.default_rng(5), n, classes, (d,))
    bootstrap = Bootstrap(replicates=64, seed=99)
    batch = score_batch(
        a, labels, OPTIONS, sample_weight=weight, bootstrap=bootstrap, row_offset=offset
    )
    assert batch.sums.replicates is not None
    got = batch.sums.replicates.statistics()
    items = poisson_weights(bootstrap, offset, n)
    shared = np.repeat(items, d, axis=1) * weight.reshape(-1)
    want = weighted_means(batch, shared, OPTIONS.ece_bins)
    for name in CRITERIA:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-12, atol=1e-12, err_msg=name)
    # Weights drawn per position (as if the positions were rows) give other statistics.
    apart = poisson_weights(bootstrap, offset * d, n * d) * weight.reshape(-1)
    assert (
        np.abs(weighted_means(batch, apart, OPTIONS.ece_bins)["total"] - got["total"]).max() > 1e-3
    )
    # Copies of a row at every position of an item, its weight split among them, resample as
    # the row: the item, not the position, is the unit.
    rows, _, row_labels, row_weight = dataset(np.random.default_rng(6), n, classes)
    copies = np.repeat(rows[..., None], d, axis=2)
    copy_labels = np.repeat(row_labels[:, None], d, axis=1)
    copy_weight = np.repeat(row_weight[:, None] / d, d, axis=1)
    one = score_batch(rows, row_labels, OPTIONS, sample_weight=row_weight, bootstrap=bootstrap)
    spread = score_batch(
        copies, copy_labels, OPTIONS, sample_weight=copy_weight, bootstrap=bootstrap
    )
    assert one.sums.replicates is not None
    assert spread.sums.replicates is not None
    for name, values in spread.sums.replicates.statistics().items():
        want_values = one.sums.replicates.statistics()[name]
        np.testing.assert_allclose(values, want_values, rtol=1e-12, atol=1e-12, err_msg=name)


# 2. The weight generator ------------------------------------------------------------------


def test_weights_depend_on_seed_replicate_and_index_alone() -> None:
    bootstrap = Bootstrap(replicates=40, seed=2024)
    for base in (0, 2**32 - 5_000, 2**40 + 17):
        whole = poisson_weights(bootstrap, base, 10_000)
        cuts = [0, 1, 700, 4_095, 4_096, 5_000, 9_999, 10_000]
        for start, stop in itertools.pairwise(cuts):
            part = poisson_weights(bootstrap, base + start, stop - start)
            np.testing.assert_array_equal(part, whole[:, start:stop])
    # replicate r's weights do not depend on how many replicates there are
    few = poisson_weights(Bootstrap(replicates=5, seed=2024), 123, 1_000)
    np.testing.assert_array_equal(few, poisson_weights(bootstrap, 123, 1_000)[:5])
    # any change of seed, replicate or index gives other weights (equal ~30% of the time,
    # the chance that two Poisson(1) draws are equal)
    reference = poisson_weights(bootstrap, 0, 10_000)
    others = {
        "seed + 1": poisson_weights(Bootstrap(replicates=40, seed=2025), 0, 10_000),
        "seed 0": poisson_weights(Bootstrap(replicates=40, seed=0), 0, 10_000),
        "seed 1": poisson_weights(Bootstrap(replicates=40, seed=1), 0, 10_000),
        "seed 2**62": poisson_weights(Bootstrap(replicates=40, seed=2**62), 0, 10_000),
        "next replicate": np.roll(reference, 1, axis=0),
        "index + 2**32": poisson_weights(bootstrap, 2**32, 10_000),
        "index + 1": poisson_weights(bootstrap, 1, 10_000),
    }
    chance = sum(stats.poisson.pmf(k, 1) ** 2 for k in range(20))
    for name, other in others.items():
        share = float(np.mean(other == reference))
        assert abs(share - chance) < 0.01, f"{name}: {share:.3f} of weights equal"


def poisson_counts(draws: Floats, top: int) -> tuple[Floats, Floats]:
    """Observed and expected counts of 0, 1, ..., top - 1 and (pooled) top or more."""
    observed = np.bincount(np.minimum(draws.astype(np.int64), top).ravel(), minlength=top + 1)
    probabilities = stats.poisson.pmf(np.arange(top), 1)
    expected = np.append(probabilities, 1 - probabilities.sum()) * draws.size
    return observed.astype(np.float64), expected


def test_weights_are_poisson_1() -> None:
    """10**6 draws, half across the index's 32-bit boundary: frequencies, mean, variance."""
    bootstrap = Bootstrap(replicates=100, seed=7)
    draws = np.concatenate(
        [poisson_weights(bootstrap, 0, 5_000), poisson_weights(bootstrap, 2**32 - 2_500, 5_000)]
    )
    assert draws.size == 10**6
    observed, expected = poisson_counts(draws, 7)  # 0..6, and 7 or more (83 expected)
    result = stats.chisquare(observed, expected)
    assert result.pvalue > 0.001, (result, observed, expected)
    n = draws.size
    assert abs(draws.mean() - 1) < 4 / math.sqrt(n)  # Var(X) = 1
    assert abs(draws.var(ddof=1) - 1) < 4 * math.sqrt(3 / n)  # mu4 - sigma**4 = 4 - 1


def test_weights_are_not_correlated() -> None:
    """Between replicates, between neighbouring items, and between seeds."""
    n = 10_000
    weights = poisson_weights(Bootstrap(replicates=60, seed=31), 0, n)
    standard = (weights - weights.mean(axis=1, keepdims=True)) / weights.std(axis=1, keepdims=True)
    correlation = standard @ standard.T / n
    pairs = correlation[np.triu_indices_from(correlation, k=1)]
    bound = 5 / math.sqrt(n)  # each is ~N(0, 1/n) when independent
    assert np.abs(pairs).max() < bound, np.abs(pairs).max()
    assert abs(pairs.mean()) < 4 / math.sqrt(n * pairs.size)
    lag = [np.corrcoef(row[:-1], row[1:])[0, 1] for row in weights]
    assert np.abs(lag).max() < bound
    assert abs(np.mean(lag)) < 4 / math.sqrt(n * len(lag))
    other = poisson_weights(Bootstrap(replicates=60, seed=32), 0, n)
    across = [np.corrcoef(x, y)[0, 1] for x, y in zip(weights, other, strict=True)]
    assert np.abs(across).max() < bound


def test_weight_table_is_poisson_1s_inverse_cdf() -> None:
    """Each weight k is reached by ``u`` in ``[T[k-1], T[k])``, so the thresholds must rise
    strictly. Floats make ``floor(2**32 * P(X <= k))`` 2**32 - 1 for k = 12..17, so the one
    hash value 2**32 - 1 draws weight 18 (not 12 or 13): item 1,428,930,003 of seed 0's
    replicate 0 (found by inverting the hash), once in every 2**32 draws (a 1,000 x 100,000
    request meets one 2% of the time).
    """
    assert np.all(np.diff(THRESHOLDS.astype(np.int64)) > 0), THRESHOLDS
    assert hashes(0, 1, "poisson", 1_428_930_003, 1)[0, 0] == 2**32 - 1
    weight = poisson_weights(Bootstrap(replicates=1, seed=0), 1_428_930_003, 1)
    assert weight[0, 0] <= 13, weight


@pytest.mark.parametrize(
    ("one", "other"),
    [(1, 8_424_555_817_135_017_156), (119_577, 132_609), (0, 2**63), (2**64 - 1, 2**64 - 2)],
)
def test_seeds_that_folded_to_one_32_bit_key_draw_apart(one: int, other: int) -> None:
    """Seeds were folded to 32 bits before keying the draws, so these pairs drew identical
    replicates; every bit of a 64-bit seed now changes them (Poisson weights and flips)."""
    first, second = Bootstrap(replicates=20, seed=one), Bootstrap(replicates=20, seed=other)
    share = float(np.mean(poisson_weights(first, 0, 5_000) == poisson_weights(second, 0, 5_000)))
    assert share < 0.35, share  # ~0.31: two Poisson(1) draws are equal that often
    signs = float(np.mean(flip_signs(first, 0, 5_000) == flip_signs(second, 0, 5_000)))
    assert abs(signs - 0.5) < 0.02, signs


def test_flips_are_fair_coins_apart_from_the_weights() -> None:
    bootstrap = Bootstrap(replicates=50, seed=3)
    signs = flip_signs(bootstrap, 10**6, 20_000)
    assert set(np.unique(signs)) == {-1.0, 1.0}
    assert abs(float(signs.mean())) < 0.01
    weights = poisson_weights(bootstrap, 10**6, 20_000)
    assert abs(np.corrcoef(signs.ravel(), weights.ravel())[0, 1]) < 0.01
    np.testing.assert_array_equal(flip_signs(bootstrap, 10**6 + 7, 5), signs[:, 7:12])


def test_seeds_of_any_size_draw_without_warning() -> None:
    for seed in (0, 1, 2, 12_345, 2**63 - 1, 2**63, 2**64 - 1):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            poisson_weights(Bootstrap(replicates=3, seed=seed), 0, 10)


# 3. The reference on small inputs --------------------------------------------------------


@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize("positions", [(), (2,)], ids=["rows", "k_dimensional"])
def test_replicate_statistics_match_brute_force(
    precision: Literal["float32", "float64"], positions: tuple[int, ...]
) -> None:
    """Resampling by hand with the same weights: (1) the weighted means of score_batch's
    columns in float64, with the ECE from weighted bins; (2) the replicate's resampled dataset
    (item i repeated w[r, i] times) scored anew."""
    n, offset = 60, 1_234
    options = replace(OPTIONS, precision=precision, ece_bins=10)
    a, _, labels, weight = dataset(np.random.default_rng(21), n, 4, positions)
    bootstrap = Bootstrap(replicates=40, seed=77)
    batch = score_batch(
        a, labels, options, sample_weight=weight, bootstrap=bootstrap, row_offset=offset
    )
    assert batch.sums.replicates is not None
    got = batch.sums.replicates.statistics()
    items = poisson_weights(bootstrap, offset, n)
    size = int(np.prod(positions, dtype=np.int64))
    want = weighted_means(batch, np.repeat(items, size, axis=1) * weight.reshape(-1), 10)
    for name in CRITERIA:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-12, atol=1e-12, err_msg=name)
    for r in range(0, bootstrap.replicates, 4):
        chosen = np.repeat(np.arange(n), items[r].astype(np.int64))
        resampled = score_batch(a[chosen], labels[chosen], options, sample_weight=weight[chosen])
        by_hand = resampled.sums
        values = {name: by_hand.mean(name) for name in CRITERIA[:7]}
        values |= {"accuracy": by_hand.accuracy, "ece": by_hand.ece}
        for name in CRITERIA:
            assert got[name][r] == pytest.approx(values[name], rel=1e-12, abs=1e-12), (r, name)


# 4. McNemar -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("only_a", "only_b"),
    [
        (0, 1),
        (1, 0),
        (0, 7),
        (3, 0),
        (1, 1),
        (5, 5),
        (3, 7),
        (10, 3),
        (25, 25),
        (24, 26),
        (100, 130),
        (1_000, 1_100),
        (20_000, 20_500),
        (20_500, 20_000),
        (40_000, 40_000),
        (0, 2_000),
        (1, 60_000),
    ],
)
def test_mcnemar_matches_scipys_binomial_test(only_a: int, only_b: int) -> None:
    want = stats.binomtest(only_a, only_a + only_b, 0.5).pvalue
    assert mcnemar_p_value(only_a, only_b) == pytest.approx(want, rel=1e-9, abs=1e-300)


def test_mcnemar_without_discordant_pairs_is_1() -> None:
    assert mcnemar_p_value(0, 0) == 1.0


# 5. Statistical validity by simulation ----------------------------------------------------


def test_intervals_cover_and_tests_reject_at_their_nominal_rates() -> None:
    result = simulate(trials=400, replicates=200)
    SUMMARY_TABLES["bootstrap validity (scripts/bootstrap_validity.py)"] = result.table()
    print(result.table())
    assert 0.92 <= result.coverage <= 0.98, result.table()
    assert 0.02 <= result.rejection <= 0.08, result.table()
    assert result.mcnemar_rejection <= 0.08, result.table()
    assert result.power > 0.5, result.table()


def test_paired_p_values_keep_their_promise_at_every_size() -> None:
    """With no true difference, p < 0.05 in at most 5% of trials (plus simulation error: 600
    trials give a standard error of 0.9%, so 3 of them allow 7.7%) at N = 5, 10, 30 and 1,000
    items, for each criterion; with one item there is no p-value at all."""
    result = by_size(trials=600)
    SUMMARY_TABLES["paired randomization test (scripts/bootstrap_validity.py)"] = result.table()
    assert result.worst() <= 0.077, result.table()
    assert result.one_item is None, result.table()


@pytest.mark.parametrize("seed", range(6))
def test_holm_matches_statsmodels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 0.2, 1 + seed * 3) ** rng.uniform(0.5, 3)
    p[: seed // 2] = p[-1]  # ties
    with_none: list[float | None] = [*p.tolist(), None]
    got = holm(with_none)
    assert got[-1] is None
    want = multipletests(p, method="holm")[1]
    np.testing.assert_allclose(np.array(got[:-1], dtype=np.float64), want, rtol=1e-15)


# 6. The service end to end ---------------------------------------------------------------


@pytest.mark.anyio
async def test_one_sample_has_no_interval_and_no_test(client: httpx.AsyncClient) -> None:
    """A field report: one sample with 200 replicates answered p = 0 for every criterion
    (zero-width intervals read as certainty) beside McNemar's 1.0. From fewer than two items
    the bounds and p-values are null, with a note saying why."""
    body = {
        "labels": [0],
        "candidates": [
            {"name": "a", "logits": [[2.0, 0.0]]},
            {"name": "b", "logits": [[0.0, 1.0]]},
        ],
        "bootstrap": {"replicates": 200},
    }
    result = await post(client, "/compare", body)
    for entry in result["candidates"]:
        for found in entry["intervals"].values():
            assert (found["low"], found["high"], found["note"]) == (None, None, FEW_ITEMS)
    [difference] = result["differences"]
    for name, found in difference["criteria"].items():
        assert found["p_value"] is None, name
        assert found["p_adjusted"] is None, name
        assert found["note"] == FEW_ITEMS, name
    assert difference["criteria"]["total"]["estimate"] < 0
    assert difference["criteria"]["accuracy"]["mcnemar_p_value"] is None


async def post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(path, json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def request(
    candidates: dict[str, Floats], labels: np.ndarray[Any, Any], weight: Floats, **extra: Any
) -> dict[str, Any]:
    return {
        "labels": labels.tolist(),
        "sample_weight": weight.tolist(),
        "ignore_index": IGNORED,
        "per_sample": False,
        "candidates": [{"name": k, "logits": v.tolist()} for k, v in candidates.items()],
        **extra,
    }


def score_request(
    logits: Floats, labels: np.ndarray[Any, Any], weight: Floats, **extra: Any
) -> dict[str, Any]:
    return {
        "logits": logits.tolist(),
        "labels": labels.tolist(),
        "sample_weight": weight.tolist(),
        "ignore_index": IGNORED,
        "per_sample": False,
        **extra,
    }


def array(value: Any) -> Floats:
    """A JSON array, nested lists or a typed array {dtype, shape, data}, decoded by hand."""
    if isinstance(value, dict):
        assert value["dtype"] == "float64"
        data = np.frombuffer(base64.b64decode(value["data"]), dtype="<f8")
        return data.reshape(value["shape"])
    return np.asarray(value, dtype=np.float64)


def replicates_of(body: dict[str, Any]) -> ScoreSums:
    """The sums of a scored body with its replicate sums."""
    replicates = body["sums"]["replicates"]
    assert replicates["fields"] == list(FIELDS)
    flips = replicates.get("flips")
    signed = None if flips is None else ReplicateSums(array(flips["values"]), array(flips["bins"]))
    sums = ReplicateSums(array(replicates["values"]), array(replicates["bins"]), signed)
    return replace(sums_from_dict(body["sums"]), replicates=sums)


@pytest.mark.anyio
async def test_compare_gives_the_cores_intervals_and_differences(
    client: httpx.AsyncClient,
) -> None:
    rng = np.random.default_rng(41)
    a, b, labels, weight = dataset(rng, 300, 4)
    c = np.asarray(rng.normal(scale=1.5, size=a.shape), dtype=np.float64)
    candidates = {"a": a, "b": b, "c": c}
    bootstrap = Bootstrap(replicates=250, confidence_level=0.9, seed=4_242)
    said = {"replicates": 250, "confidence_level": 0.9, "seed": 4_242}
    result = await post(
        client,
        "/compare",
        request(candidates, labels, weight, bootstrap=said, row_offset=5_000),
    )
    scored_here = [
        score_batch(z, labels, OPTIONS, sample_weight=weight) for z in candidates.values()
    ]
    core = dict(zip(candidates, with_replicates(scored_here, bootstrap, 5_000), strict=True))
    for entry in result["candidates"]:
        assert entry["bootstrap"] == said
        assert "replicates" not in entry["sums"]
        close(entry["intervals"], intervals(core[entry["name"]].sums, 0.9), entry["name"])
    pairs = [("a", "b"), ("a", "c"), ("b", "c")]
    assert [(d["a"], d["b"]) for d in result["differences"]] == pairs
    counted = core["a"].columns["counted"]
    want = differences(
        list(core),
        [batch.sums for batch in core.values()],
        [batch.columns["correct"] for batch in core.values()],
        counted,
        0.9,
    )
    for entry, (x, y), expected in zip(result["differences"], pairs, want, strict=True):
        counts = discordant(core[x].columns["correct"], core[y].columns["correct"], counted)
        assert entry["discordant"] == list(counts)
        close(entry["criteria"], expected["criteria"], f"{x} - {y}")
        assert entry["criteria"]["total"]["p_adjusted"] >= entry["criteria"]["total"]["p_value"]
    # /score of one candidate carries the same intervals
    single = score_request(a, labels, weight, bootstrap=said, row_offset=5_000)
    scored = await post(client, "/score", single)
    assert scored["intervals"] == result["candidates"][0]["intervals"]
    # and a request without bootstrap has neither intervals nor differences
    plain = await post(client, "/compare", request(candidates, labels, weight))
    assert "differences" not in plain
    assert all("intervals" not in entry for entry in plain["candidates"])


@pytest.mark.anyio
@pytest.mark.parametrize("arrays", ["json", "base64"])
@pytest.mark.parametrize("path", ["/score", "/compare"])
async def test_replicate_sums_come_back_as_asked(
    client: httpx.AsyncClient, path: str, arrays: str
) -> None:
    """``replicate_sums: true``: the core's replicate sums, as JSON lists or typed arrays."""
    a, _, labels, weight = dataset(np.random.default_rng(47), 50, 3)
    said = {"replicates": 30, "seed": 5, "replicate_sums": True}
    extra: dict[str, Any] = {"bootstrap": said, "row_offset": 10, "response_arrays": arrays}
    if path == "/score":
        entry = await post(client, path, score_request(a, labels, weight, **extra))
    else:
        entry = (await post(client, path, request({"a": a}, labels, weight, **extra)))[
            "candidates"
        ][0]
    assert isinstance(entry["sums"]["replicates"]["values"], dict) == (arrays == "base64")
    got = replicates_of(entry).replicates
    bootstrap = Bootstrap(replicates=30, seed=5)
    core = score_batch(
        a, labels, OPTIONS, sample_weight=weight, bootstrap=bootstrap, row_offset=10
    ).sums.replicates
    assert got is not None
    assert core is not None
    np.testing.assert_allclose(got.values, core.values, rtol=1e-12)
    np.testing.assert_allclose(got.bins, core.bins, rtol=1e-12)


@pytest.mark.anyio
async def test_halves_with_row_offset_merge_into_one_request(client: httpx.AsyncClient) -> None:
    """Halves of 437 and 463 rows (one answered as JSON lists, one as base64 typed arrays),
    their replicate sums added by hand, give the intervals and differences of one request."""
    a, b, labels, weight = dataset(np.random.default_rng(43), 900, 5)
    said = {"replicates": 400, "seed": 9_001, "replicate_sums": True}
    candidates = {"a": a, "b": b}
    whole = await post(client, "/compare", request(candidates, labels, weight, bootstrap=said))
    halves = []
    for (start, stop), arrays in (((0, 437), "json"), ((437, 900), "base64")):
        part = {k: v[start:stop] for k, v in candidates.items()}
        body = request(
            part,
            labels[start:stop],
            weight[start:stop],
            bootstrap=said,
            row_offset=start,
            response_arrays=arrays,
        )
        halves.append(await post(client, "/compare", body))
    assert isinstance(halves[1]["candidates"][0]["sums"]["replicates"]["values"], dict)
    sums = {}
    for k, entry in enumerate(whole["candidates"]):
        one = replicates_of(entry)
        assert one.replicates is not None
        assert one.replicates.values.shape == (400, len(FIELDS))
        assert one.replicates.bins.shape == (400, 3, 15)
        first, second = (replicates_of(half["candidates"][k]) for half in halves)
        assert first.replicates is not None
        assert second.replicates is not None
        halves_flips = [first.replicates.flips, second.replicates.flips]
        assert halves_flips[0] is not None
        assert halves_flips[1] is not None
        by_hand = ReplicateSums(
            first.replicates.values + second.replicates.values,
            first.replicates.bins + second.replicates.bins,
            ReplicateSums(
                halves_flips[0].values + halves_flips[1].values,
                halves_flips[0].bins + halves_flips[1].bins,
            ),
        )
        np.testing.assert_allclose(by_hand.values, one.replicates.values, rtol=1e-12)
        np.testing.assert_allclose(by_hand.bins, one.replicates.bins, rtol=1e-12)
        sums[entry["name"]] = replace(first.merge(second), replicates=by_hand)
        close(intervals(sums[entry["name"]], 0.95), entry["intervals"], entry["name"])
    counts = tuple(
        sum(half["differences"][0]["discordant"][k] for half in halves) for k in range(2)
    )
    [entry] = whole["differences"]
    assert list(counts) == entry["discordant"]
    want = difference(sums["a"], sums["b"], counts, 0.95)
    for name in CRITERIA:  # one pair: a family of one, adjusted p equal to p
        want[name]["p_adjusted"] = want[name]["p_value"]
    close(want, entry["criteria"], "a - b")


BAD_BOOTSTRAP: list[tuple[dict[str, Any], list[str]]] = [
    ({"bootstrap": {"replicates": 0}}, ["bootstrap", "replicates"]),
    ({"bootstrap": {"replicates": 10_001}}, ["bootstrap", "replicates"]),
    ({"bootstrap": {"replicates": 2.5}}, ["bootstrap", "replicates"]),
    ({"bootstrap": {"replicates": True}}, ["bootstrap", "replicates"]),
    ({"bootstrap": {"confidence_level": 0}}, ["bootstrap", "confidence_level"]),
    ({"bootstrap": {"confidence_level": 1}}, ["bootstrap", "confidence_level"]),
    ({"bootstrap": {"confidence_level": "0.9"}}, ["bootstrap", "confidence_level"]),
    ({"bootstrap": {"seed": -1}}, ["bootstrap", "seed"]),
    ({"bootstrap": {"seed": 2**64}}, ["bootstrap", "seed"]),
    ({"bootstrap": {"replicate_sums": "yes"}}, ["bootstrap", "replicate_sums"]),
    ({"bootstrap": {"replicates": 10, "resamples": 10}}, ["bootstrap", "resamples"]),
    ({"bootstrap": 1_000}, ["bootstrap"]),
    ({"bootstrap": [1_000]}, ["bootstrap"]),
    ({"bootstrap": "yes"}, ["bootstrap"]),
    ({"bootstrap": {}, "row_offset": -1}, ["row_offset"]),
    ({"bootstrap": {}, "row_offset": 1.5}, ["row_offset"]),
    ({"row_offset": 2**63}, ["row_offset"]),
]


@pytest.mark.anyio
async def test_bad_bootstrap_values_get_422_naming_the_field(client: httpx.AsyncClient) -> None:
    labels = [0, 1, 2]
    logits = [[2.0, 0.0, 0.0], [0.0, 1.0, 0.5], [0.1, 0.2, 0.3]]
    bodies: dict[str, dict[str, Any]] = {
        "/score": {"logits": logits, "labels": labels},
        "/compare": {"labels": labels, "candidates": [{"name": "m", "logits": logits}]},
    }
    for path, base in bodies.items():
        for extra, loc in BAD_BOOTSTRAP:
            response = await client.post(path, json={**base, **extra})
            where = f"{path} {extra}"
            assert response.status_code == 422, f"{where}: {response.status_code} {response.text}"
            assert response.headers["content-type"] == "application/problem+json", where
            problem = response.json()
            assert [e["loc"] for e in problem["errors"]] == [loc], f"{where}: {problem}"
            assert loc[-1] in problem["detail"], f"{where}: {problem['detail']}"
            assert_no_leak(response.text)
    for path, base in bodies.items():
        good = {**base, "bootstrap": {"replicates": 20}, "row_offset": 3}
        result = await post(client, path, good)
        assert "intervals" in (result if path == "/score" else result["candidates"][0])
