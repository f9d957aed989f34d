"""The command line's tables of where: per class and per slice (``--per-class``,
``--groups``)."""

from __future__ import annotations

import math
from typing import Any

from fairloss_client.cli_text import favours, p_text, span, table
from fairloss_client.results import CompareResult, ScoreResult

MOST_CLASSES = 30  # classes listed in full; past it, the ones with the lowest F1


def format_where(result: ScoreResult | CompareResult) -> str:
    """The per-class and per-slice tables of each scored result, and each pair's per-slice
    differences; empty when neither was asked for."""
    scored = (
        [("", result)]
        if isinstance(result, ScoreResult)
        else [(f"{c.name}: ", c) for c in result.candidates]
    )
    text = ""
    for title, one in scored:
        if one.classes is not None:
            text += "\n" + format_classes(title, one.classes) + "\n"
        if one.groups is not None:
            text += "\n" + format_groups(title, one.groups) + "\n"
    if isinstance(result, CompareResult):
        for pair in result.differences:
            for column, entries in (pair.get("groups") or {}).items():
                text += "\n" + _pair_table(pair["a"], pair["b"], column, entries) + "\n"
    return text


def _number(value: Any) -> object:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _whole(value: float) -> object:
    """A count as an integer when it is one (it is without sample weights)."""
    return int(value) if float(value).is_integer() else value


def format_classes(title: str, classes: dict[str, Any]) -> str:
    """One row per class: support, precision, recall, F1, mean ce and total, calibration
    error; past `MOST_CLASSES` classes only those with the lowest F1 (the most confused)."""
    count = len(classes["support"])
    order = list(range(count))
    heading = f"{title}per class"
    if count > MOST_CLASSES:
        f1 = [math.inf if v is None or math.isnan(v) else v for v in classes["f1"]]
        order = sorted(order, key=lambda c: f1[c])[:MOST_CLASSES]
        heading += f" (the {MOST_CLASSES} of {count} classes with the lowest F1)"
    names = ("precision", "recall", "f1", "ce", "total", "ece")
    rows = [
        (c, _whole(classes["support"][c]), *(_number(classes[name][c]) for name in names))
        for c in order
    ]
    return heading + "\n" + table(("class", "support", *names), rows)


def format_groups(title: str, groups: dict[str, list[dict[str, Any]]]) -> str:
    """Per column, one row per key: its count, accuracy, mean ce and total and, with a
    bootstrap, total's interval and its difference from the rest with p and Holm's p (``*``:
    Holm's p below 0.05)."""
    parts = []
    for column, entries in groups.items():
        header = ["key", "count", "accuracy", "ce", "total"]
        rows = []
        for e in entries:
            row: list[object] = [str(e["key"]), e["count"], _number(e["metrics"]["accuracy"])]
            row += [_number(e["reduced"]["ce"]), _number(e["reduced"]["total"])]
            if "vs_rest" in e:
                gap = e["vs_rest"]["total"]
                row += [span(e["intervals"]["total"], 4), _number(gap["estimate"])]
                row += [p_text(gap["p_value"]), p_text(gap["p_adjusted"]), _mark(gap["p_adjusted"])]
            rows.append(row)
        if any("vs_rest" in e for e in entries):
            header += ["total interval", "total - rest", "p-value", "Holm p", "*"]
        parts.append(f"{title}by {column}\n" + table(header, rows))
    return "\n\n".join(parts)


def _pair_table(a: str, b: str, column: str, entries: list[dict[str, Any]]) -> str:
    """A pair's difference a - b of total and accuracy inside each key of a column."""
    rows = []
    for e in entries:
        for name in ("total", "accuracy"):
            found = e["criteria"][name]
            rows.append(
                (
                    str(e["key"]),
                    name,
                    _number(found["estimate"]),
                    span(found, 4),
                    p_text(found["p_value"]),
                    p_text(found["p_adjusted"]),
                    _mark(found["p_adjusted"]),
                    favours(name, found["estimate"], a, b),
                )
            )
    header = ("key", "criterion", "difference", "interval", "p-value", "Holm p", "*", "favours")
    return f"{a} - {b} by {column}\n" + table(header, rows)


def _mark(value: float | None) -> str:
    return "*" if value is not None and value < 0.05 else ""
