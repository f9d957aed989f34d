"""The command line's tables: Parquet and CSV files of predictions, labels, weights and groups.

Predictions are one column named KEY (a list or fixed-size list of numbers per row, or one
number per row for a binary classifier's scores) or the numbered columns ``KEY_0 ...
KEY_{C-1}`` (as ``pd.DataFrame(proba).add_prefix("KEY_")`` writes them, and the only way a CSV
holds them). Parquet is read a record batch at a time (row groups, as pyarrow's
``ParquetFile.iter_batches`` yields them) into arrays made once for the file's rows, so memory
holds the arrays read and one batch, never the whole Arrow table beside them; a CSV, whose rows
are not counted ahead, is read a block at a time and joined at the end.

Needs pyarrow (the client extra).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fairloss_client.arrays import Array
from fairloss_client.cli_text import CliError, reason

TABLE_SUFFIXES = (".parquet", ".csv")
BATCH_ROWS = 16_384  # a record batch: 6.5 MB of 100 float32 logits a row
_NUMBERED = re.compile(r"^(.+)_(\d+)$")
_PLAIN_INTEGER = re.compile(r"^-?(0|[1-9][0-9]{0,17})$")
KEYS = "keys"  # in `read_table`'s ``wanted``: a column of group keys
NUMBERED = re.compile(r"^0\.\.[0-9]+$")  # the key of columns 0 ... C-1 (`table_keys`)


def _arrow() -> Any:
    try:
        # only here: the core install reads .npz and .pt files without it
        import pyarrow
        import pyarrow.csv
        import pyarrow.parquet
    except ImportError:
        raise CliError(
            "reading Parquet and CSV files needs pyarrow: pip install 'fairloss-service[client]'"
        ) from None
    return pyarrow


def _names(path: Path) -> list[str]:
    pa = _arrow()
    try:
        if path.suffix.lower() == ".parquet":
            return list(pa.parquet.ParquetFile(path).schema_arrow.names)
        with pa.csv.open_csv(path, read_options=pa.csv.ReadOptions(block_size=1 << 16)) as csv:
            return list(csv.schema.names)
    except OSError as exc:
        raise CliError(f"{path}: cannot read it: {reason(exc)}") from None
    except pa.ArrowException as exc:
        what = "Parquet" if path.suffix.lower() == ".parquet" else "CSV"
        raise CliError(f"{path}: cannot read it as {what} ({reason(exc)})") from None


def table_keys(path: Path) -> dict[str, list[str]]:
    """The arrays ``path`` holds, each with its columns: a column by its name, columns
    ``KEY_0 ... KEY_{C-1}`` (numbered from 0 without a gap) as one array ``KEY`` too, and
    columns ``0 ... C-1`` (as pandas names an unnamed frame's) as one array ``0..C-1``."""
    names = _names(path)
    found: dict[str, list[str]] = {name: [name] for name in names}
    numbered: dict[str, dict[int, str]] = {}
    for name in names:
        match = _NUMBERED.match(name)
        if match:
            numbered.setdefault(match[1], {})[int(match[2])] = name
    for key, columns in numbered.items():
        if key not in found and sorted(columns) == list(range(len(columns))):
            found[key] = [columns[k] for k in range(len(columns))]
    bare = 0  # pandas' names for the columns of an unnamed frame: 0, 1, ..., C-1
    while str(bare) in found:
        bare += 1
    if bare:
        found[f"0..{bare - 1}"] = [str(k) for k in range(bare)]
    return found


def read_table(
    path: Path,
    wanted: Mapping[str, Any],
    keys: Mapping[str, list[str]],
    progress: bool | None = None,
) -> dict[str, Array]:
    """The arrays named in ``wanted`` (key -> numpy dtype to hold it in, None: the column's
    own, or `KEYS`: group keys), read from ``path``; ``keys`` from `table_keys`. A row that
    is null, or a list of another length than the first row's, is an error naming the row."""
    pa = _arrow()
    columns = [column for key in wanted for column in keys[key]]
    parts: dict[str, list[Array]] = {key: [] for key in wanted}
    made: dict[str, Array] = {}
    start = 0
    try:
        text = {keys[key][0]: pa.string() for key, dtype in wanted.items() if dtype == KEYS}
        rows, batches = _batches(pa, path, columns, text)
        if rows == 0:
            raise CliError(f"{path}: holds no rows")
        from tqdm import tqdm

        disable = None if progress is None else not progress
        with tqdm(total=rows, unit="row", unit_scale=True, desc=path.name, disable=disable) as bar:
            for batch in batches:
                for key, dtype in wanted.items():
                    values = _values(pa, batch, key, keys[key], start, dtype, path)
                    if rows is None:
                        parts[key].append(values)
                    else:
                        if key not in made:
                            made[key] = np.empty((rows, *values.shape[1:]), values.dtype)
                        _fill(made[key], values, start, key, path)
                start += batch.num_rows
                bar.update(batch.num_rows)
    except OSError as exc:
        raise CliError(f"{path}: cannot read it: {reason(exc)}") from None
    except pa.ArrowException as exc:
        raise CliError(f"{path}: cannot read it ({reason(exc)})") from None
    if rows is not None:
        return made
    return {key: _joined(chunks, key, path) for key, chunks in parts.items()}


def _batches(
    pa: Any, path: Path, columns: list[str], text: dict[str, Any]
) -> tuple[int | None, Iterator[Any]]:
    if path.suffix.lower() == ".parquet":
        parquet = pa.parquet.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
        rows = parquet.metadata.num_rows
        return rows, parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns)
    options = pa.csv.ConvertOptions(include_columns=columns, column_types=text)
    reader = pa.csv.open_csv(path, convert_options=options)
    return None, iter(reader)


def _values(
    pa: Any, batch: Any, key: str, columns: list[str], start: int, dtype: Any, path: Path
) -> Array:
    """One batch's rows of ``key``: (rows,) for a column of numbers or keys, (rows, C) for a
    list column or numbered columns."""
    if len(columns) > 1:
        parts = [_values(pa, batch, key, [c], start, dtype, path) for c in columns]
        return np.stack(parts, axis=1)
    column = batch.column(columns[0])
    if column.null_count:
        row = start + int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise CliError(f"{path}: {columns[0]!r} is empty (null) at row {row}")
    kind = column.type
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return _list_rows(pa, column, columns[0], start, dtype, path)
    values: Array = column.to_numpy(zero_copy_only=False)
    if dtype == KEYS:
        return _keys(values)
    if values.dtype.kind not in "fiub":
        row, cell = _first_text(values)
        raise CliError(
            f"{path}: {columns[0]!r} holds text ({cell[:40]!r} in row {start + row}); expected "
            "numbers"
        )
    return values if dtype is None else values.astype(dtype, copy=False)


def _first_text(values: Array) -> tuple[int, str]:
    """The first cell of a column read as text that is not a number, and its row."""
    for row, cell in enumerate(values):
        try:
            float(cell)
        except (TypeError, ValueError):
            return row, str(cell)
    return 0, str(values[0])


def _keys(values: Array) -> Array:
    """Group keys: integers as int64; text as text, unless every key is an integer written
    plainly (a CSV's column, read as text so that codes such as ``007`` keep their zeros)."""
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    text = values.astype(str)
    if len(text) and all(_PLAIN_INTEGER.match(key) for key in text):
        return text.astype(np.int64)
    return text


def _list_rows(pa: Any, column: Any, name: str, start: int, dtype: Any, path: Path) -> Array:
    lengths = column.value_lengths().to_numpy(zero_copy_only=False)
    if len(lengths) and (lengths != lengths[0]).any():
        row = int(np.flatnonzero(lengths != lengths[0])[0])
        raise CliError(
            f"{path}: {name!r} holds lists of different lengths: row {start + row} has "
            f"{lengths[row]} values, row {start} has {lengths[0]}"
        )
    flat = column.flatten()
    width = int(lengths[0]) if len(lengths) else 0
    if flat.null_count:
        at = int(np.flatnonzero(flat.is_null().to_numpy(zero_copy_only=False))[0])
        raise CliError(f"{path}: {name!r} holds an empty (null) value in row {start + at // width}")
    values: Array = flat.to_numpy(zero_copy_only=False)
    if values.dtype.kind not in "fiu":
        raise CliError(f"{path}: {name!r} holds {flat.type} values; expected numbers")
    shaped = values.reshape(len(column), width)
    return shaped if dtype is None else shaped.astype(dtype, copy=False)


def _fill(out: Array, values: Array, start: int, key: str, path: Path) -> None:
    if values.shape[1:] != out.shape[1:]:
        raise CliError(
            f"{path}: {key!r} holds lists of different lengths: row {start} has "
            f"{values.shape[1]} values, row 0 has {out.shape[1]}"
        )
    out[start : start + len(values)] = values


def _joined(chunks: list[Array], key: str, path: Path) -> Array:
    if not chunks:
        raise CliError(f"{path}: holds no rows")
    widths = {chunk.shape[1:] for chunk in chunks}
    if len(widths) > 1:
        raise CliError(f"{path}: {key!r} holds lists of different lengths")
    return np.concatenate(chunks)
