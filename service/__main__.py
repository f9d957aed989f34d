"""``python -m service``: serve the app with uvicorn, configured by ``FAIRLOSS_*``."""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from types import FrameType

import pydantic
import uvicorn

from fairloss.devices import resolve_device
from fairloss.errors import InputError
from service.logs import log_config
from service.settings import Settings


def _exit_cleanly(_signal: int, _frame: FrameType | None) -> None:
    sys.exit(0)


def checked_settings(flags: Sequence[str] = ()) -> Settings:
    """The settings from ``FAIRLOSS_*``, and the default device checked to exist here.

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
            said.append(f"{given}FAIRLOSS_{name.upper()}: {error['msg']}")
        raise ValueError("; ".join(said)) from None
    try:
        resolve_device(settings.device)
    except InputError as exc:
        given = "--device or " if "device" in flags else ""
        raise ValueError(f"{given}FAIRLOSS_DEVICE {settings.device}: {exc}") from None
    return settings


def run(settings: Settings) -> None:
    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal to the handler it
    # found; this one makes that a clean exit (status 0) rather than death by signal.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        # One JSON stream on stdout for uvicorn's lines, the service's and Python's warnings;
        # uvicorn's access line is off, the service writes its own (with the request id).
        log_config=log_config(settings.log_level),
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=settings.graceful_shutdown_s,
    )


def main() -> None:
    run(Settings())


if __name__ == "__main__":
    main()
