"""The JSON side of the bootstrap: ``bootstrap`` and ``row_offset`` in, intervals, paired
differences and (when asked) the per-replicate sums out. The maths is the core's
(`fairloss.bootstrap`, `fairloss.uncertainty`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fairloss.bootstrap import Bootstrap
from fairloss.errors import InputError, describe
from fairloss.sums import ScoreSums
from fairloss.uncertainty import intervals
from service.errors import unknown_fields

FIELDS_IN = ("replicates", "confidence_level", "seed", "replicate_sums")
REQUEST_FIELDS = ("bootstrap", "row_offset")


@dataclass(frozen=True)
class Resampling:
    """A request's bootstrap (None: off), its row offset, and whether it asks for the sums."""

    bootstrap: Bootstrap | None = None
    row_offset: int = 0
    replicate_sums: bool = False


def parse_resampling(data: Mapping[str, Any]) -> Resampling:
    """``bootstrap`` (an object, or absent or null) and ``row_offset`` (an integer >= 0)."""
    offset = data.get("row_offset", 0)
    if type(offset) is not int or not 0 <= offset < 2**63:
        raise InputError(
            f"Expected `row_offset` to be an integer in [0, 2**63), but got {describe(offset)}",
            ("row_offset",),
            "bad_row_offset",
        )
    value = data.get("bootstrap")
    if value is None:
        return Resampling(row_offset=offset)
    if not isinstance(value, dict):
        raise InputError(
            "Expected `bootstrap` to be an object {replicates, confidence_level, seed} or null, "
            f"but got {describe(value)}",
            ("bootstrap",),
            "bad_bootstrap",
        )
    unknown_fields(value, FIELDS_IN, "bootstrap")
    sums = value.get("replicate_sums", False)
    if type(sums) is not bool:
        raise InputError(
            f"Expected `bootstrap.replicate_sums` to be a boolean, but got {describe(sums)}",
            ("bootstrap", "replicate_sums"),
            "bad_bootstrap",
        )
    given = {k: v for k, v in value.items() if k != "replicate_sums"}
    return Resampling(Bootstrap(**given), offset, sums)


def uncertainty(
    body: dict[str, Any], sums: ScoreSums, resampling: Resampling, arrays: str
) -> dict[str, Any]:
    """A scored body with the bootstrap it used and its ``intervals``."""
    bootstrap = resampling.bootstrap
    if bootstrap is None or sums.replicates is None:
        return body
    body["bootstrap"] = {
        "replicates": bootstrap.replicates,
        "confidence_level": bootstrap.confidence_level,
        "seed": bootstrap.seed,
    }
    body["intervals"] = intervals(sums, bootstrap.confidence_level)
    return body
