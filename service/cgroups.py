"""The limits of this process's control groups (cgroup v2 and v1), as containers set them.

A limit may be set on the process's own cgroup or on any of its ancestors (a Kubernetes pod's
limit sits one level above its container's): `tightest` reads each along the path that
``/proc/self/cgroup`` names, and keeps the smallest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

CGROUP_ROOT = Path("/sys/fs/cgroup")
MEMBERSHIP = Path("/proc/self/cgroup")
N = TypeVar("N", int, float)


def _up_from(mount: Path, relative: str) -> Iterator[Path]:
    """``mount/relative`` and each of its parents down to ``mount`` itself.

    Inside a container the path that ``/proc/self/cgroup`` names may not exist under the mount
    (which then shows the container's own cgroup as its root): the walk still reaches it.
    """
    directory = mount / relative.strip("/")
    yield directory
    yield from (parent for parent in directory.parents if parent.is_relative_to(mount))


def tightest(
    v2: Callable[[Path], N | None],
    v1_controller: str,
    v1: Callable[[Path], N | None],
    root: Path = CGROUP_ROOT,
    membership: Path = MEMBERSHIP,
) -> N | None:
    """The smallest positive limit along this process's cgroup path: ``v2(directory)`` in the
    unified hierarchy, ``v1(directory)`` under ``v1_controller``'s mount; each returns None
    where no limit is set. None where none is set, or no cgroup files can be read (not Linux,
    cgroups not mounted). Never raises for unreadable or malformed files."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        return None
    places: list[tuple[Path, Callable[[Path], N | None]]] = []
    for line in lines:
        _, controllers, relative = line.split(":", 2)
        if controllers == "":
            places += [(d, v2) for d in _up_from(root, relative)]
        elif v1_controller in controllers.split(","):
            places += [(d, v1) for d in _up_from(root / v1_controller, relative)]
    limits = []
    for directory, read in places:
        try:
            limit = read(directory)
        except (OSError, ValueError):
            continue
        if limit is not None and limit > 0:
            limits.append(limit)
    return min(limits, default=None)
