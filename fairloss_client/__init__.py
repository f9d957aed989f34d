"""A client for the FairLoss scoring service that scores datasets of any size, and the
``fairloss`` command line.

Example::

    from fairloss_client import Client

    with Client("http://127.0.0.1:8000") as client:
        result = client.score(logits, labels)
        result.reduced["total"], result.per_sample["total"]

The names below are imported when first used, so that the command line, scoring files in this
process, never imports the HTTP stack (httpx, tenacity, tqdm).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fairloss_client.client import AsyncClient, Client
    from fairloss_client.plan import Limits, Retry, ServiceError
    from fairloss_client.results import CandidateResult, CompareResult, ScoreResult

_HOMES = {
    "AsyncClient": "client",
    "Client": "client",
    "Limits": "plan",
    "Retry": "plan",
    "ServiceError": "plan",
    "CandidateResult": "results",
    "CompareResult": "results",
    "ScoreResult": "results",
}
__all__ = [
    "AsyncClient",
    "CandidateResult",
    "Client",
    "CompareResult",
    "Limits",
    "Retry",
    "ScoreResult",
    "ServiceError",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'fairloss_client' has no attribute {name!r}")
    try:
        module = importlib.import_module(f"fairloss_client.{_HOMES[name]}")
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"fairloss_client.{name} needs the client's dependencies: "
            f"pip install 'fairloss-service[client]' ({exc})",
            name=exc.name,
        ) from exc
    return getattr(module, name)
