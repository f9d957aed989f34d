"""The ``fairloss`` command on files made here: in-process and against a running service."""

from __future__ import annotations

import csv
import errno
import functools
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, cast

import httpx
import numpy as np
import pytest
import torch

from fairloss_client import Client, Retry
from fairloss_client.cli import main
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


FIRST_RULES = ["0.66222227", "1.0919567", "0.66222227"]  # brier, pll, pbs of the README rows
SECOND_RULES = ["0.5889176", "2.0666707", "1.2555842"]


@pytest.mark.parametrize("url", [False, True])
def test_score_writes_csv(capsys, files, tmp_path, server_url, url):
    output = tmp_path / "out.csv"
    extra = ["--url", server_url] if url else []
    code, _, _ = run(capsys, "score", files["npz"], "--output", output, *extra)
    assert code == 0
    rows = list(csv.reader(output.read_text().splitlines()))
    rules = ["brier", "pll", "pbs"]  # the columns compare writes too
    assert rows == [
        ["index", "label", "ce", "penalty", "total", "predicted", "correct", *rules],
        ["0", "0", "1.0919567", "1.5138892e-05", "1.0919719", "0", "True", *FIRST_RULES],
        ["1", "0", "0.9680584", "0.33333334", "1.3013917", "1", "False", *SECOND_RULES],
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


# Every error the command can meet: one line on stderr, "fairloss: error: ...", status 1, and no
# traceback. Each case sets up its files (and, for the network, a stand-in transport) in a fresh
# directory, runs `main` there, or a real `python -m fairloss_client.cli` where the case says
# so, and names the phrase that the one line must hold. `{port}` is a port where nothing listens,
# `{server}` a running service, `{keyed}` one that needs the key "sekrit", `{gpus}` the number of
# GPUs here (so `cuda:{gpus}` never exists).

REPO = Path(__file__).resolve().parents[1]
HTML_404 = "<html>\n<head><title>404</title></head>\n<body>\n<h1>Not Found</h1>\n</body>\n</html>\n"


@dataclass
class Context:
    path: Path
    monkeypatch: pytest.MonkeyPatch
    request: pytest.FixtureRequest


Setup = Callable[[Context], None]


def good_file(ctx: Context) -> None:
    np.savez(ctx.path / "x.npz", logits=LOGITS, labels=LABELS)


def no_retries(ctx: Context, transport: httpx.BaseTransport | None = None) -> None:
    """Fail on the first transport error rather than after the client's backoff."""
    client = functools.partial(Client, retry=Retry(attempts=1), transport=transport)
    ctx.monkeypatch.setattr("fairloss_client.cli_remote.Client", client)


def answering(handler: Callable[[httpx.Request], httpx.Response]) -> Setup:
    """A stand-in service: ``handler`` answers (or raises) for every request."""

    def setup(ctx: Context) -> None:
        good_file(ctx)
        no_retries(ctx, httpx.MockTransport(handler))

    return setup


def raising(exc: Exception) -> Setup:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return answering(handler)


def unresolvable(request: httpx.Request) -> httpx.Response:
    """What httpx raises when DNS knows no such host (a real lookup would depend on the network)."""
    cause = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    raise httpx.ConnectError("[Errno -2] Name or service not known", request=request) from cause


def unwritable_directory(ctx: Context) -> None:
    good_file(ctx)
    locked = ctx.path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    ctx.request.addfinalizer(lambda: locked.chmod(0o700))
    if os.access(locked, os.W_OK):  # root: modes do not bind, so refuse as the OS would
        real_open = Path.open

        def refusing_open(self: Path, *args: Any, **kwargs: Any) -> Any:
            if self.parent.resolve() == locked.resolve():
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
            return real_open(self, *args, **kwargs)

        ctx.monkeypatch.setattr(Path, "open", refusing_open)


def then(*steps: Setup) -> Setup:
    def setup(ctx: Context) -> None:
        for step in steps:
            step(ctx)

    return setup


def clean_serve_environment(ctx: Context) -> None:
    """`fairloss serve` sets FAIRLOSS_* for the service it starts; undo that after the test."""
    for name in ("HOST", "PORT", "DEVICE", "WORKERS"):
        ctx.monkeypatch.setenv(f"FAIRLOSS_{name}", "")
        ctx.monkeypatch.delenv(f"FAIRLOSS_{name}")


def writing(**writers: Callable[[Path], object]) -> Setup:
    """Write each named file with its writer: ``writing(**{"x.npz": lambda p: ...})``."""

    def setup(ctx: Context) -> None:
        for name, write in writers.items():
            write(ctx.path / name)

    return setup


class Unpicklable:
    """Not a tensor: `torch.load(weights_only=True)` refuses a pickle of it."""


@dataclass
class Case:
    id: str
    argv: list[str]
    phrase: str
    setup: Setup = good_file
    process: bool = False  # run a real `python -m fairloss_client.cli` rather than `main`
    stdout: str | None = None  # a file for the process's stdout

    def param(self) -> Any:
        return pytest.param(self, id=self.id)


URL_CASES = [
    Case(
        "url-without-scheme",
        ["score", "x.npz", "--url", "127.0.0.1:8000"],
        "--url 127.0.0.1:8000: expected an http:// or https:// URL with a host; "
        "did you mean http://127.0.0.1:8000?",
        process=True,
    ),
    Case(
        "url-ftp-scheme",
        ["score", "x.npz", "--url", "ftp://127.0.0.1/"],
        "--url ftp://127.0.0.1/: expected an http:// or https:// URL with a host",
    ),
    Case(
        "url-without-host",
        ["score", "x.npz", "--url", "http://"],
        "expected an http:// or https:// URL with a host",
    ),
    Case("url-invalid", ["score", "x.npz", "--url", "http://[::1"], "not a valid URL"),
    Case(
        "url-port-out-of-range",
        ["score", "x.npz", "--url", "http://127.0.0.1:99999"],
        "port 99999 is out of range",
    ),
    Case(
        "connection-refused",
        ["score", "x.npz", "--url", "http://127.0.0.1:{port}"],
        "cannot reach http://127.0.0.1:{port}: connection refused",
        process=True,
    ),
    Case(
        "connection-refused-compare",
        ["compare", "x.npz", "--url", "http://127.0.0.1:{port}/"],
        "cannot reach http://127.0.0.1:{port}: connection refused",
        setup=then(good_file, no_retries),
    ),
    Case(
        "dns-failure",
        ["score", "x.npz", "--url", "http://nowhere.invalid"],
        "cannot reach http://nowhere.invalid: cannot resolve host 'nowhere.invalid'",
        setup=answering(unresolvable),
    ),
    Case(
        "connect-timeout",
        ["score", "x.npz", "--url", "http://10.255.255.1"],
        "cannot reach http://10.255.255.1: timed out connecting",
        setup=raising(httpx.ConnectTimeout("timed out")),
    ),
    Case(
        "read-timeout",
        ["score", "x.npz", "--url", "http://slow.test"],
        "http://slow.test: timed out waiting for an answer",
        setup=raising(httpx.ReadTimeout("timed out")),
    ),
    Case(
        "connection-dropped",
        ["score", "x.npz", "--url", "http://flaky.test"],
        "lost the connection to http://flaky.test: Server disconnected",
        setup=raising(httpx.RemoteProtocolError("Server disconnected without sending a response.")),
    ),
    Case(
        "not-the-service",
        ["score", "x.npz", "--url", "http://web.test"],
        "http://web.test does not answer like the FairLoss scoring service",
        setup=answering(lambda request: httpx.Response(200, html="<html>\n<p>hi</p>\n</html>")),
    ),
    Case(
        "html-404",
        ["score", "x.npz", "--url", "http://web.test/app"],
        "HTTP 404: <html> <head><title>404</title></head> <body> <h1>Not Found</h1> </body> "
        "</html>; is http://web.test/app the FairLoss scoring service?",
        setup=answering(lambda request: httpx.Response(404, html=HTML_404)),
    ),
    Case(
        "service-refuses-422",
        ["score", "x.npz", "--url", "{server}", "--device", "cuda:99"],
        "HTTP 422 for rows 0..1: Device 'cuda:99' does not exist on this server",
    ),
    Case(
        "401-without-api-key",
        ["score", "x.npz", "--url", "{keyed}"],
        "HTTP 401: This server needs an API key: send Authorization: Bearer <key>; "
        "give one with --api-key KEY or FAIRLOSS_API_KEY",
    ),
    Case(
        "401-wrong-api-key",
        ["score", "x.npz", "--url", "{keyed}", "--api-key", "wrong"],
        "HTTP 401: The API key is not valid; check the key given by --api-key",
    ),
    Case(
        "api-key-not-ascii",
        ["score", "x.npz", "--url", "{keyed}", "--api-key", "clé"],
        "--api-key (or FAIRLOSS_API_KEY): expected printable ASCII",
    ),
    Case(
        "concurrency-0",
        ["score", "x.npz", "--url", "{server}", "--concurrency", "0"],
        "--concurrency 0: expected 1 or more",
    ),
    Case(
        "bad-option-before-any-request",
        ["score", "x.npz", "--url", "http://127.0.0.1:{port}", "--label-smoothing", "2"],
        "--label-smoothing 2.0: Expected `label_smoothing` to be a finite number in [0, 1], but "
        "got 2.0",
    ),
]

FILE_CASES = [
    Case(
        "file-missing",
        ["score", "x.npz"],
        "x.npz: cannot read it: no such file or directory",
        setup=lambda ctx: None,
    ),
    Case(
        "file-is-a-directory",
        ["score", "d.npz"],
        "d.npz: cannot read it: is a directory",
        setup=lambda ctx: (ctx.path / "d.npz").mkdir(),
    ),
    Case(
        "labels-missing",
        ["score", "x.npz", "--labels", "y.npy"],
        "y.npy: cannot read it: no such file or directory",
    ),
    Case(
        "unknown-suffix",
        ["score", "x.txt"],
        "expected a .npz, .npy",
        setup=writing(**{"x.txt": lambda p: p.write_text("1")}),
    ),
    Case(
        "npz-truncated",
        ["score", "x.npz"],
        "x.npz: cannot read it as a numpy .npy or .npz file (File is not a zip file)",
        setup=writing(**{"x.npz": lambda p: p.write_bytes(b"PK\x03\x04 truncated")}),
    ),
    Case(
        "npy-junk",
        ["score", "x.npy"],
        "x.npy: cannot read it as a numpy .npy or .npz file",
        setup=writing(**{"x.npy": lambda p: p.write_bytes(b"junk")}),
    ),
    Case(
        "npz-without-logits",
        ["score", "x.npz"],
        "x.npz: holds none of 'logits', 'probabilities', 'log_probabilities' (it holds 'labels')",
        setup=writing(**{"x.npz": lambda p: np.savez(p, labels=LABELS)}),
    ),
    Case(
        "npy-without-labels",
        ["score", "x.npy"],
        "no labels: x.npy holds no 'labels' (it holds one bare array); give --labels FILE",
        setup=writing(**{"x.npy": lambda p: np.save(p, LOGITS)}),
    ),
    Case(
        "pt-pickle-of-an-object",
        ["score", "x.pt"],
        "x.pt: torch.load(weights_only=True) refuses it",
        setup=writing(**{"x.pt": lambda p: p.write_bytes(pickle.dumps(Unpicklable()))}),
    ),
    Case(
        "pt-with-numpy-inside",
        ["score", "x.pt"],
        "x.pt: torch.load(weights_only=True) refuses it (Unsupported global: GLOBAL numpy",
        setup=writing(**{"x.pt": lambda p: torch.save({"logits": LOGITS, "labels": LABELS}, p)}),
    ),
    Case(
        "pt-junk",
        ["score", "x.pt"],
        "x.pt: cannot read it as a torch.save file",
        setup=writing(**{"x.pt": lambda p: p.write_bytes(b"junk")}),
    ),
    Case(
        "pt-of-a-list",
        ["score", "x.pt"],
        "expected a tensor or a dict of tensors, not list",
        setup=writing(**{"x.pt": lambda p: torch.save([1, 2], p)}),
    ),
    Case(
        "shape-mismatch",
        ["score", "x.npz"],
        "x.npz: 2 rows of logits, but 3 labels (in x.npz)",
        setup=writing(**{"x.npz": lambda p: np.savez(p, logits=LOGITS, labels=[0, 1, 2])}),
    ),
    Case(
        "shape-mismatch-compare",
        ["compare", "x.npz", "y.npy"],
        "y.npy: 3 rows of logits, but 2 labels (in x.npz)",
        setup=then(good_file, writing(**{"y.npy": lambda p: np.save(p, np.ones((3, 3)))})),
    ),
    Case(
        "label-out-of-range",
        ["score", "x.npz"],
        "x: Expected labels in [0, 3), but labels[1] is 3",
        setup=writing(**{"x.npz": lambda p: np.savez(p, logits=LOGITS, labels=[0, 3])}),
    ),
    Case("same-names", ["compare", "x.npz", "x.npz"], "two files are named 'x'"),
    Case(
        "candidates-with-other-labels",
        ["compare", "x.npz", "y.npz"],
        "y.npz: holds labels that differ from those of x.npz; every candidate is scored "
        "against one set of labels",
        setup=then(
            good_file, writing(**{"y.npz": lambda p: np.savez(p, logits=LOGITS, labels=[1, 1])})
        ),
    ),
    Case(
        "labels-flag-differs-from-the-file",
        ["score", "x.npz", "--labels", "y.npy"],
        "x.npz: holds labels that differ from those of --labels y.npy",
        setup=then(good_file, writing(**{"y.npy": lambda p: np.save(p, np.array([1, 1]))})),
    ),
    Case(
        "unsigned-label-past-int64",
        ["score", "z.npy", "--labels", "y.npy", "--ignore-index", "-1"],
        "Expected `labels` within int64, but [1] is 18446744073709551615",
        setup=writing(
            **{
                "z.npy": lambda p: np.save(p, LOGITS),
                "y.npy": lambda p: np.save(p, np.array([0, 2**64 - 1], dtype=np.uint64)),
            }
        ),
    ),
    Case(
        "output-suffix",
        ["score", "x.npz", "--output", "x.txt"],
        "--output takes a .csv or .json file",
    ),
    Case(
        "output-directory-missing",
        ["score", "x.npz", "--output", "no/such/out.csv"],
        "--output no/such/out.csv: no such directory no/such",
    ),
    Case(
        "output-is-a-directory",
        ["score", "x.npz", "--output", "out.json"],
        "--output out.json: is a directory",
        setup=then(good_file, writing(**{"out.json": Path.mkdir})),
    ),
    Case(
        "output-permission-denied",
        ["compare", "x.npz", "--output", "locked/out.csv"],
        "--output locked/out.csv: cannot write it: permission denied",
        setup=unwritable_directory,
    ),
    Case(
        "stdout-full",
        ["score", "x.npz"],
        "cannot write to standard output: no space left on device",
        process=True,
        stdout="/dev/full",
    ),
]

OPTION_CASES = [
    Case(
        "smooth-max-beta-negative",
        ["score", "x.npz", "--smooth-max-beta", "-1"],
        "--smooth-max-beta -1.0: Expected `smooth_max_beta` to be a finite number larger than 0, "
        "but got -1.0",
    ),
    Case(
        "smooth-max-beta-nan",
        ["score", "x.npz", "--smooth-max-beta", "nan"],
        "--smooth-max-beta nan: Expected `smooth_max_beta` to be a finite number larger than 0, "
        "but got nan",
    ),
    Case(
        "ignore-index-too-large",
        ["score", "x.npz", "--ignore-index", str(2**64)],
        f"--ignore-index {2**64}: Expected `ignore_index` to be an integer in [-2**63, 2**63)",
    ),
    Case(
        "bootstrap-zero-replicates",
        ["score", "x.npz", "--bootstrap", "0"],
        "--bootstrap 0: Expected `bootstrap.replicates` to be an integer in [1, 10000], but got 0",
    ),
    Case(
        "bootstrap-confidence-level-one",
        ["score", "x.npz", "--bootstrap", "10", "--confidence-level", "1"],
        "--confidence-level 1.0: Expected `bootstrap.confidence_level` to be a number in (0, 1)",
    ),
    Case(
        "bootstrap-negative-seed",
        ["score", "x.npz", "--bootstrap", "10", "--seed", "-1"],
        "--seed -1: Expected `bootstrap.seed` to be an integer in [0, 2**64), but got -1",
    ),
    Case(
        "device-unknown",
        ["score", "x.npz", "--device", "tpu"],
        "--device tpu: Unknown device 'tpu': use 'auto', 'cpu', 'cuda' or 'cuda:K'. Devices here:",
    ),
    Case(
        "device-without-gpu",
        ["score", "x.npz", "--device", "cuda:{gpus}"],
        "--device cuda:{gpus}: Device 'cuda:{gpus}' does not exist on this server. Devices here:",
    ),
    Case(
        "serve-port-out-of-range",
        ["serve", "--port", "99999"],
        "--port or FAIRLOSS_PORT: Input should be less than or equal to 65535",
        setup=clean_serve_environment,
    ),
    Case(
        "serve-device-unknown",
        ["serve", "--device", "tpu", "--port", "0"],
        "--device or FAIRLOSS_DEVICE tpu: Unknown device 'tpu'",
        setup=clean_serve_environment,
    ),
]


@pytest.fixture(scope="module")
def keyed_url() -> Iterator[str]:
    with running_server({"FAIRLOSS_API_KEYS": "sekrit"}) as server:
        yield server.url


def run_process(
    argv: Sequence[str], cwd: Path, stdout: Any = subprocess.PIPE
) -> subprocess.CompletedProcess[str]:
    """A real `python -m fairloss_client.cli ARGV`, without the FAIRLOSS_* of this environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAIRLOSS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "fairloss_client.cli", *argv]
    return subprocess.run(
        command, cwd=cwd, env=env, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=120
    )


def assert_one_error_line(code: int, out: str, err: str, phrase: str) -> None:
    assert "Traceback" not in out + err
    assert code == 1, err
    assert err.startswith("fairloss: error: "), err
    assert err.endswith("\n"), err
    assert err.count("\n") == 1, err
    assert phrase in err, err


@pytest.mark.parametrize("case", [c.param() for c in URL_CASES + FILE_CASES + OPTION_CASES])
def test_every_error_is_one_line_and_status_1(
    case: Case, capsys, tmp_path, monkeypatch, request
) -> None:
    if case.stdout is not None and not Path(case.stdout).exists():
        pytest.skip(f"no {case.stdout} here")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FAIRLOSS_API_KEY", raising=False)
    case.setup(Context(tmp_path, monkeypatch, request))
    values = {"port": str(free_port()), "gpus": str(torch.cuda.device_count())}
    for name, fixture in (("server", "server_url"), ("keyed", "keyed_url")):
        if any(f"{{{name}}}" in a for a in case.argv):
            values[name] = request.getfixturevalue(fixture)
    argv = [a.format(**values) for a in case.argv]
    phrase = case.phrase.format(**values)
    if case.process:
        if case.stdout is None:
            done = run_process(argv, tmp_path)
        else:
            with open(case.stdout, "w") as stdout:
                done = run_process(argv, tmp_path, stdout)
        code, out, err = done.returncode, done.stdout or "", done.stderr
    else:
        code, out, err = run(capsys, *argv)
        assert out == ""
    assert_one_error_line(code, out, err, phrase)


def test_a_closed_stdout_pipe_exits_quietly(tmp_path, files):
    """`fairloss score x.npz | head -1`, with `head` gone before the table is written."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAIRLOSS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    output = tmp_path / "out.csv"
    for argv, codes in (
        (["score", str(files["npz"]), "--output", str(output)], {1}),
        (["compare", str(files["npz"]), str(files["pt"])], {1}),
        (["--help"], {0, 1}),  # argparse itself may swallow the failed write and exit 0
    ):
        process = subprocess.Popen(
            [sys.executable, "-m", "fairloss_client.cli", *argv],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert process.stdout is not None
        assert process.stderr is not None
        process.stdout.close()  # the reader goes away before the command has written anything
        err = process.stderr.read()
        process.stderr.close()
        assert err == b"", argv
        assert process.wait(timeout=120) in codes, argv
    assert output.read_text().startswith("index,label,ce,")  # written before the table


def test_interrupt_exits_130_with_one_line(capsys, files, monkeypatch):
    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("fairloss_client.cli.load", interrupted)
    try:
        code, out, err = run(capsys, "score", files["npz"])
    except KeyboardInterrupt:
        pytest.fail("main let KeyboardInterrupt through")
    assert (code, out, err) == (130, "", "fairloss: error: interrupted\n")


def test_ctrl_c_while_waiting_for_the_service(tmp_path, files):
    """SIGINT while the command waits for an answer that never comes: one line, status 130."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAIRLOSS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        silent.settimeout(120)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        argv = [sys.executable, "-m", "fairloss_client.cli", "score", str(files["npz"])]
        with subprocess.Popen(
            [*argv, "--url", url],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as process:
            connection, _ = silent.accept()
            with connection:
                # the whole request read: the command now only waits for /info's answer (a
                # signal in the midst of sending once took 60 s to be noticed, in CI)
                connection.settimeout(60)
                request = b""
                while b"\r\n\r\n" not in request:
                    request += connection.recv(4096) or pytest.fail("closed: " + str(request))
                assert request.startswith(b"GET /info ")
                process.send_signal(signal.SIGINT)
                try:
                    out, err = process.communicate(timeout=60)
                finally:
                    process.kill()
    assert (process.returncode, out, err) == (130, "", "fairloss: error: interrupted\n")


@pytest.mark.parametrize(
    "argv", [["--help"], ["score", "--help"], ["compare", "--help"]], ids=" ".join
)
def test_help_reads_cleanly(capsys, argv):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    out = capsys.readouterr().out
    assert exited.value.code == 0
    assert out.startswith("usage: fairloss")
    assert "``" not in out
    if argv == ["--help"]:
        assert "or score and compare files of predictions." in out


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["score"])
    assert exited.value.code == 2
    assert "the following arguments are required: file" in capsys.readouterr().err


def test_entry_point_is_main():
    (script,) = entry_points(group="console_scripts", name="fairloss")
    assert script.load() is main


def test_serve_runs_the_service(tmp_path):
    """`fairloss serve` becomes `python -m service`, whose workers start with sleeping torch
    threads asked for (OMP_WAIT_POLICY, read once when torch loads)."""
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FAIRLOSS_") and k != "OMP_WAIT_POLICY"
    }
    command = [sys.executable, "-m", "fairloss_client.cli", "serve", "--host", "127.0.0.1"]
    argv = [*command, "--port", str(port), "--device", "cpu", "--workers", "2"]
    with (tmp_path / "log").open("w+") as log:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
        try:
            info = _wait_for_info(f"http://127.0.0.1:{port}", process)
            server = cast("dict[str, Any]", info["server"])
            environ = Path(f"/proc/{server['worker_pid']}/environ").read_bytes().split(b"\0")
        finally:
            process.terminate()
            process.wait(timeout=15)
    assert info["default_device"] == "cpu"
    assert server["workers"] == 2
    assert server["worker_pid"] != process.pid
    assert b"OMP_WAIT_POLICY=PASSIVE" in environ
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


def test_compare_with_bootstrap_prints_each_pair_with_interval_and_p_values(capsys, tmp_path):
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(400, 4)), rng.integers(0, 4, 400)
    np.savez(tmp_path / "a.npz", logits=logits, labels=labels)
    np.savez(tmp_path / "b.npz", logits=logits + 2 * np.eye(4)[labels], labels=labels)
    argv = ["compare", tmp_path / "a.npz", tmp_path / "b.npz", "--bootstrap", "200", "--seed", "3"]
    code, out, err = run(capsys, *argv)
    assert (code, err) == (0, "")
    rows = {line.split()[3]: line.split() for line in out.splitlines() if line.startswith("a - b")}
    assert set(rows) == {
        "ce",
        "penalty",
        "total",
        "log_loss",
        "brier",
        "pll",
        "pbs",
        "accuracy",
        "ece",
    }
    # b is far better: no randomization is as far, p = 1 / (1 + 200); one pair: Holm's p is p
    assert rows["total"][-4:] == ["0.004975", "0.004975", "-", "b"]
    assert rows["accuracy"][-1] == "b"
    assert rows["accuracy"][-2] != "-"  # McNemar's p-value
    assert "95% interval" not in out  # score's table, not compare's


def test_score_with_bootstrap_prints_intervals(capsys, files):
    code, out, _ = run(
        capsys, "score", files["npz"], "--bootstrap", "50", "--confidence-level", "0.8"
    )
    assert code == 0
    assert "80% interval" in out
    assert sum(line.split()[0] in {"ce", "accuracy", "ece"} for line in out.splitlines()[-9:]) == 3


@pytest.fixture
def sliced(tmp_path: Path) -> dict[str, Path]:
    """Two models' .npz files of 600 rows; the first also holds group columns."""
    rng = np.random.default_rng(8)
    labels = rng.integers(0, 5, 600)
    logits = rng.normal(size=(600, 5)).astype(np.float32)
    logits[np.arange(600), labels] += 1.0
    other = logits + rng.normal(size=logits.shape).astype(np.float32)
    language = rng.choice(["de", "en", "fr"], 600)
    paths = {"a": tmp_path / "a.npz", "b": tmp_path / "b.npz"}
    site = np.arange(600) % 20
    np.savez(
        paths["a"], logits=logits, labels=labels, language=language, source=labels % 2, site=site
    )
    np.savez(paths["b"], logits=other, labels=labels)
    return paths


def test_groups_and_per_class_print_the_same_in_process_and_through_the_service(
    capsys, sliced, server_url
):
    argv = ["compare", sliced["a"], sliced["b"], "--groups", "language,source", "--per-class"]
    argv += ["--bootstrap", "100", "--seed", "5"]
    local = run(capsys, *argv)
    remote = run(capsys, *argv, "--url", server_url)
    assert local[0] == 0
    assert remote == local
    out = local[1]
    for heading in ("a: per class", "b: by language", "a: by source", "a - b by language"):
        assert heading in out.splitlines()
    pairs = out.split("a - b by language")[1].splitlines()
    rows = [line.split() for line in pairs[3:9]]
    assert [row[:2] for row in rows[::2]] == [["de", "total"], ["en", "total"], ["fr", "total"]]
    assert all(row[-2:] == ["*", "a"] for row in rows[::2])  # b is worse in every language


@pytest.mark.parametrize(
    ("extra", "phrase"),
    [
        (["--groups", "lang"], "--groups: {a} holds no array 'lang'"),
        (["--groups", "language", "--labels", "{b}"], "--groups: {b} holds no array 'language'"),
        (
            ["--groups", "site", "--bootstrap", "10000"],
            "--groups: Expected at most 4,194,304 replicate sums",
        ),
    ],
)
def test_bad_groups_are_one_line_errors(capsys, sliced, extra, phrase):
    argv = [a.format(**sliced) for a in ["score", str(sliced["a"]), *extra]]
    code, out, err = run(capsys, *argv)
    assert_one_error_line(code, out, err, phrase.format(**sliced))


def test_the_json_output_holds_every_answer_the_tables_show(capsys, sliced, tmp_path):
    """--output JSON: intervals, differences with their p-values, per-class and per-key
    numbers, under the service's field names; score and compare write the same CSV columns."""
    output = tmp_path / "out.json"
    argv = ["compare", sliced["a"], sliced["b"], "--groups", "language", "--per-class"]
    code, out, _ = run(capsys, *argv, "--bootstrap", "50", "--output", output)
    assert code == 0
    body = json.loads(output.read_text())
    [pair] = body["differences"]
    assert (pair["a"], pair["b"]) == ("a", "b")
    assert set(pair["criteria"]["total"]) >= {"estimate", "low", "high", "p_value", "p_adjusted"}
    assert pair["criteria"]["accuracy"]["mcnemar_p_value"] is not None
    assert [e["key"] for e in pair["groups"]["language"]] == ["de", "en", "fr"]
    first = body["candidates"][0]
    assert first["bootstrap"] == {"replicates": 50, "confidence_level": 0.95, "seed": 0}
    assert set(first["intervals"]) >= {"ce", "total", "accuracy", "ece"}
    assert len(first["classes"]["support"]) == 5
    assert set(first["groups"]["language"][0]) >= {"key", "count", "intervals", "vs_rest"}
    estimate = f"{pair['criteria']['total']['estimate']:.6f}"
    assert any(line.startswith("a - b") and estimate in line for line in out.splitlines())
    headers = []
    for command, files in (("score", [sliced["a"]]), ("compare", [sliced["a"], sliced["b"]])):
        path = tmp_path / f"{command}.csv"
        assert run(capsys, command, *files, "--output", path)[0] == 0
        headers.append(next(csv.reader(path.read_text().splitlines())))
    assert headers[1] == ["candidate", *headers[0]]


def test_logits_that_look_like_probabilities_are_scored_with_a_warning(capsys, tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "probs.npz"
    np.savez(path, logits=rng.dirichlet(np.ones(3), size=20), labels=rng.integers(0, 3, 20))
    code = main(["score", str(path)])
    out, err = capsys.readouterr()
    assert code == 0
    assert "total (mean)" in out
    assert err.startswith("fairloss: warning: probs: `logits` look like probabilities")
    assert err.count("\n") == 1
