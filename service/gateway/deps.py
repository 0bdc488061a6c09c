"""What every route shares: the gateway state (settings, metrics, engine), model lookup, deadlines."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import Request

from service.config import GatewaySettings, InputKind
from service.engine.types import BoxSource, EngineClient, EstimateOptions, ModelInfo
from service.errors import BadRequest, DeadlineExceeded, InvalidInput, Unavailable, UnknownModel
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
    background: set[asyncio.Task[None]] = field(default_factory=set)


def state_of(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state


def engine_of(request: Request) -> EngineClient:
    """The engine, or Unavailable (503 + Retry-After) while it starts or after it failed to."""
    state = state_of(request)
    if state.engine is None:
        reason = state.startup_error or "the engine is still loading models"
        raise Unavailable(reason, retry_after_s=state.settings.limits.retry_after_s)
    return state.engine


async def resolve_model(engine: EngineClient, name: str) -> ModelInfo:
    """The served model called ``name``; UnknownModel (404) naming the served ones otherwise."""
    models = await engine.models()
    for info in models:
        if info.name == name:
            return info
    served = ", ".join(sorted(m.name for m in models)) or "none"
    raise UnknownModel(f"model {name!r} is not served here (served: {served})")


async def keypoints_model(engine: EngineClient, settings: GatewaySettings, name: str | None) -> ModelInfo:
    """The model for 2D keypoint input: ``name``, else the configured default, else any model that
    needs no image. A model that needs image features (CA-PF) refuses keypoints with 422."""
    if name is not None:
        info = await resolve_model(engine, name)
    else:
        models = await engine.models()
        preferred = [settings.default_model(InputKind.KEYPOINTS), settings.default_clip_model]
        by_name = {m.name: m for m in models}
        candidates = [by_name[n] for n in preferred if n in by_name] + sorted(models, key=lambda m: m.name)
        usable = [m for m in candidates if not m.needs_image]
        if not usable:
            raise InvalidInput("no served model lifts 2D keypoints alone (every served model needs the image)")
        info = usable[0]
    if info.needs_image:
        raise InvalidInput(f"model {info.name!r} ({info.kind}) needs the image itself, not 2D keypoints")
    return info


def box_source_for(options: EstimateOptions, settings: GatewaySettings) -> BoxSource:
    """Where image frames' boxes come from under ``options`` (the engine's own rule, stated for streams)."""
    if options.boxes is not None:
        return BoxSource.CLIENT
    if settings.detector.person_detector_onnx is not None:
        return BoxSource.DETECTOR
    return BoxSource.WHOLE_FRAME


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
async def deadline_scope(request: Request) -> AsyncIterator[float]:
    """Run the body under the request's deadline; yields the ``time.monotonic()`` deadline.
    Past it the work is cancelled and DeadlineExceeded (504) is raised."""
    timeout = request_timeout(request, state_of(request).settings)
    deadline = time.monotonic() + timeout
    try:
        async with asyncio.timeout(timeout):
            yield deadline
    except TimeoutError:
        raise DeadlineExceeded(
            f"the request did not complete within {timeout:g} s (the deadline: header {TIMEOUT_HEADER}, at most the "
            "setting engine.request_timeout_s / POSE3D_ENGINE__REQUEST_TIMEOUT_S); for long clips use POST /v1/jobs "
            "or Accept: application/x-ndjson (a progress deadline)"
        ) from None
