"""The command line's output file: per-sample results and every answer, as CSV or JSON."""

from __future__ import annotations

import csv
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from fairloss_client.arrays import Array
from fairloss_client.cli_text import CliError, os_reason
from fairloss_client.results import CandidateResult, CompareResult, ScoreResult
from fairloss_wire.answers import violations_dict


def check_output(path: Path) -> None:
    if path.suffix.lower() not in (".csv", ".json"):
        raise CliError(f"{path}: --output takes a .csv or .json file")
    directory = path.parent
    if not directory.exists():
        raise CliError(f"--output {path}: no such directory {directory}")
    if not directory.is_dir():
        raise CliError(f"--output {path}: {directory} is not a directory")
    if path.is_dir():
        raise CliError(f"--output {path}: is a directory")


def _columns(result: ScoreResult, leading: dict[str, Array]) -> dict[str, Array]:
    """The per-sample columns after ``index`` and ``leading`` (the label, and each group
    column's key, repeated over an item's positions)."""
    spread = {k: np.repeat(v, result.n // len(v)) if v.ndim == 1 else v for k, v in leading.items()}
    return {"index": np.arange(result.n), **spread, **result.per_sample}


def write_output(
    path: Path,
    result: ScoreResult | CompareResult,
    labels: Array,
    groups: dict[str, Array] | None = None,
) -> None:
    """Per-sample results as CSV (one row per sample and candidate), or JSON: the columns and
    every answer the printed tables show (aggregates, intervals, differences with their
    p-values, per-class and per-key numbers), under the service's field names."""
    try:
        _write_output(path, result, {"label": labels, **(groups or {})})
    except OSError as exc:
        raise CliError(f"--output {path}: cannot write it: {os_reason(exc)}") from None


def _body(one: ScoreResult, leading: dict[str, Array]) -> dict[str, Any]:
    """One scored result under the service's field names: what the printed tables show
    (intervals, per-class and per-key numbers when asked for) and the per-sample columns."""
    body: dict[str, Any] = {}
    if isinstance(one, CandidateResult):
        body["name"] = one.name
        body["violations"] = {k: violations_dict(v) for k, v in one.violations.items()}
    body |= {
        "n": one.n,
        "reduced": {"reduction": one.reduction, **one.reduced},
        "metrics": one.metrics,
    }
    if one.bootstrap is not None:
        body["bootstrap"] = asdict(one.bootstrap)
        body["intervals"] = one.intervals
    for name in ("classes", "groups"):
        found = getattr(one, name)
        if found is not None:
            body[name] = found
    columns = _columns(one, leading)  # text keys as lists: orjson writes no numpy strings
    return {
        **body,
        "per_sample": {k: c.tolist() if c.dtype.kind in "UO" else c for k, c in columns.items()},
    }


def _write_output(
    path: Path, result: ScoreResult | CompareResult, leading: dict[str, Array]
) -> None:
    results = result.candidates if isinstance(result, CompareResult) else [result]
    if path.suffix.lower() == ".csv":
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            for k, one in enumerate(results):
                columns = _columns(one, leading)
                name = one.name if isinstance(one, CandidateResult) else None
                if k == 0:
                    writer.writerow(["candidate", *columns] if name else columns)
                text = [c.astype(str) for c in columns.values()]
                writer.writerows([name, *row] if name else row for row in zip(*text, strict=True))
        return
    bodies = [_body(one, leading) for one in results]
    body: dict[str, Any] = (
        {"candidates": bodies, "ranking": result.ranking}
        if isinstance(result, CompareResult)
        else bodies[0]
    )
    if isinstance(result, CompareResult) and result.differences:
        body["differences"] = result.differences
    import orjson  # only here: the core install scores files without the client's extras

    path.write_bytes(
        orjson.dumps(
            body,
            option=orjson.OPT_SERIALIZE_NUMPY
            | orjson.OPT_SERIALIZE_DATACLASS
            | orjson.OPT_INDENT_2,
        )
    )
