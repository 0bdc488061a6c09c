"""What every route shares: the gateway state (settings, metrics, engine), model lookup, deadlines."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

from fastapi import Request

from service.config import GatewaySettings
from service.engine.types import EngineClient
from service.errors import BadRequest, DeadlineExceeded, Unavailable
from service.metrics import Metrics

TIMEOUT_HEADER = "X-Request-Timeout"
"""Optional per-request deadline in seconds (capped by ``engine.request_timeout_s``)."""


@dataclass
class GatewayState:
    """Per-app state: set up by the lifespan, read by routes through :func:`state_of`."""

    settings: GatewaySettings
    metrics: Metrics
    engine: EngineClient | None = None
    startup_error: str | None = None


def state_of(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state


def loaded(engine: EngineClient | None, retry_after_s: float, failure: str | None = None) -> EngineClient:
    """``engine``, or Unavailable (503 + Retry-After) while it starts or after it failed to (``failure``)."""
    if engine is None:
        raise Unavailable(failure or "the engine is still loading models", retry_after_s=retry_after_s)
    return engine


def engine_of(request: Request) -> EngineClient:
    state = state_of(request)
    return loaded(state.engine, state.settings.limits.retry_after_s, state.startup_error)


def request_timeout(request: Request, settings: GatewaySettings) -> float:
    """Seconds this request may take: ``X-Request-Timeout`` when given, never above the server's."""
    limit = settings.engine.request_timeout_s
    raw = request.headers.get(TIMEOUT_HEADER)
    if raw is None:
        return limit
    try:
        asked = float(raw)
    except ValueError:
        raise BadRequest(f"{TIMEOUT_HEADER} must be a number of seconds") from None
    if not math.isfinite(asked) or asked <= 0:
        raise BadRequest(f"{TIMEOUT_HEADER} must be a positive number of seconds")
    return min(asked, limit)


@asynccontextmanager
async def within(seconds: float, detail: str) -> AsyncIterator[float]:
    """Run the body for at most ``seconds``, yielding its ``time.monotonic()`` deadline; past it the work is
    cancelled and DeadlineExceeded(``detail``) (504) is raised."""
    deadline = time.monotonic() + seconds
    try:
        async with asyncio.timeout(seconds):
            yield deadline
    except TimeoutError:
        raise DeadlineExceeded(detail) from None


def deadline_scope(request: Request) -> AbstractAsyncContextManager[float]:
    """:func:`within` the request's deadline (:func:`request_timeout`)."""
    timeout = request_timeout(request, state_of(request).settings)
    return within(
        timeout,
        f"the request did not complete within {timeout:g} s (the deadline: header {TIMEOUT_HEADER}, at most the "
        "setting engine.request_timeout_s / POSE3D_ENGINE__REQUEST_TIMEOUT_S); for long clips use POST /v1/jobs "
        "or Accept: application/x-ndjson (a progress deadline)",
    )
