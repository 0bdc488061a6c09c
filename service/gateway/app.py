"""FastAPI application factory: routes, problem+json handlers, guards, and the engine's lifetime.

The gateway imports no engine implementation itself (engines come from :func:`service.assembly.build_engine_client`),
so over remote workers it never loads PyTorch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Final

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from service.config import GatewaySettings
from service.engine.types import EngineClient, ModelInfo
from service.errors import Unavailable
from service.gateway import routes_estimate, routes_ops, routes_streams, routes_ws
from service.gateway.auth_rest import AuthGuard
from service.gateway.deps import GatewayState
from service.gateway.jobs import routes as job_routes
from service.gateway.jobs.runner import jobs_running, make_jobs
from service.gateway.limits import GatewayGuard
from service.gateway.outputs import OutputPool
from service.gateway.pages import mount_demo, mount_redoc
from service.gateway.problem import install_problem_handlers
from service.metrics import Metrics
from service.redaction import redact
from service.security.guard import Security
from service.security.owned_engine import owned as owned_by_keys
from service.security.tls import rest_scheme
from service.startup import frozen_heap
from service.telemetry.rest_trace import TraceMiddleware

log = logging.getLogger("pose3d.gateway")

WS: Final = frozenset({routes_ws.WS_PATH})
"""The WebSocket routes, which the guard counts under their path also when a handshake is refused before routing."""

EngineFactory = Callable[[GatewaySettings, Metrics], Awaitable[EngineClient]]
"""Builds and starts an engine (models loaded and warmed) for the app's settings and metrics."""

API_DESCRIPTION = """3D human pose estimation: top-down HRNet 2D keypoints lifted to 3D by CA-PF or P-STMO.

Joints are Human3.6M-17 (`joint_names`); `keypoints_2d` in image pixels; `keypoints_3d` in metres,
camera frame, root-relative (pelvis at 0). Errors are RFC 9457 `application/problem+json`.
"""


def log_models(models: list[ModelInfo], settings: GatewaySettings) -> None:
    """Say which models serve with which weights — loudly when the weights are random."""
    for m in models:
        if m.random_weights:
            log.warning(
                "!!! model %r (%s, %s) serves RANDOM WEIGHTS: its poses are meaningless. "
                "Set models.%s.checkpoint in the --config file for real results. !!!",
                m.name,
                m.kind,
                m.version,
                m.name,
            )
        else:
            log.info("model %r (%s, %s) weights sha256 %s on %s", m.name, m.kind, m.version, m.weights, m.device)
    limits = settings.limits
    log.info(
        "defaults: images -> %r, clips -> %r; limits: body %d bytes, %d pixels, %d clip frames",
        settings.default_image_model,
        settings.default_clip_model,
        limits.max_body_bytes,
        limits.max_image_pixels,
        limits.max_clip_frames,
    )


async def _start_engine(state: GatewayState, engine_factory: EngineFactory | None) -> EngineClient:
    """The engine the gateway owns (built by ``engine_factory``); a failure is kept for /readyz and logged."""
    if engine_factory is None:
        raise TypeError("create_app needs engine= or engine_factory= (see service.assembly)")
    try:
        return await engine_factory(state.settings, state.metrics)
    except Exception as exc:
        state.startup_error = redact(f"engine failed to start: {exc}")
        log.critical("%s", state.startup_error)
        raise


def create_app(
    settings: GatewaySettings,
    *,
    engine: EngineClient | None = None,
    engine_factory: EngineFactory | None = None,
    metrics: Metrics | None = None,
    security: Security | None = None,
) -> FastAPI:
    """Build the gateway app for ``settings`` (nothing is read from the environment here)."""
    state = GatewayState(settings=settings, metrics=metrics if metrics is not None else Metrics())
    security = security if security is not None else Security(settings, state.metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = None if engine is not None else await _start_engine(state, engine_factory)
        served = engine if engine is not None else owned
        assert served is not None
        state.engine = owned_by_keys(served, security)  # streams belong to the key that opened them
        security.in_flight.probe = getattr(getattr(served, "inner", served), "admission_probe", None)  # in-process
        try:
            log_models(await state.engine.models(), settings)
        except Unavailable as exc:  # remote workers still loading: serve /healthz and a 503 /readyz meanwhile
            log.warning("engine not ready yet (%s); requests get 503 until it is", exc.detail)
        engine_text = "remote: " + ", ".join(settings.workers) if settings.workers else "in-process"
        where = f"{rest_scheme(settings.security)}://{settings.host}:{settings.port}"
        log.info("pose3d gateway ready on %s (engine %s)", where, engine_text)
        try:
            with frozen_heap():
                async with jobs_running(app.state.jobs):
                    yield
        finally:
            state.engine, security.in_flight.probe = None, None
            if owned is not None:
                await owned.aclose()

    # /docs and /redoc with assets from fastapi-offline (/static-offline-docs), not from a CDN
    app = FastAPIOffline(
        title="pose3d", version="0.1.0", description=API_DESCRIPTION, lifespan=lifespan, redoc_url=None
    )
    mount_redoc(app)  # /redoc: no CDN logo either
    app.state.gateway = state
    app.state.jobs = make_jobs(state)  # REST routes and the gRPC servicer share them
    app.state.settings = settings
    app.state.stopping = asyncio.Event()  # set as the server begins to stop (run_gateway): job NDJSON results end
    limits = settings.limits
    app.state.output_pool = OutputPool(limits.render_workers, limits.render_queue, limits.retry_after_s)
    app.state.security = security  # /readyz (key file, Redis); WebSocket frames (bucket, revocation)
    install_problem_handlers(app, limits.retry_after_s)
    app.add_middleware(AuthGuard, security=security)  # inside GatewayGuard: 401/429 get request ids and counts
    app.add_middleware(GatewayGuard, limits=limits, metrics=state.metrics, in_flight=security.in_flight, sockets=WS)
    app.add_middleware(TraceMiddleware)  # outermost: one span per request, continuing a client's traceparent
    app.include_router(routes_ops.router)
    app.include_router(routes_estimate.router)
    app.include_router(routes_streams.router)
    app.include_router(routes_ws.router)  # /v1/streams/ws
    mount_demo(app)
    app.include_router(job_routes.router)
    return app
