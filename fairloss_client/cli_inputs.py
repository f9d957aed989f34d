"""The command line's inputs: predictions, labels, sample weights and group keys from files.

``.npz`` (arrays by name), ``.pt`` (a dict of tensors, loaded with ``weights_only=True``),
``.npy`` (one bare array: predictions, or with ``--labels`` the labels), and ``.parquet`` and
``.csv`` tables (`fairloss_client.cli_tables`). Each file names its predictions by their kind
(``logits``, ``probabilities`` or ``log_probabilities``, whichever it holds) unless
``--predictions-key`` names them; the labels are ``labels``, the weights ``sample_weight``
(used where the labels' file holds them), and the groups the ``--groups`` names.
"""

from __future__ import annotations

import contextlib
import pickle
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fairloss.checks import KINDS, Kind
from fairloss_client.arrays import Array, as_numpy
from fairloss_client.cli_tables import KEYS, NUMBERED, TABLE_SUFFIXES, read_table, table_keys
from fairloss_client.cli_text import CliError, os_reason, reason

SUFFIXES = (".npz", ".npy", ".pt", *TABLE_SUFFIXES)
WEIGHT = "sample_weight"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass(frozen=True)
class Keys:
    """Where the arrays are: the flags ``--kind``, ``--predictions-key``, ``--labels-key``,
    ``--weight-key`` and ``--groups``, and the compute precision (logits are read into it)."""

    kind: Kind | None = None
    predictions: str | None = None
    labels: str = "labels"
    weight: str | None = None
    groups: Sequence[str] = ()
    precision: str = "float32"


@dataclass(frozen=True)
class Inputs:
    """What the files hold: each file's predictions and their kind (by file stem), and the
    labels, weights and group columns they share."""

    kinds: dict[str, Kind]
    predictions: dict[str, Array]
    labels: Array
    sample_weight: Array | None
    groups: dict[str, Array] | None


def _unpickling_reason(exc: pickle.UnpicklingError) -> str:
    """The part of torch's long weights-only message that names what the file holds."""
    text = _ANSI.sub("", str(exc))
    _, found, rest = text.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in rest.splitlines() if line.strip()] if found else []
    return lines[0].split(" was not an allowed global")[0] if lines else reason(exc)


class _File:
    """One input file: the names it holds (None for a bare array), and the arrays taken."""

    def __init__(self, path: Path, progress: bool | None) -> None:
        suffix = path.suffix.lower()
        if suffix not in SUFFIXES:
            raise CliError(f"{path}: expected a {', '.join(SUFFIXES)} file")
        self.path, self.suffix, self.progress = path, suffix, progress
        self.table = table_keys(path) if suffix in TABLE_SUFFIXES else None
        self.loaded: Any = None if self.table is not None else self._load()
        self.held = (
            list(self.table)
            if self.table is not None
            else list(self.loaded)
            if isinstance(self.loaded, Mapping)
            else None
        )

    def _load(self) -> Any:
        path = self.path
        self.npz = False
        with self._reading():
            if self.suffix == ".pt":
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    loaded = torch.load(path, map_location="cpu", weights_only=True)
            else:
                # numpy tells .npy from .npz by the file's first bytes, whatever its name says.
                # The file is read here so that it is closed however numpy fails.
                with path.open("rb") as handle:
                    found = np.load(handle)
                    if isinstance(found, np.lib.npyio.NpzFile):
                        self.npz = True
                        with found:  # the names now; each array when taken (`take`)
                            return dict.fromkeys(found.files)
                    return found
        if not isinstance(loaded, torch.Tensor | Mapping):
            raise CliError(
                f"{path}: expected a tensor or a dict of tensors, not {type(loaded).__name__}"
            )
        return loaded

    @contextlib.contextmanager
    def _reading(self, key: str | None = None) -> Iterator[None]:
        """Every way reading the file (or its array ``key``) fails, as one `CliError`."""
        path = self.path
        try:
            yield
        except OSError as exc:
            raise CliError(f"{path}: cannot read it: {os_reason(exc)}") from None
        except pickle.UnpicklingError as exc:
            raise CliError(
                f"{path}: torch.load(weights_only=True) refuses it ({_unpickling_reason(exc)}); "
                "expected a file that torch.save wrote of a tensor or a dict of tensors"
            ) from None
        except Exception as exc:  # a corrupt file fails a decoder in many ways
            said = reason(exc)
            if key is not None and "allow_pickle" in said:
                raise CliError(
                    f"{path}: {key!r} holds Python objects (dtype object, as a pandas column of "
                    "text has), which would have to be unpickled; save it with .astype(str)"
                ) from None
            what = "a torch.save file" if self.suffix == ".pt" else "a numpy .npy or .npz file"
            if "allow_pickle" in said:  # numpy's word for "not an array file I know"
                said = "not one, or one of Python objects, which would have to be unpickled"
            raise CliError(f"{path}: cannot read it as {what} ({said})") from None

    def holds(self, key: str) -> bool:
        return self.held is not None and key in self.held

    def missing(self, key: str, flag: str) -> CliError:
        listed = ", ".join(map(repr, self.held or ())) or "nothing"
        return CliError(f"{self.path}: holds no {key!r} (it holds {listed}); {flag}")

    def take(self, wanted: Mapping[str, Any]) -> dict[str, Any]:
        """The arrays named in ``wanted`` (name -> dtype, None, or `KEYS`), as numpy arrays."""
        if self.table is not None:
            return read_table(self.path, wanted, self.table, self.progress)
        if not isinstance(self.loaded, Mapping):  # a bare array: the one name wanted
            return dict.fromkeys(wanted, as_numpy(self.loaded))
        if not self.npz:
            return {key: as_numpy(self.loaded[key]) for key in wanted}
        found = {}
        with self.path.open("rb") as handle, np.load(handle) as arrays:
            for key in wanted:  # only these: another array may be one numpy cannot read
                with self._reading(key):
                    found[key] = arrays[key]
        return found


def _kind_and_key(file: _File, keys: Keys) -> tuple[Kind, str]:
    """The kind of a file's predictions and the name they are under: ``--predictions-key``
    (read as ``--kind``, else as the kind it names, else as logits), or the one array named
    ``logits``, ``probabilities`` or ``log_probabilities`` (read as ``--kind`` where given:
    probabilities saved as ``logits`` are scored right with ``--kind probabilities``), or the
    columns 0 ... C-1 of a table pandas wrote from an unnamed frame (`cli_tables.NUMBERED`)."""
    if file.held is None:
        return keys.kind or "logits", keys.predictions or "predictions"
    if keys.predictions is not None:
        if not file.holds(keys.predictions):
            raise file.missing(keys.predictions, "check --predictions-key")
        return keys.kind or _kind_named(keys.predictions), keys.predictions
    if keys.kind is not None and file.holds(keys.kind):
        return keys.kind, keys.kind
    present: list[str] = [k for k in KINDS if file.holds(k)]
    present = present or [k for k in file.held if NUMBERED.match(k)]
    if not present:
        listed = ", ".join(map(repr, file.held)) or "nothing"
        raise CliError(
            f"{file.path}: holds none of 'logits', 'probabilities', 'log_probabilities' (it "
            f"holds {listed}); name the predictions with --predictions-key KEY and --kind"
        )
    if len(present) > 1:
        raise CliError(
            f"{file.path}: holds {' and '.join(map(repr, present))}; choose one with --kind"
        )
    (key,) = present
    return keys.kind or _kind_named(key), key


def _kind_named(key: str) -> Kind:
    """The kind an array's name says, logits for a name that is not a kind's."""
    return next((kind for kind in KINDS if kind == key), "logits")


def load(
    paths: Sequence[Path], labels_path: Path | None, keys: Keys, progress: bool | None = None
) -> Inputs:
    """Each file's predictions (by file stem), and the labels, weights and groups of the
    labels' file (``--labels``, else the first file holding labels)."""
    stems = [path.stem for path in paths]
    twice = next((stem for stem in stems if stems.count(stem) > 1), None)
    if twice is not None:
        raise CliError(f"two files are named {twice!r}; candidates need unique names")
    files = [_File(path, progress) for path in paths]
    kinds = [_kind_and_key(file, keys) for file in files]
    compute = np.float32 if keys.precision == "float32" else np.float64
    source = _File(labels_path, progress) if labels_path is not None else None
    if source is not None and source.held is not None and not source.holds(keys.labels):
        raise source.missing(keys.labels, "check --labels-key")
    if source is None:
        source = next((f for f in files if f.holds(keys.labels)), None)
        if source is None:
            first = files[0]
            held = ", ".join(map(repr, first.held or ())) or "one bare array"
            check = "check --labels-key, or " if keys.labels != "labels" else ""
            raise CliError(
                f"no labels: {first.path.name} holds no {keys.labels!r} (it holds {held}); "
                f"{check}give --labels FILE"
            )
    shared = _shared(source, keys)
    labels = shared.pop(keys.labels)
    predictions: dict[str, Array] = {}
    for file, (kind, key) in zip(files, kinds, strict=True):
        others = file is not source and file.holds(keys.labels)  # checked against the labels
        dtype = compute if kind == "logits" else None  # read into what they are scored in
        found = file.take({key: dtype, **({keys.labels: None} if others else {})})
        predictions[file.path.stem] = found[key]
        if others and not _same(found[keys.labels], labels):
            where = "--labels " if source.path == labels_path else ""
            raise CliError(
                f"{file.path}: holds labels that differ from those of {where}{source.path}; "
                "every candidate is scored against one set of labels"
            )
        rows = len(found[key]) if np.ndim(found[key]) else None
        if rows is not None and rows != len(labels):
            raise CliError(
                f"{file.path}: {rows} rows of {kind}, but {len(labels)} labels (in {source.path})"
            )
    weight = shared.pop(keys.weight or WEIGHT, None)
    named = {stem: kind for stem, (kind, _) in zip(predictions, kinds, strict=True)}
    return Inputs(named, predictions, labels, weight, shared or None)


def _shared(source: _File, keys: Keys) -> dict[str, Array]:
    """The labels, sample weights and group columns of the labels' file."""
    if source.held is None:
        if keys.groups:
            raise CliError(f"--groups: {source.path} holds one array; give a file of named ones")
        return source.take({keys.labels: None})
    wanted: dict[str, Any] = {keys.labels: None}
    if keys.weight is not None and not source.holds(keys.weight):
        raise source.missing(keys.weight, "check --weight-key")
    if source.holds(keys.weight or WEIGHT):
        wanted[keys.weight or WEIGHT] = np.float64
    missing = [name for name in keys.groups if not source.holds(name)]
    if missing:
        raise CliError(f"--groups: {source.path} holds no array {', '.join(map(repr, missing))}")
    wanted |= dict.fromkeys(keys.groups, KEYS)
    found = source.take(wanted)
    for name in keys.groups:
        if found[name].ndim != 1:
            raise CliError(
                f"--groups: {source.path}: {name!r} has shape {found[name].shape}; expected one "
                "key per row"
            )
    return found


def _same(a: Array, b: Array) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b))
