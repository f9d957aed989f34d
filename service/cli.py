"""The ``fairloss`` command: serve the scoring service, or score and compare files of logits.

``fairloss score FILE`` and ``fairloss compare FILE...`` read ``.npz`` (arrays ``logits`` and
``labels``), ``.npy`` (logits; labels from ``--labels``) and ``.pt`` files (a dict of ``logits``
and ``labels`` tensors, loaded with ``weights_only=True``). With ``--url`` they call a running
service through `fairloss.client.Client`; without, they score in this process with the service's
own `service.scoring.evaluate`.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import orjson
import torch

from fairloss.client import (
    Array,
    CandidateResult,
    Client,
    CompareResult,
    Options,
    ScoreResult,
    ServiceError,
    as_labels,
    as_logits,
    as_numpy,
    merge_comparisons,
    merge_scores,
    options_body,
)
from service.devices import available_devices, resolve_device
from service.errors import ProblemError
from service.scoring import evaluate, parse_options

SUFFIXES = (".npz", ".npy", ".pt")
OPTION_FLAGS = (
    "smooth_max_beta",
    "scaling_factor",
    "label_smoothing",
    "ignore_index",
    "reduction",
    "device",
    "precision",
)


class CliError(Exception):
    """A problem with the command line or its files, said in one line."""


def _arrays(path: Path) -> dict[str, Any]:
    """The arrays in ``path``: ``logits`` and, where the file has them, ``labels``."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise CliError(f"{path}: expected a {', '.join(SUFFIXES)} file")
    try:
        if suffix == ".npy":
            return {"logits": np.load(path)}
        if suffix == ".npz":
            with np.load(path) as data:
                return {k: data[k] for k in ("logits", "labels") if k in data.files}
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise CliError(f"{path}: cannot read it ({exc})") from None
    if isinstance(loaded, torch.Tensor):
        return {"logits": loaded}
    if isinstance(loaded, Mapping):
        return {k: loaded[k] for k in ("logits", "labels") if k in loaded}
    raise CliError(f"{path}: expected a tensor or a dict of tensors, not {type(loaded).__name__}")


def load(paths: Sequence[Path], labels_path: Path | None) -> tuple[dict[str, Any], Any]:
    """Each file's logits (named by file stem) and the labels they share."""
    logits: dict[str, Any] = {}
    labels = None
    if labels_path is not None:
        found = _arrays(labels_path)
        labels = found.get("labels", found["logits"] if labels_path.suffix == ".npy" else None)
        if labels is None:
            raise CliError(f"{labels_path}: holds no `labels`")
    for path in paths:
        found = _arrays(path)
        if "logits" not in found:
            raise CliError(f"{path}: holds no `logits`")
        if path.stem in logits:
            raise CliError(f"two files are named {path.stem!r}; candidates need unique names")
        logits[path.stem] = found["logits"]
        if labels is None:
            labels = found.get("labels")
    if labels is None:
        raise CliError("no labels: give a file with `labels`, or --labels FILE")
    return logits, labels


def _options(args: argparse.Namespace) -> Options:
    options = {k: getattr(args, k) for k in OPTION_FLAGS if getattr(args, k) is not None}
    return cast(Options, options)


def _in_process(
    logits: Mapping[str, Any], labels: Any, options: Options, compare: bool
) -> dict[str, Any]:
    """One ``/compare``-shaped body, computed here by the service's own scoring code."""
    parsed = parse_options(options_body(options, compare=compare))
    device = resolve_device(parsed.device or "auto", available_devices())
    y = None
    results = []
    for name, value in logits.items():
        z = as_logits(value, name, parsed.precision)
        y = as_labels(labels, z.shape[0]) if y is None else y
        results.append({"name": name, **evaluate(z, y, parsed, device)})
    return {"candidates": results}


def score(args: argparse.Namespace, logits: Mapping[str, Any], labels: Any) -> ScoreResult:
    if args.url is None:
        return merge_scores(_in_process(logits, labels, _options(args), False)["candidates"])
    with _client(args) as client:
        (only,) = logits.values()
        return client.score(only, labels, **_options(args))


def compare(args: argparse.Namespace, logits: Mapping[str, Any], labels: Any) -> CompareResult:
    if args.url is None:
        return merge_comparisons([_in_process(logits, labels, _options(args), True)])
    with _client(args) as client:
        return client.compare(logits, labels, **_options(args))


def _client(args: argparse.Namespace) -> Client:
    return Client(
        args.url,
        api_key=args.api_key,
        concurrency=args.concurrency,
        progress=args.progress,
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Rows under a header; columns of numbers aligned right, of text left."""
    cells = [[_cell(v) for v in row] for row in rows]
    right = [any(row[k][1] for row in cells) for k in range(len(header))]
    texts = [list(header), *[[text for text, _ in row] for row in cells]]
    widths = [max(len(row[k]) for row in texts) for k in range(len(header))]
    lines = [
        "  ".join(
            t.rjust(w) if r else t.ljust(w) for t, w, r in zip(row, widths, right, strict=True)
        ).rstrip()
        for row in texts
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: object) -> tuple[str, bool]:
    if isinstance(value, float):
        return f"{value:.6f}", True
    return str(value), isinstance(value, int) or "/" in str(value)


def _summary_rows(result: ScoreResult) -> list[tuple[str, object]]:
    how = result.reduction
    return [
        ("samples", result.n),
        ("counted", result.sums.count),
        ("classes", result.num_classes),
        ("device", ", ".join(result.devices)),
        *((f"{k} ({how})", v) for k, v in result.reduced.items()),
        *result.metrics.items(),
    ]


def print_score(result: ScoreResult) -> None:
    print(_table(("", "value"), _summary_rows(result)))


def print_compare(result: CompareResult) -> None:
    header = [
        "candidate",
        "accuracy",
        "ce",
        "penalty",
        "total",
        "pll",
        "pbs",
        "ce viol.",
        "total viol.",
    ]
    rows = [
        [
            c.name,
            c.metrics["accuracy"],
            *c.reduced.values(),
            c.metrics["pll"],
            c.metrics["pbs"],
            *(f"{c.violations[k].count}/{c.violations[k].pairs}" for k in ("ce", "total")),
        ]
        for c in result.candidates
    ]
    print(_table(header, rows))
    print()
    print(
        _table(("ranking", "best first"), [(k, " > ".join(v)) for k, v in result.ranking.items()])
    )


def _columns(result: ScoreResult, labels: Array) -> dict[str, Array]:
    return {"index": np.arange(result.n), "label": labels, **result.per_sample}


def write_output(path: Path, result: ScoreResult | CompareResult, labels: Array) -> None:
    """Per-sample results as CSV (one row per sample and candidate) or JSON (columns)."""
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
    bodies = [
        {
            **(
                {"name": one.name, "violations": one.violations}
                if isinstance(one, CandidateResult)
                else {}
            ),
            "n": one.n,
            "reduced": {"reduction": one.reduction, **one.reduced},
            "metrics": one.metrics,
            "per_sample": _columns(one, labels),
        }
        for one in results
    ]
    body: dict[str, Any] = (
        {"candidates": bodies, "ranking": result.ranking}
        if isinstance(result, CompareResult)
        else bodies[0]
    )
    path.write_bytes(
        orjson.dumps(
            body,
            option=orjson.OPT_SERIALIZE_NUMPY
            | orjson.OPT_SERIALIZE_DATACLASS
            | orjson.OPT_INDENT_2,
        )
    )


def serve(args: argparse.Namespace) -> None:
    """Run the service as ``python -m service`` does; flags override ``FAIRLOSS_*``."""
    for name in ("host", "port", "device", "workers"):
        value = getattr(args, name)
        if value is not None:
            os.environ[f"FAIRLOSS_{name.upper()}"] = str(value)
    from service.__main__ import main as run_service

    run_service()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fairloss", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    serving = commands.add_parser("serve", help="run the scoring service")
    serving.add_argument("--host", help="interface to listen on (FAIRLOSS_HOST)")
    serving.add_argument("--port", type=int, help="port (FAIRLOSS_PORT)")
    serving.add_argument("--device", help="auto, cpu, cuda or cuda:K (FAIRLOSS_DEVICE)")
    serving.add_argument("--workers", type=int, help="worker processes (FAIRLOSS_WORKERS)")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--labels", type=Path, help="labels: a .npy array, or a .npz/.pt with `labels`"
    )
    common.add_argument("--url", help="a running service; without it, score in this process")
    common.add_argument(
        "--api-key",
        default=os.environ.get("FAIRLOSS_API_KEY"),
        help="Bearer key (FAIRLOSS_API_KEY)",
    )
    common.add_argument(
        "--output", type=Path, help="write per-sample results to FILE.csv or FILE.json"
    )
    common.add_argument("--device", help="auto, cpu, cuda or cuda:K")
    common.add_argument("--precision", choices=("float32", "float64"))
    common.add_argument("--reduction", choices=("mean", "sum"))
    common.add_argument("--smooth-max-beta", type=float)
    common.add_argument("--scaling-factor", type=float)
    common.add_argument("--label-smoothing", type=float)
    common.add_argument("--ignore-index", type=int)
    common.add_argument("--concurrency", type=int, default=4, help="chunks in flight (with --url)")
    common.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="progress bar (default: when on a terminal)",
    )

    scoring = commands.add_parser("score", parents=[common], help="score one file of logits")
    scoring.add_argument("file", type=Path)
    comparing = commands.add_parser("compare", parents=[common], help="compare files of logits")
    comparing.add_argument("files", type=Path, nargs="+")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        serve(args)
        return 0
    try:
        if args.output is not None and args.output.suffix.lower() not in (".csv", ".json"):
            raise CliError(f"{args.output}: --output takes a .csv or .json file")
        result: ScoreResult | CompareResult
        if args.command == "score":
            logits, labels = load([args.file], args.labels)
            result = score(args, logits, labels)
            print_score(result)
        else:
            logits, labels = load(args.files, args.labels)
            result = compare(args, logits, labels)
            print_compare(result)
        if args.output is not None:
            write_output(args.output, result, as_numpy(labels))
    except (CliError, ServiceError, ProblemError, ValueError, TypeError) as exc:
        print(f"fairloss: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
