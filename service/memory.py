"""Admission by memory: what a request may hold, reserved before its body is read.

A server's requests share one budget (``FAIRLOSS_MEMORY_BUDGET``), over all its worker
processes: `Ledger` keeps what each worker's requests hold in a small file the workers map
(`service.supervisor` makes it), changed under an exclusive ``flock``; a server of one process
keeps it in its own memory. A request reserves its expected peak, `Cost.of` its body's size,
before its body is read (from ``Content-Length``), grows it as a chunked or compressed body
streams past that, and gives it back when answered. A reservation that does not fit what is
left is a 503 with ``Retry-After``; one larger than the whole budget a 413.

The default budget is the memory this server may use (the cgroup's limit, v2 ``memory.max`` or
v1 ``memory.limit_in_bytes``, else the machine's memory), less what its processes hold idle,
times `MARGIN`. Reservations bound the resident memory only if freed memory goes back to the
system: after a big request, `trim_heaps` gives back what it left in glibc's heaps. (Having
glibc map every block of 1 MiB or more on its own would too, but then every big block of every
request is faulted in afresh, which made JSON requests slower when tried.)
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import re
import sys
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from service.cgroups import CGROUP_ROOT, MEMBERSHIP, tightest

if TYPE_CHECKING:
    from fairloss.bootstrap import Bootstrap

LEDGER_PATH = "FAIRLOSS_LEDGER"  # set for the workers by `service.supervisor.serve`
MARGIN = 0.8  # of what is left once the idle processes are counted
SLOTS = 256  # worker processes a ledger holds; a dead worker's row is taken again
LEDGER_BYTES = 8 + SLOTS * 16  # the budget (written by the first worker), then (pid, held) rows
MIB = 1024 * 1024
MIN_BUDGET = 8 * MIB  # a request needs 4 MiB at least: a smaller budget takes one at a time
MAX_BUDGET = 2**62  # the ledger keeps bytes as int64
_QUANTITY = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>[A-Za-z]*)")
_UNITS = {"": 1, "B": 1} | {
    unit + b: scale
    for k, prefix in enumerate("KMGTPE", start=1)
    for unit, scale in ((prefix + "i", 1024**k), (prefix, 1000**k))
    for b in ("", "B")
}
_UNITS |= {"k": 1000, "kB": 1000}


def quantity(value: Any) -> Any:
    """A byte count as Kubernetes writes it: ``536870912``, ``512Mi``, ``2Gi``, ``1.5Gi``,
    ``2G`` (10^9), also ``512MiB``; ``auto`` (any case) or ``0`` is ``0``, the derived default.

    Raises:
        ValueError: for anything else (``1,5Gi``, ``10%``, ``5.Gi``), or a budget under
            `MIN_BUDGET` or over `MAX_BUDGET`, saying which forms and sizes are taken.
    """
    if isinstance(value, str):
        text = value.strip()
        found = _QUANTITY.fullmatch(text)
        if text.lower() == "auto":
            return 0
        if found is None or found["unit"] not in _UNITS:
            raise ValueError(
                f"expected a number of bytes (536870912, 512Mi, 2Gi, 1.5G) or 'auto', got {value!r}"
            )
        value = int(float(found["number"]) * _UNITS[found["unit"]])
    if type(value) is int and value and not MIN_BUDGET <= value <= MAX_BUDGET:
        raise ValueError(f"expected from 8Mi to 4Ei bytes, or 'auto', got {value}")
    return value


def _v2_limit(directory: Path) -> int | None:
    text = (directory / "memory.max").read_text().strip()
    return None if text == "max" else int(text)


def _v1_limit(directory: Path) -> int | None:
    return int((directory / "memory.limit_in_bytes").read_text())  # a huge number when unset


def memory_limit(root: Path = CGROUP_ROOT, membership: Path = MEMBERSHIP) -> int:
    """Bytes this process may use: the tightest memory limit along its cgroup path (v2
    ``memory.max``, v1 ``memory.limit_in_bytes``), or the machine's memory where that is less
    or no limit is set."""
    machine = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit = tightest(_v2_limit, "memory", _v1_limit, root, membership)
    return machine if limit is None else min(limit, machine)


def resident_bytes(pid: int | str = "self") -> int:
    """A process's resident memory (``VmRSS``), 0 if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else 0


def default_budget(workers: int, supervisor: int | None, limit: int) -> int:
    """`MARGIN` times what ``limit`` (`memory_limit`) leaves once ``workers`` processes like
    this one (idle, after warm-up) and the ``supervisor`` process are counted."""
    idle = workers * resident_bytes() + (resident_bytes(supervisor) if supervisor else 0)
    return int(MARGIN * (limit - idle))


def trim_heaps() -> None:
    """glibc only: give the system back the free memory that glibc's heaps hold (a big
    request's temporaries, freed, would otherwise stay resident in this worker, where the
    budget no longer counts them and no other worker can use them)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        malloc_trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # another C library
        return
    malloc_trim(0)


@dataclass(frozen=True)
class Cost:
    """A route's expected peak for a body of ``size`` bytes (decompressed): ``per_byte`` times
    the size, plus the scoring's block buffers (``block_per_byte`` times the size, but never
    more than `BLOCKS`, as `fairloss.blocks` reuses them block after block), plus ``fixed``.
    ``tests/test_memory_budget.py`` holds each route and encoding to its cost, measured as
    `benchmarks/http_bench.py` prints them."""

    per_byte: float
    block_per_byte: float
    fixed: int = 4 * MIB

    def of(self, size: int) -> int:
        return self.fixed + int(self.per_byte * size + min(self.block_per_byte * size, BLOCKS))


BLOCKS = 3 * 2**20 * 8
"""`fairloss.blocks`: three buffers of ``BLOCK_ELEMENTS`` float64s at most (written out, not
imported: the supervisor reads this module and must not load torch; a test holds them equal)."""
JSON_COST = Cost(per_byte=5.5, block_per_byte=1.2)
"""``/score``, ``/compare`` and the Open Inference Protocol's JSON: about 20 bytes a number,
parsed at about 3.7 bytes a byte (simdjson), or 5 when the body needs the general parser."""
PARSE_PER_BYTE = 2
PARSE_PER_MARK = 40
"""What parsing a JSON body holds at its peak: the body and the parser's copy of it, and for
each comma or ``[`` (about one per number and one per array) the parser's tape and indexes
and the arrays it makes. `JSON_COST` assumes 20 bytes a number; a body of narrow rows
(``[0,1]``, 3 marks in 6 bytes) needs more, reserved once its marks are counted."""


def parse_extra(size: int, marks: int) -> int:
    """What parsing a JSON body of ``size`` bytes and ``marks`` commas and ``[`` holds past
    what `JSON_COST` reserved for its size."""
    return max(0, PARSE_PER_BYTE * size + PARSE_PER_MARK * marks - JSON_COST.of(size))


BINARY_COST = Cost(per_byte=3.0, block_per_byte=6.0)
"""The Open Inference Protocol's binary tensors: 4 bytes a float32 logit."""


ROW_BYTES = 224
"""What each sample (row) of each candidate holds once parsed, besides the body's cost: its
per-sample columns in the core and in the answer. Reserved once the rows are known, as a body
of narrow rows (``[0, 1]``, 6 bytes) holds far more per byte than the 20 bytes a number the
costs above assume."""
Reserve = Callable[[int], None]


def no_reserve(_: int) -> None:
    return None


def reserve_parsed(
    reserve: Reserve,
    samples: int,
    candidates: int = 1,
    bootstrap: Bootstrap | None = None,
    items: int = 0,
    ece_bins: int = 15,
    keys: int = 0,
    answered: bool = False,
) -> None:
    """Ask ``reserve`` for what a parsed request holds besides its body's cost: `ROW_BYTES` a
    sample of each candidate, and a bootstrap's working memory over ``items`` items (the first
    axis) and ``keys`` group keys, with the replicate sums' JSON when they are ``answered``
    (`fairloss.replicates.replicates_bytes`)."""
    extra = ROW_BYTES * samples * candidates
    if bootstrap is not None:
        from fairloss.replicates import replicates_bytes  # here: the supervisor loads no torch

        r = bootstrap.replicates
        extra += replicates_bytes(items, candidates, ece_bins, r, keys, answered)
    reserve(extra)


class Ledger:
    """The bytes that each worker process's requests hold, and the budget over all of them.

    ``path`` names the file the workers share; without one the ledger is this process's own.
    Every change happens under an exclusive lock on that file, so a check and the reservation
    it allows are one step across the workers.
    """

    def __init__(self, budget: int, path: str | None = None) -> None:
        self._file = None if path is None else open(path, "r+b")  # noqa: SIM115 (kept open)
        fd = -1 if self._file is None else self._file.fileno()
        self._map = mmap.mmap(fd, LEDGER_BYTES)
        header = np.frombuffer(self._map, dtype="<i8", count=1)
        # (pid, bytes held) of each worker: read and written in place, under the locks
        self._table = np.frombuffer(self._map, dtype="<i8", offset=8).reshape(SLOTS, 2)
        self.pid = os.getpid()
        self._thread_lock = threading.Lock()
        with self._locked():
            if header[0] <= 0:
                header[0] = budget
            self.budget = int(header[0])
            self._row = self._claim()

    def close(self) -> None:
        """Unmap the ledger (and close its file); this worker's row stays until it exits."""
        del self._table
        self._map.close()
        if self._file is not None:
            self._file.close()

    def _locked(self) -> AbstractContextManager[object]:
        """The event loop's thread and a worker thread (`Reservation.add`) both reserve: a
        thread lock first, then the file's lock for the other processes."""
        return _Locks(self._thread_lock, None if self._file is None else self._file.fileno())

    def _claim(self) -> int:
        """This process's row of the table: a free one, or one whose worker is gone."""
        for row, (pid, _) in enumerate(self._table.tolist()):
            if pid in (0, self.pid) or not _alive(pid):
                self._table[row] = (self.pid, 0)
                return row
        raise RuntimeError(f"the memory ledger holds {SLOTS} workers at most")

    def held(self) -> int:
        """Bytes reserved now by the requests of every live worker."""
        used = self._table[self._table[:, 0] != 0].tolist()
        return sum(held for pid, held in used if _alive(pid))

    def reserve(self, more: int) -> bool:
        """Add ``more`` bytes to this worker's reservations if they fit the budget."""
        with self._locked():
            if self.held() + more > self.budget:
                return False
            self._add(more)
            return True

    def release(self, fewer: int) -> None:
        with self._locked():
            self._add(-fewer)

    def _add(self, change: int) -> None:
        self._table[self._row, 1] += change


class _Locks:
    def __init__(self, lock: threading.Lock, fd: int | None) -> None:
        self.lock = lock
        self.fd = fd

    def __enter__(self) -> None:
        self.lock.acquire()
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *_: object) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        self.lock.release()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True
