"""The one error for a bad input or option, with where it is and what kind of fault it is."""

from __future__ import annotations

from collections.abc import Sequence

Loc = tuple[str | int, ...]


def path(loc: Sequence[str | int]) -> str:
    """``("candidates", 1, "logits", 2, 0)`` -> ``candidates[1].logits[2][0]``."""
    parts = (f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
    return "".join(parts).lstrip(".")


class InputError(ValueError):
    """A bad array or option: a message a user can act on, its location and its kind.

    ``template`` may name the location as ``{where}`` (``logits[1][0]``); `within` moves the
    error under a prefix (``candidates[1].logits[1][0]``), so one check words a fault the same
    wherever the array came from. Every surface reports it: the JSON codec as a 422 problem with
    ``loc`` and ``type``, the Open Inference Protocol as a 400 ``{"error": message}``, the CLI
    as one line.
    """

    def __init__(self, template: str, loc: Sequence[str | int] = (), kind: str = "value_error"):
        self.template = template
        self.loc: Loc = tuple(loc)
        self.kind = kind
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return self.template.replace("{where}", path(self.loc))

    def within(self, *prefix: str | int) -> InputError:
        """The same fault, located under ``prefix``."""
        return InputError(self.template, (*prefix, *self.loc), self.kind)

    def __str__(self) -> str:
        return self.message


def describe(value: object) -> str:
    """How a message names a value a user sent: ``the number 1.5``, ``a string``, ``null``."""
    if type(value) in (int, float):
        return f"the number {value!r}"
    kinds = {
        bool: "a boolean",
        str: "a string",
        list: "an array",
        tuple: "an array",
        dict: "an object",
    }
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def text_fault(text: str) -> str | None:
    """What keeps ``text`` from being written into an answer, or None: a lone surrogate (JSON
    can escape one, but it is not Unicode text, and orjson refuses to write it)."""
    for at, char in enumerate(text):
        if "\ud800" <= char <= "\udfff":
            return f"it holds a lone surrogate, \\u{ord(char):04x}, at index {at}"
    return None
