"""Server settings, read from ``FAIRLOSS_*`` environment variables."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.memory import MIB, quantity


def _comma_separated(value: Any) -> Any:
    """``"a, b"`` -> ``["a", "b"]``; empty items are dropped, so ``""`` means none."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _auto_is_zero(value: Any) -> Any:
    """``"auto"`` (any case) -> ``0``, the count that `service.cpus.plan` sizes to the CPUs;
    a string that is neither ``auto`` nor a whole number is refused, saying both are taken."""
    if not isinstance(value, str):
        return value
    text = value.strip().lower()
    if text == "auto":
        return 0
    if not (text.isascii() and text.isdecimal()):
        raise ValueError(f"expected a whole number >= 0 or 'auto', got {value!r}")
    return value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _as_sent(hostname: str) -> str:
    """A host as a browser writes it in ``Origin``: an IPv6 address compressed and in brackets,
    a name in lower case and in its ASCII (punycode) form."""
    try:
        address = ipaddress.ip_address(hostname)
    except ValueError:
        try:
            return hostname.encode("idna").decode("ascii")
        except UnicodeError:
            return hostname
    return f"[{address.compressed}]" if address.version == 6 else address.compressed


def _origins(value: list[str]) -> list[str]:
    """Browser origins as a browser sends them in ``Origin``: ``scheme://host[:port]``, with no
    path, not even ``/`` (an origin given with one matched no request, and every preflight
    failed), or ``*`` for any."""
    for origin in value:
        if origin == "*":
            continue
        try:
            parts = urlsplit(origin)
        except ValueError as exc:  # such as an unclosed [ of an IPv6 host
            raise ValueError(f"expected an origin, got {origin!r}: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"expected origins such as https://dash.example or http://127.0.0.1:5000 (or *), "
                f"got {origin!r}, which has no http:// or https:// scheme and host"
            )
        if parts.path or parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(
                f"expected an origin, scheme://host[:port] and nothing after it, got {origin!r}; "
                f"send {parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"
            )
        if "*" in parts.hostname:
            raise ValueError(
                f"expected each origin in full, got {origin!r}: a wildcard host matches no "
                "browser's Origin; list each origin, or * for any"
            )
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"expected a port in 1..65535, got {origin!r}") from None
        if port == 0:
            raise ValueError(f"expected a port in 1..65535, got {origin!r}")
        host = _as_sent(parts.hostname)
        default = {"http": 80, "https": 443}[parts.scheme]
        sent = f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, default) else "")
        if origin != sent:
            raise ValueError(f"got {origin!r}, which no browser sends; a browser sends {sent!r}")
    return value


CommaList = Annotated[list[str], NoDecode, BeforeValidator(_comma_separated)]
Origins = Annotated[CommaList, AfterValidator(_origins)]
SecretList = Annotated[list[SecretStr], NoDecode, BeforeValidator(_comma_separated)]
Auto = Annotated[int, BeforeValidator(_auto_is_zero), Field(ge=0)]
"""A count, or ``auto`` (also ``0``): sized to the CPUs by ``python -m service``."""
Bytes = Annotated[int, BeforeValidator(quantity), Field(ge=0)]
"""A byte count (``512Mi``, ``2Gi`` and such, as Kubernetes writes them), or ``auto`` (``0``)."""
LogLevel = Annotated[
    Literal["critical", "error", "warning", "info", "debug"], BeforeValidator(_lower)
]


class Settings(BaseSettings):
    """Every field is set by the environment variable ``FAIRLOSS_<NAME>``.

    ``workers`` and ``torch_threads`` are ``auto`` (``0``) by default: `service.__main__.run`
    sizes them to the CPUs (`service.cpus.plan`) and hands the numbers to its workers. An app
    served some other way leaves torch's thread count alone while ``torch_threads`` is ``0``.
    The limits (``max_concurrency``, ``max_body_bytes``, ...) hold in each worker process, but
    for ``memory_budget``, which the workers share (`service.memory`); its ``auto`` (``0``) is
    derived from the memory the server may use (`service.memory.default_budget`).
    """

    model_config = SettingsConfigDict(env_prefix="FAIRLOSS_", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    device: str = "auto"
    max_body_bytes: int = Field(default=64 * MIB, gt=0)
    max_elements: int = Field(default=2**24, gt=0)
    memory_budget: Bytes = 0
    max_concurrency: int = Field(default=16, gt=0)
    retry_after_s: int = Field(default=1, ge=0)
    workers: Auto = 0
    torch_threads: Auto = 0
    inline_bytes: int = Field(default=16 * 1024, ge=0)
    graceful_shutdown_s: int = Field(default=8, gt=0)
    request_timeout_s: float = Field(default=60.0, gt=0)
    body_idle_timeout_s: float = Field(default=10.0, gt=0)
    api_keys: SecretList = Field(default_factory=list, repr=False)
    cors_origins: Origins = Field(default_factory=list)
    log_level: LogLevel = "info"
