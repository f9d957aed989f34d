"""``python -m service``: serve the app with uvicorn, configured by ``FAIRLOSS_*``.

With one worker, uvicorn serves the app in this process. With several, this process is
their supervisor (`service.supervisor`) and each worker a process of its own, on the one
listening socket. Either way SIGTERM (or SIGINT) stops the listening, lets every worker answer
the requests it has accepted, for up to ``FAIRLOSS_GRACEFUL_SHUTDOWN_S``, and exits with status 0.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any

# Before anything loads torch (and its OpenMP runtime, which reads it once): idle torch threads
# sleep rather than spin, so that the workers' thread pools do not take the CPUs from each
# other (see `service.cpus.plan`). A value in the environment is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pydantic
import uvicorn

from service.cpus import plan, usable_cpus
from service.logs import log_config
from service.settings import Settings
from service.supervisor import serve


def _exit_cleanly(_signal: int, _frame: FrameType | None) -> None:
    sys.exit(0)


def _check_address(settings: Settings, flagged: bool) -> None:
    """Bind the host and port once, as uvicorn will: an address in use (or not on this
    machine) is then said before anything loads, rather than after the app's startup."""
    if settings.port == 0:
        return
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((settings.host, settings.port))
    except OSError as exc:
        given = "--host/--port or " if flagged else ""
        raise ValueError(
            f"{given}FAIRLOSS_HOST/FAIRLOSS_PORT: cannot listen on {settings.host}:"
            f"{settings.port}: {exc.strerror or exc}"
        ) from None


def checked_settings(flags: Sequence[str] = ()) -> Settings:
    """The settings from ``FAIRLOSS_*``, and the default device checked to exist here (which
    loads torch, unless the device is ``auto`` or ``cpu``).

    Raises:
        ValueError: naming each bad variable (and the ``--flag`` among ``flags`` that sets it).
    """
    try:
        settings = Settings()
    except pydantic.ValidationError as exc:
        said = []
        for error in exc.errors(include_url=False):
            name = "_".join(map(str, error["loc"]))
            given = f"--{name} or " if name in flags else ""
            value_error = error["type"] == "value_error"  # a validator's own words, unprefixed
            message = str(error["ctx"]["error"]) if value_error else error["msg"]
            said.append(f"{given}FAIRLOSS_{name.upper()}: {message}")
        raise ValueError("; ".join(said)) from None
    _check_address(settings, "port" in flags)
    if settings.device in ("auto", "cpu"):  # always there: no need to load torch to look
        return settings
    from fairloss.devices import resolve_device  # here: torch stays out of the supervisor
    from fairloss.errors import InputError

    try:
        resolve_device(settings.device)
    except InputError as exc:
        given = "--device or " if "device" in flags else ""
        raise ValueError(f"{given}FAIRLOSS_DEVICE {settings.device}: {exc}") from None
    return settings


def run(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT, drain, and return (or exit 0, with one worker).

    ``auto`` workers and torch threads are sized to the CPUs this process may use
    (`service.cpus`). The workers read their settings from ``FAIRLOSS_*``: the sizes chosen here
    are written there (``FAIRLOSS_WORKERS``, ``FAIRLOSS_TORCH_THREADS``) before they start.

    Raises:
        SystemExit: status 0 after a drain on SIGTERM with one worker; uvicorn's status 3 when
            the app (or a worker) fails to start.
    """
    chosen = plan(settings.workers, settings.torch_threads, usable_cpus())
    os.environ["FAIRLOSS_WORKERS"] = str(chosen.workers)
    os.environ["FAIRLOSS_TORCH_THREADS"] = str(chosen.torch_threads)
    # One worker: uvicorn drains in-flight requests on SIGTERM, then re-raises the signal to the
    # handler it found; this one makes that a clean exit (status 0) rather than death by signal.
    # Several: the supervisor installs handlers of its own, and returns once the workers are gone.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    options: dict[str, Any] = {
        "factory": True,
        "host": settings.host,
        "port": settings.port,
        "workers": chosen.workers,
        # One JSON stream on stdout for uvicorn's lines, the service's and Python's warnings;
        # uvicorn's access line is off, the service writes its own (with the request id).
        "log_config": log_config(settings.log_level),
        "log_level": settings.log_level,
        "access_log": False,
        "timeout_graceful_shutdown": settings.graceful_shutdown_s,
    }
    if chosen.workers == 1:
        uvicorn.run("service.app:create_app", **options)
        return
    with contextlib.suppress(KeyboardInterrupt):  # before the supervisor's handlers are in place
        serve(uvicorn.Config("service.app:create_app", **options))


def main() -> None:
    """Check the settings (one line on stderr and status 1 for a bad one), then `run`."""
    try:
        settings = checked_settings()
    except ValueError as exc:
        sys.exit(f"python -m service: error: {exc}")
    run(settings)


if __name__ == "__main__":
    main()
