"""What routes reach through dependencies: the settings, the admission limit, the devices.

Each lives on ``app.state``, set by `service.app.create_app` and its lifespan; the dependencies
are ``async`` so that FastAPI calls them inline rather than in a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from service.admission import Admission
from service.settings import Settings


@dataclass(frozen=True)
class Devices:
    """The devices this process computes on, and the one a request gets when it names none."""

    available: tuple[str, ...]
    default: str


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_admission(request: Request) -> Admission:
    admission: Admission = request.app.state.admission
    return admission


async def get_devices(request: Request) -> Devices:
    devices: Devices = request.app.state.devices
    return devices


SettingsDep = Annotated[Settings, Depends(get_settings)]
AdmissionDep = Annotated[Admission, Depends(get_admission)]
DevicesDep = Annotated[Devices, Depends(get_devices)]
