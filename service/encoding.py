"""Compressed request bodies: ``Content-Encoding`` parsed, and gzip or deflate inflated as the
body streams in, never past a byte limit.

What this module guarantees:

- `content_encoding` names the one coding of a body: ``"gzip"``, ``"deflate"`` or None (no
  header, an empty one, or ``identity``), case-insensitively, with surrounding white space and
  empty list elements ignored. ``x-gzip`` is gzip (RFC 9110 §8.4.1.3). Any other coding, or more
  than one, is a 415 that names what was sent.
- An `Inflater` produces at most ``limit + 1`` bytes in all, however far its input would
  inflate: one byte past the limit is enough to tell that the body is too large, and nothing
  more is decompressed after that.
- A gzip body may hold several members, read one after another (RFC 1952 §2.2), as ``gzip -d``
  reads them. Compressed data that is corrupt, cut short or followed by other bytes is a 400
  that names the coding.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Literal, Protocol

from service.errors import ProblemError

Coding = Literal["gzip", "deflate"]
CODINGS: dict[str, Coding | None] = {
    "identity": None,
    "gzip": "gzip",
    "x-gzip": "gzip",
    "deflate": "deflate",
}
GZIP_WBITS = 16 + zlib.MAX_WBITS
ZLIB_WBITS = zlib.MAX_WBITS
RAW_WBITS = -zlib.MAX_WBITS
_SHOWN = 100  # characters of an unsupported Content-Encoding said back


class Decompressor(Protocol):
    """What `Inflater` uses of ``zlib.decompressobj()``."""

    @property
    def unconsumed_tail(self) -> bytes: ...

    @property
    def unused_data(self) -> bytes: ...

    @property
    def eof(self) -> bool: ...

    def decompress(self, data: bytes, max_length: int = ..., /) -> bytes: ...


def new_decompressor(wbits: int) -> Decompressor:
    """``zlib.decompressobj(wbits)``; a seam for tests that count what is produced."""
    return zlib.decompressobj(wbits)


def content_encoding(values: Iterable[str]) -> Coding | None:
    """The coding of a body whose ``Content-Encoding`` field lines are ``values`` (none, one or
    several, as a client may repeat the field); a 415 for anything but one supported coding."""
    tokens = [token.strip(" \t").lower() for value in values for token in value.split(",")]
    named = [token for token in tokens if token]
    if not named:
        return None
    if len(named) == 1 and named[0] in CODINGS:
        return CODINGS[named[0]]
    shown = ", ".join(named)
    if len(shown) > _SHOWN:
        shown = shown[:_SHOWN] + "..."
    raise ProblemError(
        415,
        "Unsupported media type",
        f"Content-Encoding {shown} is not supported; send gzip, deflate or none.",
    )


def _is_zlib_header(first: int, second: int) -> bool:
    """Whether two bytes open a zlib stream (RFC 1950 §2.2): method 8 (deflate), a window of at
    most 32 KiB, and a check that makes the pair a multiple of 31. No raw deflate stream that a
    real encoder writes opens this way (its first block header would need non-zero padding)."""
    return first & 0x0F == 8 and first >> 4 <= 7 and ((first << 8) | second) % 31 == 0


class Inflater:
    """Decompresses one body, fed chunk by chunk as it arrives.

    ``gzip`` is RFC 1952. ``deflate`` is, as RFC 9110 says, the zlib format (RFC 1950); a raw
    deflate stream (RFC 1951), which some clients send instead, is told apart by its missing
    zlib header and taken too. ``produced`` counts the bytes decompressed so far; it never
    exceeds ``limit + 1``.
    """

    def __init__(self, coding: Coding, limit: int) -> None:
        self.coding = coding
        self.limit = limit
        self.produced = 0
        self._start = b""  # the first bytes of a deflate body, until its format is known
        self._decompressor: Decompressor | None = (
            new_decompressor(GZIP_WBITS) if coding == "gzip" else None
        )

    def feed(self, chunk: bytes, out: bytearray) -> bool:
        """Append what ``chunk`` inflates to (and any bytes it held back) to ``out``; False,
        with decompression stopped, once more than ``limit`` bytes in all were produced."""
        decompressor = self._decompressor
        if decompressor is None:
            self._start += chunk
            if len(self._start) < 2:
                return True
            chunk, self._start = self._start, b""
            wbits = ZLIB_WBITS if _is_zlib_header(chunk[0], chunk[1]) else RAW_WBITS
            decompressor = self._decompressor = new_decompressor(wbits)
        data = chunk
        while data:
            if decompressor.eof:
                decompressor = self._next_member()
            room = self.limit + 1 - self.produced
            try:
                piece = decompressor.decompress(data, room)
            except zlib.error as exc:
                raise self._invalid(_reason(exc)) from None
            out += piece
            self.produced += len(piece)
            if self.produced > self.limit:
                return False
            data = decompressor.unused_data if decompressor.eof else decompressor.unconsumed_tail
        return True

    def finish(self) -> None:
        """A 400 unless the compressed stream ended, exactly where the body did."""
        decompressor = self._decompressor
        if decompressor is None or not decompressor.eof:
            raise self._invalid(f"it ends before the {self.coding} stream does")

    def _next_member(self) -> Decompressor:
        """The decompressor for what follows a stream's end: gzip's next member (RFC 1952
        §2.2: a gzip file is a series of members, which ``gzip -d``, Python and curl read
        whole); after a deflate stream, nothing may follow."""
        if self.coding != "gzip":
            raise self._invalid(f"it holds data after the end of the {self.coding} stream")
        self._decompressor = new_decompressor(GZIP_WBITS)
        return self._decompressor

    def _invalid(self, reason: str) -> ProblemError:
        return ProblemError(
            400,
            "Bad request",
            f"The body is not valid {self.coding} data: {reason}.",
        )


def _reason(exc: zlib.error) -> str:
    """zlib's own words for what is wrong (``incorrect header check``, ``invalid block type``),
    without its ``Error -3 while decompressing data:`` preamble."""
    text = str(exc)
    return text.rsplit(": ", 1)[-1].strip() or "it could not be decompressed"
