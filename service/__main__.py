"""``python -m service``: serve the app with uvicorn, configured by ``FAIRLOSS_*``."""

from __future__ import annotations

import signal
import sys
from types import FrameType

import uvicorn

from service.logs import log_config
from service.settings import Settings


def _exit_cleanly(_signal: int, _frame: FrameType | None) -> None:
    sys.exit(0)


def main() -> None:
    settings = Settings()
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


if __name__ == "__main__":
    main()
