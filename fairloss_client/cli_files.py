"""The command line's files: logits and labels in (.npz, .npy, .pt), per-sample results out."""

from __future__ import annotations

import csv
import pickle
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fairloss_client.arrays import Array
from fairloss_client.cli_text import CliError, os_reason, reason
from fairloss_client.results import CandidateResult, CompareResult, ScoreResult
from fairloss_wire.answers import violations_dict

SUFFIXES = (".npz", ".npy", ".pt")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _unpickling_reason(exc: pickle.UnpicklingError) -> str:
    """The part of torch's long weights-only message that names what the file holds."""
    text = _ANSI.sub("", str(exc))
    _, found, rest = text.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in rest.splitlines() if line.strip()] if found else []
    return lines[0].split(" was not an allowed global")[0] if lines else reason(exc)


def _read(path: Path, keys: Sequence[str] = ("logits", "labels")) -> Any:
    """What ``path`` holds: an array or tensor, a mapping of them (of an ``.npz``, its arrays
    named ``keys``), or (from ``.pt``) anything."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise CliError(f"{path}: expected a {', '.join(SUFFIXES)} file")
    try:
        if suffix == ".pt":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return torch.load(path, map_location="cpu", weights_only=True)
        # numpy tells .npy from .npz by the file's first bytes, whatever its name says. The file
        # is opened here so that it is closed however numpy fails (it leaks it on a bad zip).
        with path.open("rb") as handle:
            loaded = np.load(handle)
            if isinstance(loaded, np.lib.npyio.NpzFile):
                with loaded:
                    return {k: loaded[k] for k in keys if k in loaded.files}
            return loaded
    except OSError as exc:
        raise CliError(f"{path}: cannot read it: {os_reason(exc)}") from None
    except pickle.UnpicklingError as exc:
        raise CliError(
            f"{path}: torch.load(weights_only=True) refuses it ({_unpickling_reason(exc)}); "
            "expected a file that torch.save wrote of a tensor or a dict of tensors"
        ) from None
    except Exception as exc:  # a corrupt file fails a decoder in many ways: zip, zlib, struct...
        what = "a torch.save file" if suffix == ".pt" else "a numpy .npy or .npz file"
        said = reason(exc)
        if "allow_pickle" in said:  # numpy's word for "not an array file I know"
            said = "not one, or one of Python objects, which would have to be unpickled"
        raise CliError(f"{path}: cannot read it as {what} ({said})") from None


def _arrays(path: Path, bare: str) -> dict[str, Any]:
    """The arrays in ``path``: ``logits`` and ``labels`` where it has them; a bare array or
    tensor is ``bare``."""
    loaded = _read(path)
    if isinstance(loaded, torch.Tensor | np.ndarray):
        return {bare: loaded}
    if isinstance(loaded, Mapping):
        return {k: loaded[k] for k in ("logits", "labels") if k in loaded}
    raise CliError(f"{path}: expected a tensor or a dict of tensors, not {type(loaded).__name__}")


def _rows(value: Any) -> int | None:
    shape = getattr(value, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) >= 1 else None


def load(paths: Sequence[Path], labels_path: Path | None) -> tuple[dict[str, Any], Any]:
    """Each file's logits (named by file stem) and the labels they share."""
    logits: dict[str, Any] = {}
    labels = None
    source = labels_path
    if labels_path is not None:
        labels = _arrays(labels_path, "labels").get("labels")
        if labels is None:
            raise CliError(f"{labels_path}: holds no `labels`")
    for path in paths:
        found = _arrays(path, "logits")
        if "logits" not in found:
            raise CliError(f"{path}: holds no `logits`")
        if path.stem in logits:
            raise CliError(f"two files are named {path.stem!r}; candidates need unique names")
        logits[path.stem] = found["logits"]
        if labels is None and "labels" in found:
            labels, source = found["labels"], path
        elif "labels" in found and not _same(found["labels"], labels):
            where = "--labels " if source == labels_path else ""
            raise CliError(
                f"{path}: holds labels that differ from those of {where}{source}; every "
                "candidate is scored against one set of labels"
            )
    if labels is None:
        raise CliError("no labels: give a file with `labels`, or --labels FILE")
    count = _rows(labels)
    for path in paths:
        rows = _rows(logits[path.stem])
        if rows is not None and count is not None and rows != count:
            raise CliError(f"{path}: {rows} rows of logits, but {count} labels (in {source})")
    return logits, labels


def load_groups(
    paths: Sequence[Path], labels_path: Path | None, names: Sequence[str]
) -> dict[str, Any]:
    """``--groups``: the arrays named ``names`` in the file the labels come from (``--labels``,
    else the first file), each as numpy (keys are checked by the core)."""
    source = labels_path or paths[0]
    loaded = _read(source, names)
    if not isinstance(loaded, Mapping):
        raise CliError(f"--groups: {source} holds one array; give a .npz or .pt file of named ones")
    missing = [name for name in names if name not in loaded]
    if missing:
        raise CliError(f"--groups: {source} holds no array {', '.join(map(repr, missing))}")
    found = {}
    for name in names:
        value = loaded[name]
        array = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        if array.ndim != 1:
            raise CliError(
                f"--groups: {source}: {name!r} has shape {array.shape}; expected one key per row"
            )
        found[name] = array
    return found


def _same(a: Any, b: Any) -> bool:
    left, right = (np.asarray(x.numpy() if isinstance(x, torch.Tensor) else x) for x in (a, b))
    return left.shape == right.shape and bool(np.array_equal(left, right))


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


def _columns(result: ScoreResult, labels: Array) -> dict[str, Array]:
    return {"index": np.arange(result.n), "label": labels, **result.per_sample}


def write_output(path: Path, result: ScoreResult | CompareResult, labels: Array) -> None:
    """Per-sample results as CSV (one row per sample and candidate), or JSON: the columns and
    every answer the printed tables show (aggregates, intervals, differences with their
    p-values, per-class and per-key numbers), under the service's field names."""
    try:
        _write_output(path, result, labels)
    except OSError as exc:
        raise CliError(f"--output {path}: cannot write it: {os_reason(exc)}") from None


def _body(one: ScoreResult, labels: Array) -> dict[str, Any]:
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
    return {**body, "per_sample": _columns(one, labels)}


def _write_output(path: Path, result: ScoreResult | CompareResult, labels: Array) -> None:
    results = result.candidates if isinstance(result, CompareResult) else [result]
    if path.suffix.lower() == ".csv":
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            for k, one in enumerate(results):
                columns = _columns(one, labels)
                name = one.name if isinstance(one, CandidateResult) else None
                if k == 0:
                    writer.writerow(["candidate", *columns] if name else columns)
                text = [c.astype(str) for c in columns.values()]
                writer.writerows([name, *row] if name else row for row in zip(*text, strict=True))
        return
    bodies = [_body(one, labels) for one in results]
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
