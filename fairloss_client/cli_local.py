"""The command line's local path: score files in this process with the core."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fairloss.bootstrap import Bootstrap
from fairloss.checks import Kind
from fairloss.errors import InputError
from fairloss.options import ScoringOptions
from fairloss.replicates import with_replicates
from fairloss.scoring import score_batch
from fairloss_client.arrays import as_labels, as_weights
from fairloss_client.cli_text import CliError
from fairloss_client.results import (
    RULE_COLUMNS,
    CompareResult,
    ScoreResult,
    compare_result,
    score_result,
)


def in_process(
    logits: Mapping[str, Any],
    labels: Any,
    options: dict[str, Any],
    compare: bool,
    bootstrap: Bootstrap | None = None,
    *,
    groups: Mapping[str, Any] | None = None,
    per_class: bool = False,
    kinds: Mapping[str, Kind] | None = None,
    sample_weight: Any = None,
) -> ScoreResult | CompareResult:
    """Score here with the core the predictions the command line has checked
    (`fairloss_client.arrays.as_predictions`); a fault in a file's data names the file (and a
    group column's, ``--groups``)."""
    checked = ScoringOptions(**options)
    y = as_labels(labels, next(iter(logits.values())).shape)
    w = None if sample_weight is None else as_weights(sample_weight, y.shape)
    batches = {}
    for name, z in logits.items():
        try:
            batches[name] = score_batch(
                z,
                y,
                checked,
                kind="logits" if kinds is None else kinds[name],
                sample_weight=w,
                default_device="auto",
                violations=compare,
                per_class=per_class,
                groups=groups,
            )
        except InputError as exc:
            if exc.loc[:1] == ("device",):
                where = f"--device {checked.device}"
            elif exc.loc[:1] == ("groups",):
                where = "--groups"
            else:
                where = name
            raise CliError(f"{where}: {exc}") from None
    if bootstrap is not None:  # one draw of weights for all candidates: paired
        try:
            done = with_replicates(list(batches.values()), bootstrap)
        except InputError as exc:
            raise CliError(f"--groups: {exc}") from None
        batches = dict(zip(batches, done, strict=True))
    if compare:
        return compare_result(batches, bootstrap)
    (only,) = batches.values()
    return score_result(only, RULE_COLUMNS, bootstrap)
