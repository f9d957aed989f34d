"""Slices of a dataset: group columns (one key per item), checked once, and each key's sums.

A column's keys are kept as given (strings, or integers), never renumbered: a batch's sums hold
one `ScoreSums` per key it has seen, ordered by key (strings by code point, integers
ascending), and `Slices.merge` takes the union of two batches' keys, so a key absent from one
chunk merges correctly. With a bootstrap, each key's sums carry its own replicates
(`fairloss.bootstrap.ReplicateSums`): its Poisson sums, the paired randomization's flips (for
differences between candidates inside the slice) and ``relabels``, the sums of the items drawn
into the key's pseudo-slice by the slice-versus-rest randomization test
(`fairloss.replicates.relabel_sums`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fairloss.bootstrap import Bootstrap
from fairloss.errors import InputError, describe, text_fault
from fairloss.sums import ScoreSums

Key = str | int
MAX_COLUMNS = 8
MAX_NAME = 64
MAX_KEYS = 10_000  # distinct keys of one column
# With a bootstrap, each key keeps R rows of 9 + 3B sums in each of four sets (replicates, flips,
# relabels and, asked for, the answer's copy), and its relabelled sums cost a pass over the items
# for each replicate: the keys of all columns x replicates x (9 + 3B) are at most
# `BOOTSTRAP_SUMS`, and items x keys x replicates at most `BOOTSTRAP_WORK` (about 10-20 s of
# matrix products on 2 cores; the Python client sizes its chunks by it).
BOOTSTRAP_SUMS = 2**22
BOOTSTRAP_WORK = 2**31
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class Column:
    """One group column of a batch: its distinct ``keys`` in order, and each item's key as an
    index into them (``codes``, (items,) int64)."""

    keys: tuple[Key, ...]
    codes: npt.NDArray[np.int64]

    def counts(self) -> dict[Key, int]:
        """How many items hold each key."""
        counts = np.bincount(self.codes, minlength=len(self.keys)).tolist()
        return dict(zip(self.keys, counts, strict=True))


def _bad(message: str, loc: tuple[str | int, ...], kind: str = "bad_groups") -> InputError:
    return InputError(message, ("groups", *loc), kind)


def checked_groups(groups: Any, items: int) -> dict[str, Column]:
    """Check ``groups`` (``{column: keys}``: 1 to 8 columns named by 1 to 64 characters, each
    with one key per item, all strings or all integers, no null) and index each column's keys.

    Raises:
        InputError: at ``groups`` or ``groups.<column>[.<position>]``, for the first fault.
    """
    if not isinstance(groups, Mapping) or not 1 <= len(groups) <= MAX_COLUMNS:
        got = f"{len(groups)} columns" if isinstance(groups, Mapping) else describe(groups)
        raise _bad(
            f"Expected `groups` to be an object of 1 to {MAX_COLUMNS} columns "
            f"{{name: [one key per item]}}, but got {got}",
            (),
        )
    return {name: _column(name, keys, items) for name, keys in groups.items()}


def as_columns(groups: Any, items: int) -> dict[str, Column]:
    """`checked_groups`, unless ``groups`` are checked columns already (of ``items`` items)."""
    if (
        isinstance(groups, Mapping)
        and groups
        and all(isinstance(c, Column) and c.codes.shape == (items,) for c in groups.values())
    ):
        return dict(groups)
    return checked_groups(groups, items)


def _column(name: Any, keys: Any, items: int) -> Column:
    if not isinstance(name, str):
        raise _bad(
            f"Expected each group column's name to be a string, but got {describe(name)}", ()
        )
    fault = text_fault(name)
    if not 1 <= len(name) <= MAX_NAME or fault is not None:
        shown = repr(name[:20] + "...") if len(name) > 20 else repr(name)
        why = fault or f"{shown} has {len(name)}"
        raise _bad(
            f"Expected each group column's name to be 1 to {MAX_NAME} characters of text, "
            f"but {why}",
            (),
        )
    if isinstance(keys, np.ndarray):  # numpy's integers, str or objects
        if keys.ndim != 1:
            raise _bad(
                f"Expected `groups.{name}` to be one key per item, a one-dimensional array, but "
                f"got shape {list(keys.shape)}",
                (name,),
            )
        values: list[Any] = keys.tolist()
    elif isinstance(keys, list | tuple):
        values = list(keys)
        if any(issubclass(t, np.integer) for t in set(map(type, values))):  # as Python's ints
            values = [int(key) if isinstance(key, np.integer) else key for key in values]
    else:
        raise _bad(
            f"Expected `groups.{name}` to be an array of keys (strings or integers), "
            f"but got {describe(keys)}",
            (name,),
        )
    if len(values) != items:
        raise _bad(
            f"Expected `groups.{name}` to hold one key per item ({items}), but got {len(values)}",
            (name,),
            "wrong_length",
        )
    kind: type = str if values and isinstance(values[0], str) else int
    if set(map(type, values)) != {kind}:  # the slow path only to find the first fault
        _bad_key(name, values, kind)
    if kind is int and values and not -(2**63) <= min(values) <= max(values) < 2**63:
        position = next(k for k, key in enumerate(values) if not -(2**63) <= key < 2**63)
        raise _bad(
            f"Expected `groups.{name}[{position}]` to be a 64-bit integer, but got "
            f"{values[position]}",
            (name, position),
            "bad_key",
        )
    unique = sorted(set(values))
    for key in unique if kind is str else ():
        if (fault := text_fault(key)) is not None:  # the answer echoes every key
            position = values.index(key)
            raise _bad(
                f"Expected `groups.{name}[{position}]` to be text, but {fault}",
                (name, position),
                "bad_key",
            )
    if len(unique) > MAX_KEYS:
        raise _bad(
            f"Expected at most {MAX_KEYS} distinct keys in `groups.{name}`, but got "
            f"{len(unique)}: a slice per key of that many is no longer a breakdown",
            (name,),
            "too_many_keys",
        )
    index = {key: k for k, key in enumerate(unique)}
    return Column(tuple(unique), np.array([index[key] for key in values], dtype=np.int64))


def _bad_key(name: str, values: list[Any], kind: type) -> None:
    """Raise the fault of the first key that is not a ``kind`` (a bool is no integer)."""
    for position, key in enumerate(values):
        if type(key) is not kind:
            wanted = "a string or an integer"
            if position:
                wanted = f"{'a string' if kind is str else 'an integer'}, as the first key"
            got = f"got {describe(key)}"
            if type(key) is float and key.is_integer() and abs(key) >= 2**63:  # read as float
                got = "got a number past the 64-bit integers"
            raise _bad(
                f"Expected `groups.{name}[{position}]` to be {wanted}, but {got}",
                (name, position),
                "bad_key",
            )


def checked_counts(
    counts: Any, columns: Mapping[str, Column]
) -> tuple[dict[str, Column], dict[str, dict[Key, int]]]:
    """The whole dataset's item count of each key (``group_counts``: ``{column: {"keys": [...],
    "counts": [...]}}``, for a dataset sent in chunks), checked against the batch's columns,
    and the columns holding every key the dataset has (a key absent here has no item here,
    but its pseudo-slices draw from these items too). None: the batch's own keys and counts.

    Raises:
        InputError: at ``group_counts[.<column>]`` when a column is missing, a key is not of
            the column's kind or repeats, a count is not a positive integer or is below the
            batch's own, or the columns' totals differ.
    """
    if counts is None:
        return dict(columns), {name: column.counts() for name, column in columns.items()}

    def bad(message: str, *loc: str) -> InputError:
        return InputError(message, ("group_counts", *loc), "bad_group_counts")

    if not isinstance(counts, Mapping) or set(counts) != set(columns):
        raise bad("Expected `group_counts` to have the columns of `groups`, and no other")
    tables: dict[str, dict[Key, int]] = {}
    for name, column in columns.items():
        given = counts[name]
        keys = given.get("keys") if isinstance(given, Mapping) else None
        numbers = given.get("counts") if isinstance(given, Mapping) else None
        if (
            not isinstance(keys, list)
            or not isinstance(numbers, list)
            or len(keys) != len(numbers)
            or set(given) != {"keys", "counts"}
        ):
            raise bad(
                f"Expected `group_counts.{name}` to be {{keys: [...], counts: [...]}} of one "
                "length, and nothing else",
                name,
            )
        if len(keys) > MAX_KEYS:
            raise bad(f"Expected at most {MAX_KEYS} keys in `group_counts.{name}`", name)
        kind = type(column.keys[0])
        for position, key in enumerate(keys):
            if type(key) is not kind or (isinstance(key, str) and text_fault(key)):
                wanted = "text" if kind is str else "an integer"
                why = text_fault(key) if isinstance(key, str) else f"got {describe(key)}"
                raise bad(
                    f"Expected `group_counts.{name}.keys[{position}]` to be {wanted}, as the "
                    f"column's keys are, but {why}",
                    name,
                )
        if any(type(n) is not int or not 1 <= n < 2**63 for n in numbers):
            raise bad(f"Expected `group_counts.{name}.counts` to be integers in [1, 2**63)", name)
        table = dict(zip(keys, numbers, strict=True))
        if len(table) != len(keys):
            raise bad(f"Expected the keys of `group_counts.{name}` to be unique", name)
        for key, own in column.counts().items():
            if table.get(key, 0) < own:
                raise bad(
                    f"Expected `group_counts.{name}` to count key {key!r} at least {own} times "
                    f"(this request's own), but got {table.get(key, 0)}",
                    name,
                )
        tables[name] = table
    if len({sum(table.values()) for table in tables.values()}) > 1:
        raise bad("Expected every column of `group_counts` to count the same items in all")
    return {name: _widened(column, tables[name]) for name, column in columns.items()}, tables


def _widened(column: Column, table: Mapping[Key, int]) -> Column:
    """``column`` with every key of ``table`` (its codes into the wider, sorted keys)."""
    keys = tuple(sorted(table))
    index = {key: k for k, key in enumerate(keys)}
    remap = np.array([index[key] for key in column.keys], dtype=np.int64)
    return Column(keys, remap[column.codes])


def check_bootstrap_keys(
    columns: Mapping[str, Column], bootstrap: Bootstrap, n_bins: int, items: int
) -> None:
    """With a bootstrap, the keys' replicate sums (keys x replicates x (9 + 3 ``n_bins``)) are
    at most `BOOTSTRAP_SUMS`, and their work (``items`` x keys x replicates) at most
    `BOOTSTRAP_WORK`.

    Raises:
        InputError: at ``groups`` when either is more.
    """
    keys = sum(len(column.keys) for column in columns.values())
    r = bootstrap.replicates
    sums = keys * r * (9 + 3 * n_bins)
    if sums > BOOTSTRAP_SUMS:
        raise _bad(
            f"Expected at most {BOOTSTRAP_SUMS:,} replicate sums over the keys with a bootstrap "
            f"(keys x replicates x (9 + 3 x ece_bins)), but got {keys} x {r} x "
            f"{9 + 3 * n_bins} = {sums:,}: fewer replicates, fewer bins, or coarser groups",
            (),
            "too_many_keys",
        )
    if items * keys * r > BOOTSTRAP_WORK:
        raise _bad(
            f"Expected at most {BOOTSTRAP_WORK:,} items x keys x replicates in one request with a "
            f"bootstrap, but got {items:,} x {keys} x {r}: send at most "
            f"{max(1, BOOTSTRAP_WORK // (keys * r)):,} items a request (the Python client sizes "
            "its chunks so), or fewer replicates",
            (),
            "too_much_work",
        )


def work_rows(keys: int, replicates: int) -> int:
    """The most items one request may hold with a bootstrap over ``keys`` keys."""
    return max(1, BOOTSTRAP_WORK // max(1, keys * replicates))


@dataclass(frozen=True, eq=False)
class Slices:
    """One column's sums: one `ScoreSums` per key, ``keys`` in order, and ``seen``, how many
    items hold each key (0 for a key of the dataset that none of these items holds: its sums
    are there for the pseudo-slices drawn from these items). They merge by key."""

    keys: tuple[Key, ...]
    sums: tuple[ScoreSums, ...]
    seen: tuple[int, ...]

    def merge(self, other: Slices) -> Slices:
        mine = dict(zip(self.keys, zip(self.sums, self.seen, strict=True), strict=True))
        theirs = dict(zip(other.keys, zip(other.sums, other.seen, strict=True), strict=True))
        try:
            keys = tuple(sorted({*mine, *theirs}))
        except TypeError:
            raise ValueError("Expected a column's keys to be all strings or all integers") from None
        merged = [
            (mine[k][0].merge(theirs[k][0]), mine[k][1] + theirs[k][1])
            if k in mine and k in theirs
            else mine.get(k) or theirs[k]
            for k in keys
        ]
        return Slices(keys, tuple(m[0] for m in merged), tuple(m[1] for m in merged))

    def rescaled(self, scale: int) -> Slices:
        """Each key's sums in units of ``2**scale`` (`fairloss.sums.ScoreSums.rescaled`)."""
        return Slices(self.keys, tuple(s.rescaled(scale) for s in self.sums), self.seen)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Slices) and (self.keys, self.sums, self.seen) == (
            other.keys,
            other.sums,
            other.seen,
        )

    __hash__ = None  # type: ignore[assignment]
