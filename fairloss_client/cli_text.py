"""The command line's words: errors on one line, results as tables."""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from fairloss_client.results import CompareResult, ScoreResult

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_ERRNO = re.compile(r"^\[Errno -?\d+\]\s*")


class CliError(Exception):
    """A problem with the command line, its files or the service, said in one line."""


def one_line(text: str) -> str:
    """``text`` on one line: newlines, tabs and terminal colour codes gone."""
    return " ".join(_ANSI.sub("", text).split())


def reason(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none."""
    lines = [line.strip() for line in _ANSI.sub("", str(exc)).splitlines() if line.strip()]
    return _ERRNO.sub("", lines[0]) if lines else type(exc).__name__


def os_reason(exc: OSError) -> str:
    """``[Errno 2] No such file or directory: 'x'`` -> ``no such file or directory``."""
    if exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    return reason(exc)


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or during, innermost last."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def error(message: str) -> None:
    """``fairloss: error: MESSAGE`` as one line on stderr, whatever the message holds."""
    with contextlib.suppress(OSError, ValueError):  # stderr closed too: nothing left to tell
        print(f"fairloss: error: {one_line(message)}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """``fairloss: warning: MESSAGE`` as one line on stderr."""
    with contextlib.suppress(OSError, ValueError):
        print(f"fairloss: warning: {one_line(message)}", file=sys.stderr, flush=True)


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
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


def format_score(result: ScoreResult) -> str:
    how = result.reduction
    rows = [
        ("samples", result.n),
        ("counted", result.sums.count),
        ("classes", result.num_classes),
        ("device", ", ".join(result.devices)),
        *((f"{k} ({how})", v) for k, v in result.reduced.items()),
        *result.metrics.items(),
    ]
    text = table(("", "value"), rows) + "\n"
    found = result.intervals
    if found and result.bootstrap is not None:
        level = f"{result.bootstrap.confidence_level:.0%} interval"
        spans = [(name, i["estimate"], span(i)) for name, i in found.items()]
        text += "\n" + table(("criterion (mean)", "estimate", level), spans) + "\n"
    return text


def favours(criterion: str, estimate: float | None, a: str, b: str) -> str:
    """Which of a and b a difference a - b favours: lower is better for every loss, higher
    for accuracy; "neither" at 0 or without an estimate."""
    if estimate is None or estimate != estimate or estimate == 0:
        return "neither"
    return a if (estimate > 0) == (criterion == "accuracy") else b


def span(found: dict[str, Any], digits: int = 6) -> str:
    """An interval ``[low, high]``, or "-" where it has no bounds."""
    if found["low"] is None:
        return "-"
    return f"[{found['low']:.{digits}f}, {found['high']:.{digits}f}]"


def p_text(value: float | None) -> str:
    """A p-value (never 0: the smallest from R randomizations is 1 / (1 + R)), or "-"."""
    return "-" if value is None else f"{value:.4g}"


def format_compare(result: CompareResult) -> str:
    header = ["candidate", "accuracy", "ce", "penalty", "total", "pll", "pbs"]
    header += ["ce viol.", "total viol."]
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
    ranking = [(k, " > ".join(v)) for k, v in result.ranking.items()]
    text = f"{table(header, rows)}\n\n{table(('ranking', 'best first'), ranking)}\n"
    first = result.candidates[0].bootstrap
    if result.differences and first is not None:
        pairs = [
            (
                f"{d['a']} - {d['b']}",
                name,
                found["estimate"],
                span(found),
                p_text(found["p_value"]),
                p_text(found.get("p_adjusted")),
                p_text(found.get("mcnemar_p_value")),
                favours(name, found["estimate"], d["a"], d["b"]),
            )
            for d in result.differences
            for name, found in d["criteria"].items()
        ]
        heading = (
            "pair",
            "criterion",
            "difference",
            "interval",
            "p-value",
            "Holm p",
            "McNemar p",
            "favours",
        )
        text += "\n" + table(heading, pairs) + "\n"
    return text
