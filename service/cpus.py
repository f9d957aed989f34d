"""How many CPUs this process may use, and how the server shares them out.

`usable_cpus` is the smaller of the CPUs the scheduler lets this process run on
(``os.sched_getaffinity``, which follows a container's cpuset) and its cgroup's CPU bandwidth
quota, rounded up (cgroup v2 ``cpu.max``, or v1 ``cpu.cfs_quota_us`` over ``cpu.cfs_period_us``;
``docker run --cpus``, a Kubernetes CPU limit). `plan` turns it into a number of worker
processes and of torch threads in each.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from service.cgroups import CGROUP_ROOT, MEMBERSHIP, tightest


@dataclass(frozen=True)
class Plan:
    """Worker processes, and torch threads in each."""

    workers: int
    torch_threads: int


def _v2_quota(directory: Path) -> float | None:
    """``cpu.max`` (``"max 100000"`` or ``"150000 100000"``) in CPUs; None for ``max``."""
    quota, period = (directory / "cpu.max").read_text().split()[:2]
    return None if quota == "max" else int(quota) / int(period)


def _v1_quota(directory: Path) -> float | None:
    """``cpu.cfs_quota_us / cpu.cfs_period_us`` in CPUs; None for a quota of -1 (none)."""
    quota = int((directory / "cpu.cfs_quota_us").read_text())
    period = int((directory / "cpu.cfs_period_us").read_text())
    return None if quota <= 0 else quota / period


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, membership: Path = MEMBERSHIP) -> float | None:
    """The CPU bandwidth quota this process runs under, in CPUs (``1.5`` for ``--cpus 1.5``):
    the tightest along its cgroup's path, v2 or v1; None where there is none, or no cgroup
    files to read (not Linux, cgroups not mounted). Never raises for unreadable files."""
    return tightest(_v2_quota, "cpu", _v1_quota, root, membership)


def affinity_cpus() -> int:
    """The CPUs the scheduler lets this process run on (``os.cpu_count()`` where the platform
    has no ``sched_getaffinity``)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def usable_cpus(
    affinity: Callable[[], int] = affinity_cpus,
    limit: Callable[[], float | None] = cgroup_cpu_limit,
) -> int:
    """The CPUs this process may use: its affinity, capped by its cgroup quota rounded up
    (a quota of 1.5 CPUs allows 2); at least 1."""
    cpus = affinity()
    quota = limit()
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def plan(workers: int, torch_threads: int, cpus: int) -> Plan:
    """The workers (``0``: one per CPU) and torch threads in each (``0``: one per CPU).

    Each worker may use every CPU for one large batch: its threads sleep when idle
    (``OMP_WAIT_POLICY=PASSIVE``, set by `service.__main__`), and a small batch, computed on the
    event loop, runs on one thread (`service.app`), so that workers answering small requests
    side by side do not wake each other's thread pools. Measured on 2 CPUs with 2 workers
    (``FAIRLOSS_TORCH_THREADS=1 .venv/bin/python benchmarks/http_bench.py --only
    table,throughput`` against the same with ``0``, one after the other): binary 100,000 x 100
    took 2.41x the core with one thread a worker and 1.48x with two; 64 x 10 over 8
    connections gave 1,110 and 1,039 requests/s (within the machine's noise).

    Raises:
        ValueError: a negative count, or no CPUs.
    """
    if workers < 0 or torch_threads < 0 or cpus < 1:
        raise ValueError(f"bad sizes: workers={workers}, torch_threads={torch_threads}, {cpus=}")
    return Plan(workers or cpus, torch_threads or cpus)
