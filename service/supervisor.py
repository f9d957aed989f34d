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
- The workers share a ledger of the memory their requests hold (``FAIRLOSS_LEDGER``, a file in
  the same directory, `service.memory.Ledger`), so that one budget bounds them all.
- When a worker exits, prometheus_client is told (`mark_process_dead`), so that its
  in-flight gauge (mode ``livesum``) no longer counts; its counters still do.
- Each worker dies with its supervisor (`follow_supervisor`): once the supervisor is gone,
  however it went (SIGKILL, the OOM killer), the kernel sends the worker SIGTERM, and it stops
  accepting and exits, rather than serving the port on its own with nobody to restart it or
  collect its metrics.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import tempfile

import uvicorn
from prometheus_client.multiprocess import mark_process_dead
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess
from uvicorn.supervisors.multiprocess import Process

from service.memory import LEDGER_BYTES, LEDGER_PATH

METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"
SUPERVISOR_PID = "FAIRLOSS_SUPERVISOR_PID"  # set for the workers by `serve`
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


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


def follow_supervisor() -> None:
    """In a worker that `serve` started: have the kernel send this process SIGTERM when its
    supervisor exits, however it exits (Linux's ``PR_SET_PDEATHSIG``), and send it now if the
    supervisor is already gone. uvicorn's SIGTERM handling then stops accepting, lets the
    requests in hand finish within the graceful timeout, and exits. Does nothing in a process
    that `serve` did not start (one worker, the tests' in-process apps) or off Linux.

    Raises:
        OSError: when the kernel refuses ``prctl``.
    """
    supervisor = os.environ.get(SUPERVISOR_PID)
    if supervisor is None or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != int(supervisor):  # gone before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def serve(config: uvicorn.Config) -> None:
    """Serve ``config.workers`` worker processes until SIGTERM or SIGINT, then let them drain;
    return once they have all exited.

    Raises:
        SystemExit: with uvicorn's status 3 when a worker failed to start (the app's startup
            failed, e.g. the device is missing): the supervisor then stopped them all.
    """
    previous = {name: os.environ.get(name) for name in (METRICS_DIR, SUPERVISOR_PID, LEDGER_PATH)}
    with tempfile.TemporaryDirectory(prefix="fairloss-") as shared:
        metrics_dir = os.path.join(shared, "metrics")
        os.mkdir(metrics_dir)
        ledger = os.path.join(shared, "memory.ledger")
        with open(ledger, "wb") as file:
            file.truncate(LEDGER_BYTES)
        os.environ[METRICS_DIR] = metrics_dir
        os.environ[LEDGER_PATH] = ledger
        os.environ[SUPERVISOR_PID] = str(os.getpid())
        try:
            supervisor = Supervisor(config, metrics_dir)
            supervisor.run()
        finally:
            for name, value in previous.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    if supervisor.failed_to_start:
        sys.exit(STARTUP_FAILURE)
