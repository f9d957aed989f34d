"""The command line's inputs beyond logits in ``.npz``: Parquet and CSV tables, probabilities and
log-probabilities, weights and groups from columns, and the faults of such files, each one line
that names the file, the column and the row."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import log_loss

from fairloss import ScoringOptions, score_batch
from fairloss.predictions import PROBABILITIES_AS_LOGITS
from fairloss_client.cli import main
from tests.conftest import running_server

RNG = np.random.default_rng(11)
N, C = 300, 4
LOGITS = RNG.normal(size=(N, C)).astype(np.float32) * 2
LABELS = RNG.integers(0, C, N)
PROBS = np.exp(LOGITS) / np.exp(LOGITS).sum(axis=1, keepdims=True)
WEIGHTS = RNG.uniform(0, 2, N)
SITES_KEYS = ("007", "010", "120")
SITES = np.array(SITES_KEYS)[RNG.integers(0, 3, N)]


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with running_server() as server:
        yield server.url


def run(capsys: Any, *argv: Any) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def answer(capsys: Any, tmp_path: Path, *argv: Any) -> dict[str, Any]:
    output = tmp_path / "answer.json"
    code, _, err = run(capsys, "score", *argv, "--output", output, "--no-progress")
    assert code == 0, err
    return dict(json.loads(output.read_text()))


def test_parquet_list_and_fixed_size_list_columns_score_as_the_npz(capsys, tmp_path):
    np.savez(tmp_path / "model.npz", logits=LOGITS, labels=LABELS)
    want = answer(capsys, tmp_path, tmp_path / "model.npz")
    listed = tmp_path / "listed.parquet"
    pd.DataFrame({"logits": list(LOGITS), "labels": LABELS}).to_parquet(listed)
    fixed = tmp_path / "fixed.parquet"
    column = pa.FixedSizeListArray.from_arrays(pa.array(LOGITS.reshape(-1)), C)
    pq.write_table(pa.table({"logits": column, "labels": LABELS}), fixed, row_group_size=64)
    for path in (listed, fixed):
        got = answer(capsys, tmp_path, path)
        assert got["metrics"] == want["metrics"]
        assert got["per_sample"]["total"] == want["per_sample"]["total"]


def test_weights_and_groups_come_from_the_labels_table(capsys, tmp_path):
    """``sample_weight`` is used where the labels' file holds it; a CSV's group codes keep their
    leading zeros; the numbers are the core's on the same arrays."""
    table = tmp_path / "dump.csv"
    frame = pd.DataFrame(PROBS).add_prefix("probabilities_")
    frame.assign(labels=LABELS, sample_weight=WEIGHTS, site=SITES).to_csv(table, index=False)
    got = answer(capsys, tmp_path, table, "--groups", "site")
    want = score_batch(PROBS, LABELS, ScoringOptions(), kind="probabilities", sample_weight=WEIGHTS)
    assert got["metrics"]["log_loss"] == pytest.approx(
        log_loss(LABELS, PROBS, sample_weight=WEIGHTS), rel=1e-6
    )
    assert got["metrics"]["accuracy"] == pytest.approx(want.metrics["accuracy"], abs=1e-12)
    assert got["per_sample"]["site"] == SITES.tolist()  # each sample's key, in the output
    entries = got["groups"]["site"]
    assert [entry["key"] for entry in entries] == ["007", "010", "120"]
    masks = [np.equal(SITES, key) for key in SITES_KEYS]
    assert [entry["count"] for entry in entries] == [int(mask.sum()) for mask in masks]
    assert [entry["weight"] for entry in entries] == pytest.approx(
        [WEIGHTS[mask].sum() for mask in masks]
    )


def test_flags_name_the_columns(capsys, tmp_path):
    table = tmp_path / "dump.parquet"
    frame = pd.DataFrame({"proba": list(PROBS), "target": LABELS, "w": WEIGHTS})
    frame.to_parquet(table)
    flags = ["--predictions-key", "proba", "--kind", "probabilities", "--labels-key", "target"]
    got = answer(capsys, tmp_path, table, *flags, "--weight-key", "w")
    assert got["metrics"]["log_loss"] == pytest.approx(
        log_loss(LABELS, PROBS, sample_weight=WEIGHTS), rel=1e-6
    )


def test_probabilities_under_logits_are_scored_with_a_warning(capsys, tmp_path):
    path = tmp_path / "mislabelled.npz"
    np.savez(path, logits=PROBS, labels=LABELS)
    code, out, err = run(capsys, "score", path)
    assert code == 0
    assert err == f"fairloss: warning: mislabelled: {PROBABILITIES_AS_LOGITS}\n"
    assert "log_loss" in out


def test_kind_reads_the_files_one_array_as_it_says(capsys, tmp_path):
    """The warning's advice works: ``--kind probabilities`` reads probabilities saved under
    ``logits`` as probabilities."""
    path = tmp_path / "mislabelled.npz"
    np.savez(path, logits=PROBS, labels=LABELS)
    got = answer(capsys, tmp_path, path, "--kind", "probabilities")
    assert got["metrics"]["log_loss"] == pytest.approx(log_loss(LABELS, PROBS), rel=1e-6)


def test_pandas_default_csv_of_an_unnamed_frame(capsys, tmp_path):
    """``DataFrame(proba).assign(labels=y).to_csv(path)``: an index column, then columns
    0 ... C-1 and labels."""
    path = tmp_path / "default.csv"
    pd.DataFrame(PROBS).assign(labels=LABELS).to_csv(path)
    got = answer(capsys, tmp_path, path, "--kind", "probabilities")
    assert got["metrics"]["log_loss"] == pytest.approx(log_loss(LABELS, PROBS), rel=1e-6)
    assert got["n"] == N


def test_an_unreadable_array_is_named_only_when_wanted(capsys, tmp_path):
    """An array numpy cannot load without unpickling (object dtype, as a pandas text column
    gives) stops nothing else in the file; asked for as a group column, it is named."""
    path = tmp_path / "objects.npz"
    np.savez(path, probabilities=PROBS, labels=LABELS, site=SITES.astype(object))
    got = answer(capsys, tmp_path, path)
    assert got["metrics"]["log_loss"] == pytest.approx(log_loss(LABELS, PROBS), rel=1e-6)
    code, _, err = run(capsys, "score", path, "--groups", "site")
    assert code == 1
    assert "'site' holds Python objects" in err
    assert ".astype(str)" in err


@pytest.mark.parametrize("url", [False, True], ids=["in-process", "url"])
def test_compare_mixes_kinds(capsys, tmp_path, url, request):
    """A logistic regression's decision_function (N) against a forest's predict_proba
    (N, 2): each read as its kind, both scored as the (N, 2) probabilities they are."""
    scores = RNG.normal(size=N) * 2
    binary = (LABELS % 2).astype(np.int64)
    proba = np.stack([1 - 1 / (1 + np.exp(-scores)), 1 / (1 + np.exp(-scores))], axis=1)
    np.savez(tmp_path / "lr.npz", logits=scores, labels=binary)
    np.savez(tmp_path / "rf.npz", probabilities=proba, labels=binary)
    flags = ["--url", request.getfixturevalue("server_url")] if url else []
    output = tmp_path / "both.json"
    code, _, err = run(capsys, "compare", tmp_path / "lr.npz", tmp_path / "rf.npz",
                       "--output", output, "--no-progress", *flags)  # fmt: skip
    assert code == 0, err
    lr, rf = json.loads(output.read_text())["candidates"]
    assert lr["metrics"]["log_loss"] == pytest.approx(log_loss(binary, proba), rel=1e-6)
    assert rf["metrics"]["log_loss"] == pytest.approx(lr["metrics"]["log_loss"], rel=1e-6)


def table(tmp_path: Path, name: str, **columns: Any) -> Path:
    path = tmp_path / name
    frame = pd.DataFrame(columns)
    if name.endswith(".csv"):
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path)
    return path


BAD_FILES = [
    (
        "wrong-column",
        lambda d: table(d, "a.parquet", logit=list(LOGITS), labels=LABELS),
        [],
        "a.parquet: holds none of 'logits', 'probabilities', 'log_probabilities' (it holds "
        "'logit', 'labels'); name the predictions with --predictions-key KEY and --kind",
    ),
    (
        "wrong-flag",
        lambda d: table(d, "a.parquet", logits=list(LOGITS), labels=LABELS),
        ["--labels-key", "target"],
        "no labels: a.parquet holds no 'target' (it holds 'logits', 'labels'); check "
        "--labels-key, or give --labels FILE",
    ),
    (
        "ragged",
        lambda d: table(
            d, "a.parquet", logits=[*LOGITS[:5], LOGITS[5, :3], *LOGITS[6:]], labels=LABELS
        ),
        [],
        "a.parquet: 'logits' holds lists of different lengths: row 5 has 3 values, row 0 has 4",
    ),
    (
        "null-row",
        lambda d: table(d, "a.parquet", logits=[None, *LOGITS[1:]], labels=LABELS),
        [],
        "a.parquet: 'logits' is empty (null) at row 0",
    ),
    (
        "null-value",
        lambda d: table(
            d, "a.parquet", logits=[*LOGITS[:7], [1.0, None, 0.0, 0.0], *LOGITS[8:]], labels=LABELS
        ),
        [],
        "a.parquet: 'logits' holds an empty (null) value in row 7",
    ),
    (
        "text-cell",
        lambda d: table(
            d,
            "a.csv",
            logits=[*map(str, LOGITS[:9, 0]), "abc", *map(str, LOGITS[10:, 0])],
            labels=LABELS % 2,
        ),
        [],
        "a.csv: 'logits' holds text ('abc' in row 9); expected numbers",
    ),
    (
        "text-labels",
        lambda d: table(d, "a.csv", logits=LOGITS[:, 0], labels=["cat"] * N),
        [],
        "a.csv: 'labels' holds text ('cat' in row 0); expected numbers",
    ),
    (
        "two-kinds",
        lambda d: table(
            d, "a.parquet", logits=list(LOGITS), probabilities=list(PROBS), labels=LABELS
        ),
        [],
        "a.parquet: holds 'logits' and 'probabilities'; choose one with --kind",
    ),
    (
        "not-parquet",
        lambda d: (d / "a.parquet").write_bytes(b"PAR1 not really") and d / "a.parquet",
        [],
        "a.parquet: cannot read it as Parquet",
    ),
    (
        "no-groups-column",
        lambda d: table(d, "a.csv", logits=LOGITS[:, 0], labels=LABELS % 2),
        ["--groups", "site"],
        "--groups: ",
    ),
]


@pytest.mark.parametrize(
    ("make", "flags", "said"), [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES]
)
def test_a_bad_table_is_one_line_that_names_the_fault(capsys, tmp_path, make, flags, said):
    path = make(tmp_path)
    code, out, err = run(capsys, "score", path, *flags)
    assert (code, out) == (1, "")
    assert err.startswith("fairloss: error: "), err
    assert err.count("\n") == 1, err
    assert said in err, err


def logits_file(path: Path, rows: int, classes: int) -> int:
    logits = np.random.default_rng(0).standard_normal((rows, classes), dtype=np.float32)
    column = pa.FixedSizeListArray.from_arrays(pa.array(logits.reshape(-1)), classes)
    labels = pa.array(np.arange(rows) % classes)
    # one row group for the whole file (pyarrow's default holds up to 1Mi rows)
    pq.write_table(pa.table({"logits": column, "labels": labels}), path, compression="none")
    return logits.nbytes


def test_a_large_parquet_file_is_read_a_batch_at_a_time(tmp_path):
    """Arrow never holds more than a few record batches of a one-row-group file at once, a small
    fraction of the predictions read (`pyarrow.MemoryPool.max_memory`, in a fresh process): the
    predictions are copied a batch at a time into one array. The peak resident memory of
    scoring a 1 GB file is `scripts/parquet_memory.py`'s to print."""
    path = tmp_path / "big.parquet"
    held = logits_file(path, 1_000_000, 64)  # 256 MB
    code = (
        "import sys, pyarrow\n"
        "from pathlib import Path\n"
        "from fairloss_client.cli_inputs import Keys, load\n"
        f"inputs = load([Path({str(path)!r})], None, Keys())\n"
        "print(pyarrow.default_memory_pool().max_memory(), inputs.predictions['big'].nbytes)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    arrow, read = map(int, done.stdout.split())
    assert read == held
    assert arrow < held / 8, f"Arrow held {arrow / 1e6:.0f} MB at once of {held / 1e6:.0f} MB"
