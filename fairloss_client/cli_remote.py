"""The command line's remote path (``--url``): the client, and its errors in a person's words.

Imported only when ``--url`` is given, so that scoring files in this process needs neither
httpx nor the rest of the client's dependencies.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Mapping
from typing import Any

import httpx
import orjson

from fairloss.bootstrap import Bootstrap
from fairloss.errors import InputError
from fairloss_client.cli_text import CliError, causes, one_line, os_reason, reason
from fairloss_client.client import Client
from fairloss_client.plan import ServiceError
from fairloss_client.results import RULE_COLUMNS, CompareResult, ScoreResult


def _connect_reason(exc: httpx.ConnectError, url: str) -> str:
    for cause in causes(exc):
        if isinstance(cause, socket.gaierror):
            return f"cannot resolve host {httpx.URL(url).host!r} ({os_reason(cause)})"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, ssl.SSLError):
            return f"TLS handshake failed ({cause.reason or reason(cause)})"
        if isinstance(cause, OSError) and cause.strerror:
            return os_reason(cause)
    return reason(exc)


_TIMEOUTS: dict[type[httpx.TimeoutException], str] = {
    httpx.ConnectTimeout: "timed out connecting",
    httpx.ReadTimeout: "timed out waiting for an answer",
    httpx.WriteTimeout: "timed out sending the request",
    httpx.PoolTimeout: "timed out waiting for a free connection",
}


def http_message(exc: httpx.HTTPError | httpx.InvalidURL, url: str) -> str:
    """What went wrong talking to ``url``, for a person (``cannot reach URL: timed out``)."""
    if isinstance(exc, httpx.InvalidURL):
        return f"--url {url}: not a valid URL ({reason(exc)})"
    if isinstance(exc, httpx.UnsupportedProtocol):
        return f"--url {url}: expected an http:// or https:// URL"
    if isinstance(exc, httpx.ConnectTimeout):
        return f"cannot reach {url}: {_TIMEOUTS[httpx.ConnectTimeout]}"
    if isinstance(exc, httpx.TimeoutException):
        return f"{url}: {_TIMEOUTS.get(type(exc), 'timed out')}"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot reach {url}: {_connect_reason(exc, url)}"
    if isinstance(exc, httpx.ProxyError):
        return f"cannot reach {url} through the proxy: {reason(exc)}"
    if isinstance(exc, httpx.ReadError | httpx.WriteError | httpx.RemoteProtocolError):
        return f"lost the connection to {url}: {reason(exc)}"
    return f"talking to {url}: {reason(exc)}"


def service_message(exc: ServiceError, url: str, api_key: str | None) -> str:
    """The service's refusal, with a hint where the status says what to do about it."""
    said = one_line(str(exc)).rstrip(".")
    if exc.status == 401:
        if api_key:
            return f"{said}; check the key given by --api-key or FAIRLOSS_API_KEY"
        return f"{said}; give one with --api-key KEY or FAIRLOSS_API_KEY"
    if exc.status == 403:
        return f"{said}; check the key given by --api-key or FAIRLOSS_API_KEY"
    if exc.status in (404, 405):
        return f"{said}; is {url} the FairLoss scoring service?"
    return str(exc)


def check_url(url: str) -> str:
    """``url`` without a trailing slash, if it is an http(s) URL with a host; else a `CliError`."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise CliError(f"--url {url}: not a valid URL ({reason(exc)})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        hint = "" if "://" in url else f"; did you mean http://{url}?"
        raise CliError(f"--url {url}: expected an http:// or https:// URL with a host{hint}")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise CliError(f"--url {url}: port {parsed.port} is out of range (1 to 65535)")
    return url.rstrip("/")


def _check_api_key(key: str) -> None:
    if not (key.isascii() and key.isprintable()) or " " in key:
        raise CliError(
            "--api-key (or FAIRLOSS_API_KEY): expected printable ASCII without spaces in the key"
        )


def _client(
    url: str, api_key: str | None, concurrency: int | None, progress: bool | None
) -> Client:
    if api_key:
        _check_api_key(api_key)
    if concurrency is not None and concurrency < 1:
        raise CliError(f"--concurrency {concurrency}: expected 1 or more")
    return Client(url, api_key=api_key, concurrency=concurrency, progress=progress)


def remote(
    url: str,
    logits: Mapping[str, Any],
    labels: Any,
    options: dict[str, Any],
    *,
    compare: bool,
    bootstrap: Bootstrap | None = None,
    api_key: str | None = None,
    concurrency: int | None = None,
    progress: bool | None = None,
    groups: Mapping[str, Any] | None = None,
    per_class: bool = False,
    kinds: Mapping[str, Any] | None = None,
    sample_weight: Any = None,
) -> ScoreResult | CompareResult:
    """Score (one file) or compare (all) through the service at ``url``; every failure is a
    `CliError` worded for a person."""
    url = check_url(url)
    try:
        with _client(url, api_key, concurrency, progress) as client:
            where: dict[str, Any] = {
                "groups": groups,
                "per_class": per_class,
                "sample_weight": sample_weight,
            }
            kinds = dict.fromkeys(logits, "logits") if kinds is None else kinds
            if compare:
                return client.compare(
                    logits, labels, bootstrap=bootstrap, kind=kinds, **where, **options
                )
            ((name, only),) = logits.items()
            where["kind"] = kinds[name]
            return client.score(  # with the columns compare writes too
                only,
                labels,
                bootstrap=bootstrap,
                extra_columns=RULE_COLUMNS,
                **where,
                **options,
            )
    except ServiceError as exc:
        raise CliError(service_message(exc, url, api_key)) from None
    except InputError as exc:  # the client checks groups before sending anything
        flag = "--groups: " if exc.loc[:1] == ("groups",) else ""
        raise CliError(f"{flag}{exc}") from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise CliError(http_message(exc, url)) from None
    except (orjson.JSONDecodeError, KeyError) as exc:
        raise CliError(
            f"{url} does not answer like the FairLoss scoring service ({reason(exc)})"
        ) from None
