"""The bootstrap's side of scoring: each item's sums, and the replicate sums of batches.

`item_matrix` sums a batch's counted samples per item (the first axis); `with_replicates`
weighs those rows by the Poisson weights (and the randomization tests' draws) of
`fairloss.bootstrap`, for the whole batch and for each key of its group columns;
`with_groups` gives a batch its per-key sums (`fairloss.slices`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fairloss.bootstrap import (
    FIELDS,
    Bootstrap,
    ReplicateSums,
    block_items,
    drawn_blocks,
    flip_signs,
    poisson_weights,
    replicate_sums,
    uniforms,
)
from fairloss.metrics import bin_index
from fairloss.slices import Column, Key, Slices, check_bootstrap_keys
from fairloss.sums import counted_weight, from_item_sums

if TYPE_CHECKING:
    from fairloss.scoring import BatchScores

Floats = np.ndarray[Any, np.dtype[np.float64]]


def item_matrix(batch: BatchScores) -> np.ndarray[Any, Any]:
    """(N, 9 + 3B) per-item sums of a batch (`segment_sums` of each item's positions): with
    K-dimensional outputs, the bootstrap resamples items (the first axis), a cluster bootstrap,
    as the positions of one image or sequence are not independent."""
    positions, items = batch.columns["counted"].shape[0], batch.shape[0]
    item_of = torch.arange(positions, device=batch.columns["counted"].device)
    return segment_sums(batch, item_of // (positions // items), items)


def segment_sums(batch: BatchScores, segment: torch.Tensor, segments: int) -> Floats:
    """(segments, 9 + 3B) sums of a batch's samples by ``segment`` (M,) int64 in ``[0,
    segments)``: the `FIELDS` weighted by sample weight (zero for samples that do not count),
    then each calibration bin's weight, confidence and correct sums."""
    columns, n_bins = batch.columns, batch.options.ece_bins
    weight = counted_weight(columns["counted"], batch.sample_weight)
    values = torch.stack([weight, *(columns[name].double() * weight for name in FIELDS[1:])], 1)
    sums = values.new_zeros(segments, len(FIELDS)).index_add_(0, segment, values)
    binned = [weight, columns["confidence"].double() * weight, columns["correct"] * weight]
    slot = segment * n_bins + bin_index(columns["confidence"], n_bins)
    bins = values.new_zeros(segments * n_bins, 3).index_add_(0, slot, torch.stack(binned, 1))
    bins = bins.reshape(segments, n_bins, 3).transpose(1, 2).reshape(segments, -1)
    return torch.cat([sums, bins], dim=1).cpu().numpy()


def replicates_bytes(
    items: int,
    candidates: int,
    ece_bins: int,
    replicates: int,
    keys: int = 0,
    answered: bool = False,
) -> int:
    """Bytes that `with_replicates` may hold at its peak for ``candidates`` batches of ``items``
    items (the first axis): each item's sums and bins (`item_matrix`), the weights drawn at
    once and the replicate sums (and the randomization's; with ``keys`` keys over the group
    columns, three sets per key), and when the sums are ``answered`` their JSON (up to 24 bytes
    a number). An upper bound that ``tests/test_memory_budget.py`` holds to the resident memory
    measured; what a server reserves for a bootstrap (`service.memory`)."""
    columns = len(FIELDS) + 3 * ece_bins
    per_item = 3 * 8 * columns + 512
    weights = replicates * min(block_items(replicates), items) * 16
    copies = 6 if candidates > 1 else 3  # with the randomization test's sums too
    sets = copies + 3 * keys
    sums = sets * 8 * replicates * candidates * columns
    answer = sets * 24 * replicates * candidates * columns if answered else 0
    return items * candidates * per_item + weights + sums + answer + 4 * 2**20


def with_replicates(
    batches: list[BatchScores], bootstrap: Bootstrap, row_offset: int = 0
) -> list[BatchScores]:
    """The batches (candidates scored against the same labels) with their per-replicate sums,
    from one draw of weights shared by all of them: a paired bootstrap. Two candidates or more
    also keep the randomization test's sign-weighted sums (`ReplicateSums.flips`). Each key of
    the batches' group columns gets its own replicates, flips and relabels."""
    first = batches[0]
    if first.groups is not None:
        check_bootstrap_keys(first.groups, bootstrap, first.options.ece_bins, first.shape[0])
    matrix = np.concatenate([item_matrix(batch) for batch in batches], axis=1)
    paired = len(batches) > 1
    poisson = replicate_sums(bootstrap, row_offset, matrix)
    flips = replicate_sums(bootstrap, row_offset, matrix, flip_signs) if paired else None
    width = matrix.shape[1] // len(batches)
    parts = [slice(k * width, (k + 1) * width) for k in range(len(batches))]
    done = []
    for batch, own in zip(batches, parts, strict=True):
        signed = None if flips is None else split_replicates(flips[:, own])
        replicates = replace(split_replicates(poisson[:, own]), flips=signed)
        done.append(replace(batch, sums=replace(batch.sums, replicates=replicates)))
    if first.groups is None or first.shares is None:
        return done
    for name, column in first.groups.items():
        keys = len(column.keys)
        drawn = keyed_replicates(bootstrap, row_offset, matrix, column, poisson_weights)
        signs = (
            keyed_replicates(bootstrap, row_offset, matrix, column, flip_signs) if paired else None
        )
        relabeled = relabel_sums(bootstrap, row_offset, matrix, first.shares[name])
        for k, own in enumerate(parts):
            batch = done[k]
            assert batch.sums.groups is not None
            slices = batch.sums.groups[name]
            with_keys = tuple(
                replace(
                    slices.sums[j],
                    replicates=replace(
                        split_replicates(drawn[j][:, own]),
                        flips=None if signs is None else split_replicates(signs[j][:, own]),
                        relabels=split_replicates(relabeled[j][:, own]),
                    ),
                )
                for j in range(keys)
            )
            groups = {**batch.sums.groups, name: Slices(slices.keys, with_keys, slices.seen)}
            done[k] = replace(batch, sums=replace(batch.sums, groups=groups))
    return done


def split_replicates(sums: Floats) -> ReplicateSums:
    """`ReplicateSums` from (R, 9 + 3B) sums in the layout of `item_matrix`."""
    bins = np.ascontiguousarray(sums[:, len(FIELDS) :].reshape(sums.shape[0], 3, -1))
    return ReplicateSums(np.ascontiguousarray(sums[:, : len(FIELDS)]), bins)


def with_groups(
    batch: BatchScores, columns: dict[str, Column], counts: dict[str, dict[Key, int]]
) -> BatchScores:
    """``batch`` with its group columns, each key's share of the dataset's items (from
    ``counts``, for the slice-versus-rest randomization) and each key's sums."""
    items = batch.shape[0]
    counted = batch.columns["counted"]
    per_item = counted.shape[0] // items
    weight = counted_weight(counted, batch.sample_weight)
    count = counted.reshape(items, -1).sum(dim=1).cpu().numpy()
    positive = (weight.reshape(items, -1).sum(dim=1) > 0).cpu().numpy()
    n_bins = batch.options.ece_bins
    groups, shares = {}, {}
    for name, column in columns.items():
        keys = len(column.keys)
        codes = torch.from_numpy(column.codes).to(counted.device)
        sums = segment_sums(batch, codes.repeat_interleave(per_item), keys)
        counts_of = np.bincount(column.codes, weights=count, minlength=keys)
        positives = np.bincount(column.codes, weights=positive, minlength=keys)
        groups[name] = Slices(
            column.keys,
            tuple(
                replace(
                    from_item_sums(int(counts_of[k]), int(positives[k]), sums[k], n_bins),
                    scale=batch.sums.scale,
                )
                for k in range(keys)
            ),
            tuple(column.counts().values()),
        )
        total = sum(counts[name].values())
        shares[name] = np.array([counts[name][key] / total for key in column.keys])
    return replace(batch, groups=columns, shares=shares, sums=replace(batch.sums, groups=groups))


def keyed_replicates(
    bootstrap: Bootstrap, row_offset: int, matrix: Floats, column: Column, draw: Any
) -> Floats:
    """(keys, R, K) replicate sums of each key's items: ``draw(bootstrap, start, count)``
    weighs the items (Poisson weights or flip signs), drawn once per block of items."""
    found = np.zeros((len(column.keys), bootstrap.replicates, matrix.shape[1]))
    for rows, weights in drawn_blocks(bootstrap, row_offset, matrix.shape[0], draw):
        codes = column.codes[rows]
        for k in np.unique(codes):
            mine = codes == k
            found[k] += weights[:, mine] @ matrix[rows][mine]
    return found


def relabel_sums(bootstrap: Bootstrap, row_offset: int, matrix: Floats, shares: Floats) -> Floats:
    """(keys, R, K) sums of the pseudo-slices of the slice-versus-rest randomization test: in
    randomization r, item i joins key k's pseudo-slice when its uniform ``u[r, i]`` (a function
    of (seed, r, index) alone, `fairloss.bootstrap.uniforms`) is below the key's share of the
    dataset's items, ``shares[k]``; so pseudo-slices have the key's size on average, whatever
    the items' keys."""
    found = np.zeros((shares.shape[0], bootstrap.replicates, matrix.shape[1]))
    for rows, u in drawn_blocks(bootstrap, row_offset, matrix.shape[0], uniforms):
        for k, share in enumerate(shares):
            found[k] += (u < share).astype(np.float64) @ matrix[rows]
    return found
