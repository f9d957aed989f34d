"""Numbers in HTTP headers, read one strict way by the service and the client alike.

RFC 9110 writes every numeric header field (``Content-Length``, ``Retry-After`` in seconds,
``Inference-Header-Content-Length``) as ``1*DIGIT``: ASCII digits only. ``str.isdigit`` also
accepts characters such as ``'²'`` that ``int`` refuses, and ``int`` accepts signs, spaces,
underscores and non-ASCII digits that no header may hold, so neither is used alone.
"""

from __future__ import annotations

import re

_DIGITS = re.compile(r"[0-9]+")
_WHITESPACE = " \t"


def header_int(value: str | None) -> int | None:
    """The non-negative integer a header field holds, or None when it holds anything else.

    Surrounding spaces and tabs (the field's optional white space) are allowed; a sign, an inner
    space, an underscore or any non-ASCII character makes the value None.
    """
    if value is None:
        return None
    stripped = value.strip(_WHITESPACE)
    return int(stripped) if _DIGITS.fullmatch(stripped) else None
