"""A client for the FairLoss scoring service that scores datasets of any size, and the
``fairloss`` command line.

Example::

    from fairloss_client import Client

    with Client("http://127.0.0.1:8000") as client:
        result = client.score(logits, labels)
        result.reduced["total"], result.per_sample["total"]
"""

from fairloss_client.client import AsyncClient, Client
from fairloss_client.plan import Limits, Retry, ServiceError
from fairloss_client.results import CandidateResult, CompareResult, ScoreResult

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
