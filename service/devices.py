"""Which torch devices exist, and which one a request's ``device`` names."""

from __future__ import annotations

import re

import torch

from service.errors import invalid

_CUDA = re.compile(r"cuda(?::(\d+))?")


def available_devices() -> list[str]:
    """``cpu`` and one ``cuda:K`` per visible GPU."""
    return ["cpu", *(f"cuda:{k}" for k in range(torch.cuda.device_count()))]


def resolve_device(name: str, devices: list[str]) -> str:
    """Map ``auto``/``cpu``/``cuda``/``cuda:K`` to a device in ``devices``, or raise a 422."""
    has_gpu = len(devices) > 1
    if name == "auto":
        return devices[1] if has_gpu else "cpu"
    if name == "cpu":
        return name
    match = _CUDA.fullmatch(name)
    if match is None:
        raise invalid(
            f"Unknown device {name!r}: use 'auto', 'cpu', 'cuda' or 'cuda:K'. "
            f"Devices here: {', '.join(devices)}",
            ["device"],
            "unknown_device",
        )
    wanted = f"cuda:{int(match.group(1) or 0)}"
    if wanted not in devices:
        raise invalid(
            f"Device {name!r} does not exist on this server. Devices here: {', '.join(devices)}",
            ["device"],
            "device_unavailable",
        )
    return wanted
