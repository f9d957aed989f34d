"""The ``fairloss`` command: serve the scoring service, or score and compare files of predictions.

``fairloss score FILE`` and ``fairloss compare FILE...`` read ``.npz``, ``.npy``, ``.pt``,
``.parquet`` and ``.csv`` files of logits, probabilities or log-probabilities, labels, and
optionally sample weights and group keys (`fairloss_client.cli_inputs`). Without ``--url`` they
score in this process with `fairloss.score_batch`; with it, through `fairloss_client.Client`.
The scoring options' flags are derived from `fairloss.ScoringOptions`.

Every error the command meets is one line on stderr, ``fairloss: error: ...``, and exit status
1. An interrupt exits with 130; a closed stdout pipe (``| head``) exits quietly.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from fairloss.bootstrap import Bootstrap
from fairloss.checks import KINDS
from fairloss.errors import InputError
from fairloss.options import OPTION_NAMES, ScoringOptions, specs
from fairloss_client.arrays import as_predictions
from fairloss_client.cli_files import check_output, write_output
from fairloss_client.cli_inputs import Keys, load
from fairloss_client.cli_local import in_process
from fairloss_client.cli_text import CliError, error, format_compare, format_score, reason, warn
from fairloss_client.cli_where import format_where
from fairloss_client.results import CompareResult, ScoreResult

DESCRIPTION = "Serve the FairLoss scoring service, or score and compare files of predictions."
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
SERVE_FLAGS = ("host", "port", "device", "workers")


def flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def _weights(text: str) -> list[float]:
    """``--class-weights 1,2.5,1``: comma-separated numbers."""
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas: {text!r}"
        ) from None


def _names(text: str) -> list[str]:
    """``--groups language,source``: comma-separated names, none empty."""
    names = [part.strip() for part in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected names separated by commas: {text!r}")
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise argparse.ArgumentTypeError(f"{', '.join(map(repr, twice))} named twice")
    return names


def add_option_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per scoring option, from its declaration (absent: the option's default)."""
    for name, (default, doc, spec) in specs().items():
        kinds: dict[str, dict[str, Any]] = {
            "number": {"type": float},
            "integer": {"type": int},
            "choice": {"choices": spec.choices},
            "weights": {"type": _weights, "metavar": "W1,W2,..."},
            "device": {},
        }
        shown = "" if default is None else f" (default {default})"
        parser.add_argument(flag(name), help=doc + shown, **kinds[spec.kind])


def options_of(args: argparse.Namespace) -> dict[str, Any]:
    """The scoring options given on the command line, checked (a bad one names its flag)."""
    given = {k: getattr(args, k) for k in OPTION_NAMES if getattr(args, k) is not None}
    try:
        ScoringOptions(**given)
    except InputError as exc:
        name = str(exc.loc[0])
        raise CliError(f"{flag(name)} {_shown(getattr(args, name))}: {exc}") from None
    return given


def _shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def bootstrap_of(args: argparse.Namespace) -> Bootstrap | None:
    """``--bootstrap R`` (with ``--confidence-level`` and ``--seed``), checked; None without."""
    if args.bootstrap is None:
        return None
    try:
        return Bootstrap(args.bootstrap, args.confidence_level, args.seed)
    except InputError as exc:
        name = str(exc.loc[-1])
        given = {"replicates": args.bootstrap, "confidence_level": args.confidence_level}
        shown = flag("bootstrap" if name == "replicates" else name)
        raise CliError(f"{shown} {given.get(name, args.seed)}: {exc}") from None


def run_files(args: argparse.Namespace) -> None:
    """``score`` or ``compare``: check the flags, read, score, write, print."""
    remote: ModuleType | None = None
    if args.url is not None:
        remote = importlib.import_module("fairloss_client.cli_remote")  # only here: needs httpx
        args.url = remote.check_url(args.url)
    if args.output is not None:
        check_output(args.output)
    options = options_of(args)
    bootstrap = bootstrap_of(args)
    paths = [args.file] if args.command == "score" else args.files
    precision = options.get("precision", "float32")
    keys = Keys(
        args.kind,
        args.predictions_key,
        args.labels_key,
        args.weight_key,
        args.groups or (),
        precision,
    )
    inputs = load(paths, args.labels, keys, args.progress)
    for name, value in inputs.predictions.items():  # in both paths' words, by file
        kind = inputs.kinds[name]
        try:
            inputs.predictions[name] = as_predictions(value, kind, precision, kind)
        except ValueError as exc:
            raise CliError(f"{name}: {exc}") from None
    compare = args.command == "compare"
    where = {
        "groups": inputs.groups,
        "per_class": args.per_class,
        "kinds": inputs.kinds,
        "sample_weight": inputs.sample_weight,
    }
    result = (
        in_process(inputs.predictions, inputs.labels, options, compare, bootstrap, **where)
        if remote is None
        else remote.remote(
            args.url,
            inputs.predictions,
            inputs.labels,
            options,
            compare=compare,
            bootstrap=bootstrap,
            api_key=args.api_key,
            concurrency=args.concurrency,
            progress=args.progress,
            **where,
        )
    )
    scored = result.candidates if isinstance(result, CompareResult) else [result]
    for one in scored:
        for message in one.warnings:
            warn(f"{getattr(one, 'name', paths[0].stem)}: {message}")
    # The file first: `fairloss score x.npz --output y.csv | head -1` still writes y.csv.
    if args.output is not None:
        write_output(args.output, result, inputs.labels, inputs.groups)
    text = format_score(result) if isinstance(result, ScoreResult) else format_compare(result)
    _print(text + format_where(result))


def serve(args: argparse.Namespace) -> None:
    """Run the service as ``python -m service`` does; flags override ``FAIRLOSS_*``."""
    for name in SERVE_FLAGS:
        value = getattr(args, name)
        if value is not None:
            os.environ[f"FAIRLOSS_{name.upper()}"] = str(value)
    try:
        from service.__main__ import checked_settings
    except ImportError as exc:
        raise CliError(f"serve needs the service: pip install '.[service]' ({exc})") from None
    checked_settings(SERVE_FLAGS)  # a bad flag is reported here, by its name
    # `python -m service` itself, in this process's place: it sets the environment that torch
    # reads when it loads (which this process has done already) before it loads torch.
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", "service"])


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the flush at exit finds no closed pipe to complain of,
    as https://docs.python.org/3/library/signal.html#note-on-sigpipe recommends."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):  # no stdout, or one without a descriptor
        pass


def _print(text: str) -> None:
    """``text`` on stdout, flushed now, so that a closed pipe shows here and not at exit."""
    if sys.stdout is None:  # started with stdout closed
        return
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        _silence_stdout()
        said = (exc.strerror or reason(exc)).lower()
        raise CliError(f"cannot write to standard output: {said}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fairloss", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)

    serving = commands.add_parser("serve", help="run the scoring service")
    serving.add_argument("--host", help="interface to listen on (FAIRLOSS_HOST)")
    serving.add_argument("--port", type=int, help="port (FAIRLOSS_PORT)")
    serving.add_argument("--device", help="auto, cpu, cuda or cuda:K (FAIRLOSS_DEVICE)")
    serving.add_argument(
        "--workers",
        help="worker processes, or auto: one per CPU this process may use (FAIRLOSS_WORKERS)",
    )

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--labels",
        type=Path,
        help="labels: a .npy array, or a .npz, .pt, .parquet or .csv file holding 'labels' "
        "(and 'sample_weight' and the --groups, where it holds them)",
    )
    common.add_argument(
        "--kind",
        choices=KINDS,
        help="what the predictions are (default: whichever of logits, probabilities and "
        "log_probabilities the file holds; a bare .npy: logits)",
    )
    common.add_argument(
        "--predictions-key",
        metavar="KEY",
        help="the array (or table column) of predictions (default: the kind's name); a "
        "table's columns KEY_0 ... KEY_{C-1} are read as one",
    )
    common.add_argument(
        "--labels-key", metavar="KEY", default="labels", help="the labels' array (default labels)"
    )
    common.add_argument(
        "--weight-key",
        metavar="KEY",
        help="the sample weights' array (default: sample_weight, where the labels' file holds it)",
    )
    common.add_argument(
        "--url", help="a running service, http://HOST:PORT; without it, score in this process"
    )
    common.add_argument(
        "--api-key",
        default=os.environ.get("FAIRLOSS_API_KEY"),
        help="Bearer key (FAIRLOSS_API_KEY)",
    )
    common.add_argument(
        "--output", type=Path, help="write per-sample results to FILE.csv or FILE.json"
    )
    common.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="chunks in flight (with --url; default: two for each of the server's workers, "
        "at least 4)",
    )
    common.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="progress bar (default: when on a terminal)",
    )
    add_option_flags(common)
    common.add_argument(
        "--bootstrap",
        type=int,
        metavar="R",
        help="paired Poisson bootstrap with R replicates: intervals, and paired tests in compare",
    )
    common.add_argument(
        "--confidence-level", type=float, default=0.95, help="of the intervals (default 0.95)"
    )
    common.add_argument("--seed", type=int, default=0, help="of the bootstrap (default 0)")
    common.add_argument(
        "--groups",
        type=_names,
        metavar="COLUMN,...",
        help="slice by these arrays (or columns) of the labels' file (one key per row): "
        "per-key numbers, and with --bootstrap each key against the rest",
    )
    common.add_argument(
        "--per-class",
        action="store_true",
        help="per-class precision, recall, F1, losses and calibration, and the most confused",
    )

    scoring = commands.add_parser("score", parents=[common], help="score one file of predictions")
    scoring.add_argument("file", type=Path)
    comparing = commands.add_parser(
        "compare", parents=[common], help="compare files of predictions"
    )
    comparing.add_argument("files", type=Path, nargs="+")
    return parser


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line; argparse's own exits (``--help``, usage errors: status 2) pass through."""
    try:
        return _parser().parse_args(argv)
    except SystemExit:
        _print("")  # flush --help's text now, so that `fairloss --help | head -1` is quiet too
        raise


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; an error is one line on stderr and status 1, never a traceback."""
    try:
        args = _parse(argv)
        if args.command == "serve":
            serve(args)
        else:
            run_files(args)
    except KeyboardInterrupt:
        error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # stdout's reader went away (`| head`): nothing more to say
        _silence_stdout()
        return EXIT_ERROR
    except CliError as exc:
        error(str(exc))
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        error(f"{where}{exc.strerror or reason(exc)}")
    except MemoryError:
        error("out of memory")
    except (ValueError, TypeError, RuntimeError) as exc:  # bad data, worded by whoever saw it
        error(reason(exc))
    except Exception as exc:  # the last resort: a bug, but still one line rather than a traceback
        error(f"unexpected {type(exc).__name__}: {reason(exc)}")
    else:
        return 0
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
