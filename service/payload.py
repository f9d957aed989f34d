"""From request bytes to checked arrays: size and media type, JSON, then vectorised checks.

Big batches are the normal case, so arrays are never validated element by element in Python:
numpy converts each array in one step and the checks run on the result. A Python scan runs only
to say where a bad element is, or when the body holds a JSON ``true``/``false`` that numpy would
have taken for a number.
"""

from __future__ import annotations

import gc
import json
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import anyio
import orjson
from starlette.requests import ClientDisconnect, Request

from fairloss_wire.answers import header_int
from service.encoding import Coding, Inflater, content_encoding
from service.errors import ProblemError
from service.fastjson import parse_fast, structure
from service.json_arrays import SEND_MORE
from service.memory import Reserve, parse_extra

if TYPE_CHECKING:
    from service.admission import Reservation
    from service.settings import Settings


def require_json(request: Request) -> None:
    """Raise a 415 unless the body is declared as JSON (or not declared at all)."""
    content_type = request.headers.get("content-type")
    if content_type is None:
        return
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    ):
        return
    raise ProblemError(
        415,
        "Unsupported media type",
        f"This endpoint takes application/json, not {media or 'an empty media type'}: send the "
        "header Content-Type: application/json (curl's -d sends a form's type without -H "
        "'Content-Type: application/json'), or none.",
    )


def too_large(limit: int) -> ProblemError:
    return ProblemError(
        413,
        "Content too large",
        f"The request body is larger than the limit of {limit} bytes. To send more: {SEND_MORE}; "
        "binary tensors through the Open Inference Protocol (POST /v2/models/fairloss/infer) "
        "take 4 bytes a float32 logit, against about 20 as JSON text; or raise "
        "FAIRLOSS_MAX_BODY_BYTES on the server.",
    )


def reader(
    request: Request, settings: Settings
) -> tuple[Callable[[Reservation], Awaitable[bytearray]], Callable[[], Awaitable[None]]]:
    """How `service.admission.Admission.compute` reads ``request``'s body, covering its
    reservation (`read_body`), and drops what is left of it once refused (`discard_body`),
    within ``settings``' body size and idle limits."""
    limit = settings.max_body_bytes

    async def receive(reservation: Reservation) -> bytearray:
        return await read_body(request, limit, reservation.cover, settings.body_idle_timeout_s)

    async def discard() -> None:
        await discard_body(request, limit)

    return receive, discard


async def read_body(
    request: Request, limit: int, cover: Callable[[int], None], idle_s: float
) -> bytearray:
    """The whole body, counted as it streams in (chunked bodies too); a 413 past ``limit``, a
    408 when none of it arrives for ``idle_s`` seconds (a client that sends its headers and
    then stalls would otherwise hold the memory reserved for its body).

    ``cover(size)`` is called with the body's declared size before any of it is read (0 when
    none is declared), then with its size each time it grows: a chunked body, or a compressed
    one as it inflates (it raises a `ProblemError` to refuse the body).

    A gzip or deflate body (``Content-Encoding``, see `service.encoding`) is inflated chunk by
    chunk as it arrives: ``limit`` bounds both the bytes received and the bytes they inflate to,
    so neither the compressed nor the decompressed body is ever held past ``limit`` (plus one
    received chunk). Another coding is a 415, before any of the body is read.
    """
    coding = content_encoding(request.headers.getlist("content-encoding"))
    declared = request.headers.get("content-length")
    length = 0
    if declared is not None:
        parsed = header_int(declared)
        if parsed is None:
            raise ProblemError(400, "Bad request", "Content-Length is not a number.")
        length = parsed
        if length > limit:
            raise too_large(limit)
    body = bytearray()
    try:
        cover(length)
        # One cancel scope for the whole body, its deadline moved on at each chunk, rather than
        # a scope for each chunk.
        with anyio.CancelScope(deadline=anyio.current_time() + idle_s) as idle:

            def arrived() -> None:
                idle.deadline = anyio.current_time() + idle_s

            known = None if declared is None else length
            return await _receive(request, coding, known, limit, cover, arrived, body)
        raise ProblemError(
            408,
            "Request timeout",
            f"No part of the body arrived for {idle_s:g} s (FAIRLOSS_BODY_IDLE_TIMEOUT_S); "
            "send the body as you send the headers.",
        )
    except ProblemError:
        body.clear()  # before the refusal is answered, maybe after the rest is read
        raise
    except ClientDisconnect:
        raise ProblemError(
            400, "Bad request", "The client closed the connection before it sent the whole body."
        ) from None


async def _receive(
    request: Request,
    coding: Coding | None,
    length: int | None,
    limit: int,
    cover: Callable[[int], None],
    arrived: Callable[[], None],
    body: bytearray,
) -> bytearray:
    """`read_body`'s reading, into ``body`` (or a buffer of the declared ``length``), calling
    ``arrived()`` at each chunk."""
    if coding is None and length is not None:
        return await _declared(request, length, arrived)
    if coding is None:
        async for chunk in request.stream():
            arrived()
            body += chunk
            if len(body) > limit:
                raise too_large(limit)
            cover(len(body))
        return body
    inflater = Inflater(coding, limit)
    received = 0
    async for chunk in request.stream():
        arrived()
        received += len(chunk)
        if received > limit or not inflater.feed(chunk, body):
            raise too_large(limit)
        cover(len(body))
    inflater.finish()
    return body


async def _declared(request: Request, length: int, arrived: Callable[[], None]) -> bytearray:
    """A body of a declared length, read into a buffer of that length: grown chunk by chunk
    instead, a big body was copied as it grew, and left freed copies behind in the worker's
    heap, which raised its peak."""
    body = bytearray(length)
    filled = 0
    with memoryview(body) as view:
        async for chunk in request.stream():
            arrived()
            end = filled + len(chunk)
            if end > length:
                break
            view[filled:end] = chunk
            filled = end
    if filled != length:  # the server's HTTP parser holds the framing: not seen in practice
        raise ProblemError(400, "Bad request", "The body's length is not its Content-Length.")
    return body


async def discard_body(request: Request, limit: int) -> None:
    """Read and drop what is left of a refused request's body, up to ``limit`` bytes, so that
    its client reads the refusal rather than a connection reset."""
    dropped = 0
    try:
        async for chunk in request.stream():
            dropped += len(chunk)
            if dropped > limit:
                return
    except (RuntimeError, ClientDisconnect):  # RuntimeError: already read to its end
        return


_parsing = 0
_parsing_lock = threading.Lock()


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No garbage collection while any thread parses: a big body's many lists hold no cycles,
    and collections triggered by their allocation made ``orjson.loads`` a third slower."""
    global _parsing
    with _parsing_lock:
        _parsing += 1
        gc.disable()
    try:
        yield
    finally:
        with _parsing_lock:
            _parsing -= 1
            if _parsing == 0:
                gc.enable()


def parse_object(body: bytes | bytearray, opening: int) -> dict[str, Any]:
    """Parse a JSON object; NaN and Infinity literals parse, to be refused later with a 422.

    Numeric ``logits`` and ``labels`` come back as numpy arrays when the fast path
    (`service.fastjson`) can take the body, and as lists otherwise. ``opening``: the body's
    count of ``[`` (`service.fastjson.structure`).
    """
    # A body of typed arrays is mostly base64 text, which orjson reads at once; the fast path
    # (made for numbers) would parse it only to hand it on.
    fast = None if b'"dtype"' in body else parse_fast(body, opening)
    if fast is not None:
        return fast
    try:
        with _collector_paused():
            data = orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            data = json.loads(_utf8_text(body), parse_int=_integer)
        except (ValueError, RecursionError) as exc:
            raise ProblemError(
                400, "Bad request", f"The body is not valid JSON: {_first_line(exc)}"
            ) from None
    if not isinstance(data, dict):
        raise ProblemError(400, "Bad request", "The body must be a JSON object.")
    return data


def parse_reserved(body: bytes | bytearray, reserve: Reserve) -> dict[str, Any]:
    """`parse_object`, once ``reserve`` was asked for what parsing ``body`` holds past what
    its size reserved (`service.memory.PARSE_PER_MARK`)."""
    marks = structure(body)
    reserve(parse_extra(len(body), marks.commas + marks.opening))
    return parse_object(body, marks.opening)


def _utf8_text(body: bytes | bytearray) -> str:
    """The body as UTF-8 text (a leading byte order mark is allowed, as RFC 8259 permits), for
    the general parser; ``json.loads`` given bytes would guess UTF-16 or UTF-32 instead."""
    try:
        text = bytes(body).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ProblemError(
            400,
            "Bad request",
            f"The body is not UTF-8: byte {exc.start} is 0x{body[exc.start]:02x}. "
            "Send JSON encoded as UTF-8.",
        ) from None
    if "\x00" in text:
        raise ProblemError(
            400,
            "Bad request",
            "The body is not UTF-8 JSON: it holds NUL bytes, as UTF-16 and UTF-32 text does. "
            "Send JSON encoded as UTF-8.",
        )
    return text


def _integer(text: str) -> int:
    """A JSON integer, or a 422 past Python's 4,300 digits (no field takes one that long)."""
    try:
        return int(text)
    except ValueError:
        detail = (
            f"A number in the body has {len(text.lstrip('-')):,} digits; no field takes one "
            "past 4,300 digits"
        )
        fault = {"loc": [], "msg": detail, "type": "number_too_long"}  # where: not known yet
        raise ProblemError(422, "Invalid request", detail, errors=[fault]) from None


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
