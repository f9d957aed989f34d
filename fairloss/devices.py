"""Which torch devices exist, and which one a request's ``device`` names."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import torch

from fairloss.errors import InputError

_CUDA = re.compile(r"cuda(?::(\d+))?")


@functools.cache
def available_devices() -> tuple[str, ...]:
    """``cpu`` and one ``cuda:K`` per visible GPU (looked up once per process)."""
    return ("cpu", *(f"cuda:{k}" for k in range(torch.cuda.device_count())))


def resolve_device(name: str, devices: Sequence[str] | None = None) -> str:
    """Map ``auto``/``cpu``/``cuda``/``cuda:K`` to one of ``devices`` (those here by default).

    Raises:
        InputError: at ``device``, for a name of another form or a GPU that does not exist;
            the message lists the devices there are.
    """
    devices = available_devices() if devices is None else devices
    if name == "auto":
        return devices[1] if len(devices) > 1 else "cpu"
    if name == "cpu":
        return name
    match = _CUDA.fullmatch(name)
    if match is None:
        raise InputError(
            f"Unknown device {name!r}: use 'auto', 'cpu', 'cuda' or 'cuda:K'. "
            f"Devices here: {', '.join(devices)}",
            ("device",),
            "unknown_device",
        )
    wanted = f"cuda:{int(match.group(1) or 0)}"
    if wanted not in devices:
        raise InputError(
            f"Device {name!r} does not exist on this server. Devices here: {', '.join(devices)}",
            ("device",),
            "device_unavailable",
        )
    return wanted
