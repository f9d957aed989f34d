"""One log stream: every line one JSON object on stdout, uvicorn's and Python's warnings included.

``python -m service`` hands :func:`log_config` to uvicorn, which applies it in each server
process. A line has ``time``, ``level``, ``logger`` and ``message``; a line logged while a request
is being answered also has that request's ``request_id`` (kept in :data:`request_id`, set by the
observability middleware); a line with an exception has its traceback as one ``exception``
string. A record can add fields of its own with ``extra={"fields": {...}}``, as the access line
does.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
"""The id of the request being answered in this context (threads started with anyio's
``to_thread`` copy it), ``None`` outside a request."""


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to each record: the current request's, unless the record has one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.__dict__["request_id"] = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON (orjson: already the service's JSON encoder)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage().rstrip(),
        }
        rid = getattr(record, "request_id", None)
        if rid is not None:
            line["request_id"] = rid
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()


def stdout_handler() -> logging.Handler:
    """The stream's one handler, on stdout. Python's warnings become log records too (logger
    ``py.warnings``), in every process that sets it up (each uvicorn worker does)."""
    logging.captureWarnings(True)
    return logging.StreamHandler(sys.stdout)


def log_config(level: str) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` for the whole process, for uvicorn's ``log_config``.

    Every logger (the service's, uvicorn's, ``py.warnings``, any library's) propagates to the
    root logger and its JSON handler. ``uvicorn.access`` is off: the service writes its own
    access line (logger ``service.access``), with the request id and the batch's size.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "stdout": {"()": stdout_handler, "formatter": "json", "filters": ["request_id"]}
        },
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": False},
        },
        "root": {"handlers": ["stdout"], "level": level.upper()},
    }
