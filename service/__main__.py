"""``python -m service``: serve the app with uvicorn, configured by ``FAIRLOSS_*``."""

from __future__ import annotations

import uvicorn

from service.settings import Settings


def main() -> None:
    settings = Settings()
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        timeout_graceful_shutdown=settings.graceful_shutdown_s,
    )


if __name__ == "__main__":
    main()
