"""Several worker processes on one socket: uvicorn's supervisor, made to drain and exit cleanly.

`serve` runs uvicorn's own `Multiprocess` supervisor (which starts the workers, restarts one that
dies or hangs, and on SIGTERM or SIGINT sends each worker SIGTERM and waits for it), with three
additions:

- On SIGTERM or SIGINT it closes its own copy of the listening socket before it stops the
  workers. uvicorn's keeps that copy open until it exits, so while the workers drain, the
  kernel would still complete new connections that nobody answers; now, once every worker has
  closed its copy too, the port refuses them.
- The workers share a fresh directory for prometheus_client's multiprocess mode
  (``PROMETHEUS_MULTIPROC_DIR``, set before they start, so that each worker's metrics live in
  files there and ``/metrics`` sums them), removed once they have all exited.
- When a worker exits, prometheus_client is told (`mark_process_dead`), so that its
  in-flight gauge (mode ``livesum``) no longer counts; its counters still do.
"""

from __future__ import annotations

import os
import sys
import tempfile

import uvicorn
from prometheus_client.multiprocess import mark_process_dead
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess
from uvicorn.supervisors.multiprocess import Process

METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"


class Supervisor(Multiprocess):
    """uvicorn's supervisor, which stops listening at once on SIGTERM or SIGINT and tells
    prometheus_client of each worker that is gone."""

    def __init__(self, config: uvicorn.Config, metrics_dir: str) -> None:
        super().__init__(config, sockets=[config.bind_socket()])
        self.metrics_dir = metrics_dir
        self.watched: set[Process] = set()

    def keep_subprocess_alive(self) -> None:
        """uvicorn's check (a dead or hung worker is replaced), then the bookkeeping of the
        workers that exited, whichever way they went (died, replaced, removed by SIGTTOU)."""
        super().keep_subprocess_alive()
        self.watched.update(self.processes)
        for process in [p for p in self.watched if p.exitcode is not None]:
            mark_process_dead(process.pid, self.metrics_dir)  # type: ignore[no-untyped-call]
            self.watched.discard(process)

    def terminate_all(self) -> None:
        """Close this process's listening socket, then send each worker SIGTERM (each closes its
        own socket, answers the requests it has, within the graceful timeout, and exits)."""
        for sock in self.sockets:
            sock.close()
        super().terminate_all()

    @property
    def failed_to_start(self) -> bool:
        """Whether the supervisor stopped because a worker exited before it began serving."""
        return any(process.exitcode == STARTUP_FAILURE for process in self.processes)


def serve(config: uvicorn.Config) -> None:
    """Serve ``config.workers`` worker processes until SIGTERM or SIGINT, then let them drain;
    return once they have all exited.

    Raises:
        SystemExit: with uvicorn's status 3 when a worker failed to start (the app's startup
            failed, e.g. the device is missing): the supervisor then stopped them all.
    """
    previous = os.environ.get(METRICS_DIR)
    with tempfile.TemporaryDirectory(prefix="fairloss-metrics-") as metrics_dir:
        os.environ[METRICS_DIR] = metrics_dir
        try:
            supervisor = Supervisor(config, metrics_dir)
            supervisor.run()
        finally:
            if previous is None:
                os.environ.pop(METRICS_DIR, None)
            else:
                os.environ[METRICS_DIR] = previous
    if supervisor.failed_to_start:
        sys.exit(STARTUP_FAILURE)
