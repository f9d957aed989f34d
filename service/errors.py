"""Errors as RFC 9457 problem details; the one place where exceptions become responses."""

from __future__ import annotations

import json
import logging
from collections.abc import Container, Iterable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from fairloss.errors import InputError

PROBLEM_MEDIA_TYPE = "application/problem+json"
EXTRA = "Extra inputs are not permitted"  # pydantic's words for an unknown field
ECHOED = 1000  # the characters of one string that an error body echoes
log = logging.getLogger("service.errors")


class ProblemError(Exception):
    """A request the service will not answer; becomes an ``application/problem+json`` body."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors
        self.headers = headers


def invalid(detail: str, loc: list[str | int], kind: str) -> InputError:
    """The domain error for one bad value at ``loc`` (e.g. ``["logits", 3]``), as the core
    raises it: a 422 problem on ``/score`` and ``/compare``, a 400 on the OIP route."""
    return InputError(detail, loc, kind)


def field_errors(errors: list[dict[str, Any]]) -> ProblemError:
    """A 422 for several errors in pydantic's form (``loc``, ``msg``, ``type``), whatever found
    them; the detail reads ``candidates.0.epoch: Extra inputs are not permitted``."""
    detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
    return ProblemError(422, "Invalid request", detail, errors=errors)


def unknown_fields(fields: Iterable[str], known: Container[str], *loc: str | int) -> None:
    """A 422 naming every field of ``fields`` (at ``loc``) that is not ``known``."""
    errors = [
        {"loc": [*loc, name], "msg": EXTRA, "type": "extra_forbidden"}
        for name in fields
        if name not in known
    ]
    if errors:
        raise field_errors(errors)


def input_problem(error: InputError) -> ProblemError:
    """The 422 for the core's domain error."""
    errors = [{"loc": list(error.loc), "msg": error.message, "type": error.kind}]
    return ProblemError(422, "Invalid request", error.message, errors=errors)


def error_json(body: dict[str, Any]) -> bytes:
    """An error body as JSON bytes, whatever strings it echoes: each string cut to `ECHOED`
    characters (a megabyte-long option value or field name is not sent back whole), and a lone
    surrogate (which orjson refuses: it is not UTF-8) written as its ``\\ud800`` escape."""
    body = _shortened(body)
    try:
        return orjson.dumps(body)
    except TypeError:
        return json.dumps(body).encode()


def said(value: Any) -> str:
    """A value from a request, for a message: a string quoted as ``'x'``, anything else as
    JSON writes it (``true``, ``null``, ``[1, true]``), never as Python does (``True``,
    ``None``), cut short and escaped as `echoed` does."""
    if isinstance(value, str):
        return echoed(repr(value))
    return echoed(json.dumps(value, default=repr))


def echoed(text: str) -> str:
    """``text`` as an answer may echo it: cut to `ECHOED` characters, and a lone surrogate
    written as its ``\\ud800`` escape."""
    shown: str = _shortened(text)
    return shown.encode("utf-8", "backslashreplace").decode("utf-8")


def _shortened(value: Any) -> Any:
    if isinstance(value, str) and len(value) > ECHOED:
        return f"{value[:ECHOED]}... ({len(value):,} characters in all)"
    if isinstance(value, dict):
        return {key: _shortened(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shortened(item) for item in value]
    return value


def problem_response(problem: ProblemError) -> Response:
    body: dict[str, Any] = {
        "type": f"/problems/{problem.title.lower().replace(' ', '-')}",
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
    }
    if problem.errors is not None:
        body["errors"] = problem.errors
    return Response(
        error_json(body),
        status_code=problem.status,
        headers=problem.headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


def is_oip(path: str) -> bool:
    """Whether ``path`` is the Open Inference Protocol's (``/v2`` and below)."""
    return path == "/v2" or path.startswith("/v2/")


def oip_error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    """The protocol's error: ``{"error": message}`` as application/json."""
    return Response(error_json({"error": message}), status, headers, media_type="application/json")


def respond(path: str, problem: ProblemError) -> Response:
    """``problem`` answered as the route at ``path`` answers errors: the protocol's
    ``{"error": ...}`` on an OIP path (a 422 there is a 400, as the protocol has none),
    whatever raised it (a 401, an unknown path, a method not allowed); problem+json elsewhere."""
    if is_oip(path):
        status = 400 if problem.status == 422 else problem.status
        return oip_error_response(status, problem.detail, problem.headers)
    return problem_response(problem)


def _validation_errors(errors: Any) -> list[dict[str, Any]]:
    return [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type"))}
        for e in errors
    ]


async def _on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProblemError)
    return respond(request.url.path, exc)


async def _on_input(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InputError)
    return respond(request.url.path, input_problem(exc))


async def _on_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = _validation_errors(exc.errors())
    detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
    return respond(request.url.path, ProblemError(422, "Invalid request", detail, errors=errors))


async def _on_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
    return respond(
        request.url.path,
        ProblemError(
            exc.status_code,
            title,
            str(exc.detail),
            headers=dict(exc.headers) if exc.headers else None,
        ),
    )


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return respond(
        request.url.path,
        ProblemError(500, "Internal error", "The server failed to answer this request."),
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(InputError, _on_input)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(HTTPException, _on_http)
    app.add_exception_handler(Exception, _on_unexpected)
