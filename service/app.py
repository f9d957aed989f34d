"""The FastAPI application: assembled here, configured by `Settings`."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import numpy as np
import torch
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.middleware.cors import CORSMiddleware

import fairloss
from fairloss.devices import available_devices, resolve_device
from fairloss.errors import InputError
from fairloss.scoring import score_batch
from service.admission import Admission
from service.deps import Devices
from service.errors import install_error_handlers
from service.memory import (
    LEDGER_PATH,
    MIN_BUDGET,
    Ledger,
    default_budget,
    memory_limit,
)
from service.observability import Metrics, ObservabilityMiddleware, RouteTemplates, access_logger
from service.oip import HEADER_LENGTH
from service.openapi_doc import openapi_30_document, openapi_document
from service.routes import health, metrics, score, v2
from service.routes.dashboard import install_dashboard
from service.security import BearerAuthMiddleware
from service.settings import Settings
from service.supervisor import SUPERVISOR_PID, follow_supervisor

log = logging.getLogger("service")


def _warm_up(device: str) -> None:
    logits = np.array([[0.34, 0.33, 0.33], [0.49, 0.51, 0.0]])
    score_batch(logits, np.array([0, 0]), default_device=device)


def _size_torch(threads: int) -> None:
    """``threads`` torch threads for each computation, and as many for inter-op work at most
    (``python -m service`` sizes them so that its workers share the CPUs, `service.cpus`).
    The inter-op pool can be sized once per process, before its first use: later, it stays."""
    torch.set_num_threads(threads)
    if torch.get_num_interop_threads() > threads:
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:  # already sized, or already started
            log.debug("torch's inter-op threads stay at %d", torch.get_num_interop_threads())


@contextmanager
def _one_thread() -> Iterator[None]:
    """torch on one thread, for a small batch computed on the event loop: waking the thread
    pool costs it more than the pool gives (see `service.cpus.plan`). Such batches run one at a
    time, on the event loop's thread, so the count before is the count to restore."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _ledger(settings: Settings) -> Ledger:
    """The memory budget's ledger: shared with the other workers under `service.supervisor`,
    this process's own otherwise. Called once warmed up, so that an ``auto`` budget counts
    what this process holds idle."""
    budget, limit = settings.memory_budget, memory_limit()
    if not budget:
        supervisor = os.environ.get(SUPERVISOR_PID)
        workers, pid = settings.workers or 1, int(supervisor) if supervisor else None
        budget = default_budget(workers, pid, limit)
        if budget < MIN_BUDGET:
            raise RuntimeError(
                f"FAIRLOSS_MEMORY_BUDGET=auto: the {workers} worker(s) leave no "
                f"memory for requests under the limit of {limit} bytes; run fewer "
                "workers (FAIRLOSS_WORKERS) or give the container more memory"
            )
    elif budget > limit:
        log.warning(
            "FAIRLOSS_MEMORY_BUDGET=%d is more than the %d bytes this server may use: it cannot "
            "keep the server from running out of memory",
            budget,
            limit,
        )
    return Ledger(budget, os.environ.get(LEDGER_PATH))


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    follow_supervisor()  # first: a worker whose supervisor is gone must not start serving
    settings: Settings = app.state.settings
    if settings.torch_threads:
        _size_torch(settings.torch_threads)
    available = available_devices()
    try:
        default = resolve_device(settings.device, available)
    except InputError as exc:
        raise RuntimeError(f"FAIRLOSS_DEVICE={settings.device!r}: {exc}") from None
    for device in available:
        _warm_up(device)
    # Everything loaded so far lives as long as the process: keep it out of the collector's
    # full passes, which big JSON bodies (many lists) would otherwise trigger.
    gc.collect()
    gc.freeze()
    app.state.devices = Devices(available, default)
    ledger = _ledger(settings)
    app.state.admission.open(ledger)
    app.state.ready = True
    log.info(
        "ready on %s (devices: %s; torch threads: %d; memory budget: %d MiB)",
        default,
        ", ".join(available),
        torch.get_num_threads(),
        ledger.budget // 2**20,
    )
    try:
        yield
    finally:
        app.state.ready = False
        app.state.admission.close()  # the ledger stays: a computation that timed out may run on


def _add_middleware(app: FastAPI, settings: Settings) -> None:
    """Innermost first: API keys; CORS, so preflights need no key; ids, logs, metrics outermost
    (and its 500s, so that they too carry the request's id)."""
    if settings.api_keys:
        keys = [key.get_secret_value() for key in settings.api_keys]
        app.add_middleware(BearerAuthMiddleware, keys=keys)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            # Content-Encoding: a page may send its body gzipped, as the routes take it;
            # Inference-Header-Content-Length: the protocol's binary tensors, both ways.
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Content-Encoding",
                "X-Request-ID",
                HEADER_LENGTH,
            ],
            expose_headers=["X-Request-ID", "Retry-After", HEADER_LENGTH],
        )
    app.add_middleware(
        ObservabilityMiddleware,
        metrics=app.state.metrics,
        templates=RouteTemplates(app),
        logger=access_logger(settings.log_level),
        on_error=app.exception_handlers[Exception],
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    # FastAPIOffline: /docs and /redoc load their scripts from the service, not from a CDN, so
    # they work for a sidecar with no internet access.
    app = FastAPIOffline(
        title="FairLoss scoring service",
        version=fairloss.__version__,
        description="Scores classifier outputs with FairLoss: cross-entropy plus a smooth "
        "penalty, at most 1/C, for rows whose argmax is not the true class. The penalty makes it "
        "rarer that a correct prediction scores worse than a wrong one, but does not rule it out; "
        "the Penalized Log Loss (pll) and Penalized Brier Score (pbs) of Ahmadian, Ghatee & "
        "Wahlström (2025) do, by construction (but for exact ties for the top logit, which the "
        "paper counts as correct and accuracy's argmax may not). POST /compare counts the "
        "(correct, wrong) pairs each criterion orders the wrong way.",
        lifespan=lifespan,
        # Operation ids are the routes' names (score, compare, model_infer), which code
        # generators turn into function names, not FastAPI's score_score_post.
        generate_unique_id_function=lambda route: route.name,
    )
    app.state.settings = settings
    app.state.ready = False
    app.state.metrics = Metrics()
    app.state.admission = Admission(
        settings.max_concurrency,
        settings.retry_after_s,
        reject=app.state.metrics.reject,
        inline_bytes=settings.inline_bytes,
        inline=_one_thread,
        held=app.state.metrics.in_flight.set,
    )
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(score.router)
    app.include_router(v2.router)
    app.include_router(metrics.router)
    install_dashboard(app)
    _add_middleware(app, settings)
    app.openapi = lambda: openapi_document(app)  # type: ignore[method-assign]
    app.add_api_route(
        "/openapi-3.0.json",
        lambda: openapi_30_document(app),
        methods=["GET"],
        include_in_schema=False,
    )
    return app
