"""The ``fairloss`` command on files made here: in-process and against a running service."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from service.cli import main
from tests.conftest import README_EXAMPLE, free_port, running_server

LOGITS = np.array(README_EXAMPLE["logits"], dtype=np.float32)
LABELS = np.array(README_EXAMPLE["labels"])
SHARPER = np.array([[2.0, 0.33, 0.33], [0.49, 0.51, 0.0]], dtype=np.float32)


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with running_server() as server:
        yield server.url


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {
        "npz": tmp_path / "model-a.npz",
        "npy": tmp_path / "logits.npy",
        "labels": tmp_path / "labels.npy",
        "pt": tmp_path / "model-b.pt",
    }
    np.savez(paths["npz"], logits=LOGITS, labels=LABELS)
    np.save(paths["npy"], LOGITS)
    np.save(paths["labels"], LABELS)
    torch.save(
        {"logits": torch.from_numpy(SHARPER), "labels": torch.from_numpy(LABELS)}, paths["pt"]
    )
    return paths


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


SCORE_TABLE = """\
                   value
--------------  --------
samples                2
counted                2
classes                3
device               cpu
ce (mean)       1.030008
penalty (mean)  0.166674
total (mean)    1.196682
accuracy        0.500000
log_loss        1.030008
brier           0.625570
pll             1.579314
pbs             0.958903
ece             0.138474
"""


@pytest.mark.parametrize("kind", ["npz", "npy", "pt"])
def test_score_prints_the_summary_in_process(capsys, files, kind):
    extra = ["--labels", files["labels"]] if kind == "npy" else []
    path = files["npz"] if kind == "pt" else files[kind]
    code, out, err = run(capsys, "score", path, *extra)
    assert (code, err) == (0, "")
    assert out == SCORE_TABLE


def test_score_of_a_pt_file(capsys, files):
    code, out, _ = run(capsys, "score", files["pt"], "--reduction", "sum")
    assert code == 0
    assert ["total", "(sum)", "1.620932"] in [line.split() for line in out.splitlines()]


def test_score_through_a_running_service_prints_the_same(capsys, files, server_url):
    for kind in ("npz", "pt"):
        local = run(capsys, "score", files[kind])
        remote = run(capsys, "score", files[kind], "--url", server_url)
        assert remote == local
        assert remote[0] == 0


COMPARE_TABLE = """\
candidate  accuracy        ce   penalty     total       pll       pbs  ce viol.  total viol.
---------  --------  --------  --------  --------  --------  --------  --------  -----------
model-a    0.500000  1.030008  0.166674  1.196682  1.579314  0.958903       1/1          0/1
model-b    0.500000  0.643799  0.166667  0.810466  1.193105  0.683901       0/1          0/1

ranking   best first
--------  -----------------
ce        model-b > model-a
total     model-b > model-a
brier     model-b > model-a
pll       model-b > model-a
pbs       model-b > model-a
accuracy  model-a > model-b
"""


def test_compare_prints_the_table_in_process(capsys, files):
    code, out, err = run(capsys, "compare", files["npz"], files["pt"])
    assert (code, err) == (0, "")
    assert out == COMPARE_TABLE


def test_compare_through_a_running_service_prints_the_same(capsys, files, server_url):
    code, out, err = run(capsys, "compare", files["npz"], files["pt"], "--url", server_url)
    assert (code, err) == (0, "")
    assert out == COMPARE_TABLE


def test_compare_npy_logits_with_labels_file(capsys, files):
    code, out, _ = run(capsys, "compare", files["npy"], files["pt"], "--labels", files["labels"])
    assert code == 0
    assert out.splitlines()[2].startswith("logits     0.500000  1.030008")


@pytest.mark.parametrize("url", [False, True])
def test_score_writes_csv(capsys, files, tmp_path, server_url, url):
    output = tmp_path / "out.csv"
    extra = ["--url", server_url] if url else []
    code, _, _ = run(capsys, "score", files["npz"], "--output", output, *extra)
    assert code == 0
    rows = list(csv.reader(output.read_text().splitlines()))
    assert rows == [
        ["index", "label", "ce", "penalty", "total", "predicted", "correct"],
        ["0", "0", "1.0919567", "1.5138892e-05", "1.0919719", "0", "True"],
        ["1", "0", "0.9680584", "0.33333334", "1.3013917", "1", "False"],
    ]


def test_compare_writes_csv_with_a_candidate_column(capsys, files, tmp_path):
    output = tmp_path / "out.csv"
    code, _, _ = run(capsys, "compare", files["npz"], files["pt"], "--output", output)
    assert code == 0
    rows = list(csv.DictReader(output.read_text().splitlines()))
    assert [(r["candidate"], r["index"], r["ce"]) for r in rows] == [
        ("model-a", "0", "1.0919567"),
        ("model-a", "1", "0.9680584"),
        ("model-b", "0", "0.31953982"),
        ("model-b", "1", "0.9680584"),
    ]
    assert set(rows[0]) >= {"total", "penalty", "pll", "pbs", "brier", "correct", "label"}


def test_score_writes_json(capsys, files, tmp_path, server_url):
    output = tmp_path / "out.json"
    code, _, _ = run(capsys, "score", files["npz"], "--output", output, "--url", server_url)
    assert code == 0
    body = json.loads(output.read_text())
    assert body["n"] == 2
    assert body["reduced"]["reduction"] == "mean"
    assert body["reduced"]["total"] == pytest.approx(1.196681797504425, rel=1e-9)
    assert body["metrics"]["accuracy"] == 0.5
    assert body["per_sample"]["total"] == pytest.approx([1.0919719, 1.3013917], rel=1e-7)
    assert body["per_sample"]["correct"] == [True, False]
    assert body["per_sample"]["label"] == [0, 0]


def test_compare_writes_json(capsys, files, tmp_path):
    output = tmp_path / "out.json"
    code, _, _ = run(capsys, "compare", files["npz"], files["pt"], "--output", output)
    assert code == 0
    body = json.loads(output.read_text())
    assert body["ranking"]["total"] == ["model-b", "model-a"]
    first = body["candidates"][0]
    assert first["name"] == "model-a"
    assert first["violations"]["ce"] == {"count": 1, "pairs": 1, "examples": [[0, 1]]}
    assert first["violations"]["total"] == {"count": 0, "pairs": 1, "examples": []}


def test_options_reach_the_scoring(capsys, tmp_path):
    path = tmp_path / "ignored.npz"
    np.savez(path, logits=LOGITS, labels=np.array([0, -1]))
    code, out, _ = run(capsys, "score", path, "--ignore-index", "-1", "--precision", "float64")
    assert code == 0
    lines = [line.split() for line in out.splitlines()]
    assert ["counted", "1"] in lines
    assert ["ce", "(mean)", "1.091957"] in lines


@pytest.mark.parametrize(
    ("make", "argv", "message"),
    [
        (lambda d: np.save(d / "x.npy", LOGITS), ["score", "x.npy"], "no labels: give a file"),
        (lambda d: (d / "x.txt").write_text("1"), ["score", "x.txt"], "expected a .npz, .npy"),
        (lambda d: np.savez(d / "x.npz", labels=LABELS), ["score", "x.npz"], "holds no `logits`"),
        (lambda d: (d / "x.npy").write_bytes(b"junk"), ["score", "x.npy"], "x.npy: cannot read"),
        (lambda d: torch.save([1, 2], d / "x.pt"), ["score", "x.pt"], "not list"),
        (
            lambda d: np.savez(d / "x.npz", logits=LOGITS, labels=np.array([0, 3])),
            ["score", "x.npz"],
            "Expected every label in [0, 3), but got 3 at index 1",
        ),
        (
            lambda d: np.savez(d / "x.npz", logits=LOGITS, labels=LABELS),
            ["score", "x.npz", "--output", "x.txt"],
            "--output takes a .csv or .json file",
        ),
        (
            lambda d: np.savez(d / "x.npz", logits=LOGITS, labels=LABELS),
            ["compare", "x.npz", "x.npz"],
            "two files are named 'x'",
        ),
        (
            lambda d: np.savez(d / "x.npz", logits=LOGITS, labels=LABELS),
            ["score", "x.npz", "--smooth-max-beta", "-1"],
            "smooth_max_beta: Input should be greater than 0",
        ),
        (
            lambda d: np.savez(d / "x.npz", logits=LOGITS, labels=LABELS),
            ["score", "x.npz", "--device", "tpu"],
            "tpu",
        ),
    ],
)
def test_bad_input_exits_1_with_one_line(capsys, tmp_path, monkeypatch, make, argv, message):
    monkeypatch.chdir(tmp_path)
    make(tmp_path)
    code, out, err = run(capsys, *argv)
    assert (code, out) == (1, "")
    assert err.startswith("fairloss: error: ")
    assert err.count("\n") == 1
    assert message in err


def test_a_refusal_from_the_service_exits_1(capsys, tmp_path, server_url):
    path = tmp_path / "x.npz"
    np.savez(path, logits=LOGITS, labels=LABELS)
    code, _, err = run(capsys, "score", path, "--url", server_url, "--label-smoothing", "2")
    assert code == 1
    assert err.startswith("fairloss: error: HTTP 422 for rows 0..1: label_smoothing: ")


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["score"])
    assert exited.value.code == 2
    assert "the following arguments are required: file" in capsys.readouterr().err


def test_entry_point_is_main():
    (script,) = entry_points(group="console_scripts", name="fairloss")
    assert script.load() is main


def test_serve_runs_the_service(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAIRLOSS_")}
    command = [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1"]
    with (tmp_path / "log").open("w+") as log:
        process = subprocess.Popen(
            [*command, "--port", str(port), "--device", "cpu"], env=env, stdout=log, stderr=log
        )
        try:
            info = _wait_for_info(f"http://127.0.0.1:{port}", process)
        finally:
            process.terminate()
            process.wait(timeout=15)
    assert info["default_device"] == "cpu"
    assert process.returncode == 0


def _wait_for_info(url: str, process: subprocess.Popen[bytes]) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "fairloss serve exited early"
        try:
            response = httpx.get(f"{url}/info", timeout=1)
            if response.status_code == 200:
                body: dict[str, object] = response.json()
                return body
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("fairloss serve did not answer within 60 s")
