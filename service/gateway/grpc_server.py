"""The gateway process: REST (uvicorn) and public gRPC in one event loop, sharing one engine.

The gRPC port opens first with ``grpc.health.v1`` NOT_SERVING; health follows the engine's readiness (SERVING once
models are warm / a worker serves).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import math
import socket
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Final

import uvicorn

from service.config import GatewaySettings
from service.engine.types import EngineClient
from service.gateway.app import EngineFactory, create_app
from service.gateway.auth_grpc import AuthInterceptor
from service.gateway.deps import loaded
from service.gateway.grpc_inputs import ESTIMATE_METHOD, keypoints_size_check
from service.gateway.grpc_public import Pose3DServicer
from service.gateway.http_head import bounded_protocol
from service.gateway.limits import HeadDoor
from service.metrics import Metrics
from service.proto_gen.pose3d.v1 import pose3d_pb2_grpc
from service.rpc.handlers import refusal_counter
from service.rpc.server import PUBLIC_SERVICE, add_health_and_reflection, new_server, set_serving
from service.security.guard import Security, log_auth_summary
from service.security.owned_engine import owned
from service.security.tls import add_port, uvicorn_ssl
from service.startup import ensure_port_free
from service.telemetry.setup import setup_telemetry

log = logging.getLogger("pose3d.gateway")

HEALTH_POLL_S: Final = 1.0


class PublicGrpcServer:
    """``pose3d.v1.Pose3D`` + health + reflection on ``settings.grpc_port``; the engine is attached later."""

    def __init__(self, settings: GatewaySettings, metrics: Metrics, security: Security | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.engine: EngineClient | None = None
        self.security = security if security is not None else Security(settings, metrics)
        prechecks = {ESTIMATE_METHOD: keypoints_size_check(settings.limits)}  # oversize keypoints: refused unparsed
        refused = refusal_counter(metrics, "grpc.")  # refusals before a handler counted as its handler counts
        self.server = new_server(settings.limits.max_body_bytes, [AuthInterceptor(self.security)], prechecks, refused)
        self.servicer = Pose3DServicer(settings, metrics, self._get_engine, self.security)
        pose3d_pb2_grpc.add_Pose3DServicer_to_server(self.servicer, self.server)  # type: ignore[no-untyped-call]
        self.health = add_health_and_reflection(self.server, [PUBLIC_SERVICE])
        self.port = 0
        self._health_task: asyncio.Task[None] | None = None

    def _get_engine(self) -> EngineClient:
        return loaded(self.engine, self.settings.limits.retry_after_s)

    async def start(self) -> int:
        """Listen (health NOT_SERVING) and return the bound port."""
        await set_serving(self.health, [PUBLIC_SERVICE], serving=False)
        address = f"{self.settings.host}:{self.settings.grpc_port}"
        self.port = add_port(self.server, address, self.settings.security)  # TLS when a certificate is set
        if self.port == 0:
            raise OSError(errno.EADDRINUSE, f"cannot listen on {address} (public gRPC)")
        await self.server.start()
        self._health_task = asyncio.create_task(self._follow_health(), name="grpc-health")
        log.info("pose3d gRPC (pose3d.v1.Pose3D, health, reflection) on %s:%d", self.settings.host, self.port)
        return self.port

    async def _follow_health(self) -> None:
        serving: bool | None = None
        while True:
            now = False
            if self.engine is not None:
                with contextlib.suppress(Exception):
                    now = (await self.engine.ready()).ready
            if now != serving:
                await set_serving(self.health, [PUBLIC_SERVICE], serving=now)
                serving = now
            await asyncio.sleep(HEALTH_POLL_S)

    async def stop(self, grace_s: float = 5.0) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            await asyncio.gather(self._health_task, return_exceptions=True)
        await self.health.enter_graceful_shutdown()
        self.servicer.stopping = True  # streams whose calls the stop ends stay open, for their clients to resume
        await self.server.stop(grace_s)


async def run_gateway(
    settings: GatewaySettings, engine_factory: EngineFactory, on_listening: Callable[[int], None] | None = None
) -> None:
    """Serve REST on ``settings.port`` and gRPC on ``settings.grpc_port`` (0 = no gRPC) until SIGTERM/SIGINT, on
    the engine ``engine_factory`` builds; ``on_listening`` is called with the REST port once it is bound."""
    ensure_port_free(settings.host, settings.port)  # uvicorn would only log the clash and sys.exit(1)
    setup_telemetry(settings, "pose3d-gateway")
    metrics = Metrics()
    security = Security(settings, metrics)
    log_auth_summary(settings)
    public = PublicGrpcServer(settings, metrics, security) if settings.grpc_port else None
    engine: EngineClient | None = None
    try:
        if public is not None:
            await public.start()
        engine = owned(await engine_factory(settings, metrics), security)
        # REST opens now: /healthz answers at once, /readyz and gRPC health say NOT ready until a worker serves
        app = create_app(settings, engine=engine, metrics=metrics, security=security)
        if public is not None:  # gRPC serves the same engine and shares the app's job store and runner
            public.engine, public.servicer.jobs = engine, app.state.jobs
        door = HeadDoor(settings.limits, metrics, security.in_flight)  # the engine's door, asked from the head
        head = bounded_protocol(settings.limits, door)  # and 431 past the head limits
        ssl = uvicorn_ssl(settings.security)
        # SIGTERM: open responses get the grace, then are cut — uvicorn would wait for every one to end, and a
        # job's NDJSON results end only with the job (the gateway held, its jobs never handed over)
        grace = math.ceil(settings.shutdown_grace_s)
        config = uvicorn.Config(
            app, host=settings.host, port=settings.port, log_level=settings.log_level, http=head,
            timeout_graceful_shutdown=grace, **ssl,
        )  # fmt: skip
        stop_grpc = None if public is None else partial(public.stop, settings.shutdown_grace_s)
        await _AnnouncingServer(config, on_listening, app.state.stopping, stop_grpc).serve()
    finally:
        if public is not None:
            await public.stop(settings.shutdown_grace_s)
        if engine is not None:
            await engine.aclose()
        await security.aclose()


class _AnnouncingServer(uvicorn.Server):
    """uvicorn's server, calling ``on_listening(port)`` once its sockets are bound and, when it begins to stop
    (before it waits for open responses), setting ``stopping`` and running ``also_stop`` beside its own drain: the
    gRPC server says NOT_SERVING and drains at once, not only after REST has drained."""

    def __init__(
        self,
        config: uvicorn.Config,
        on_listening: Callable[[int], None] | None,
        stopping: asyncio.Event,
        also_stop: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(config)
        self._on_listening = on_listening
        self._stopping = stopping
        self._also_stop = also_stop

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._stopping.set()
        await asyncio.gather(super().shutdown(sockets), *([self._also_stop()] if self._also_stop else []))

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self._on_listening is not None and self.servers:
            self._on_listening(int(self.servers[0].sockets[0].getsockname()[1]))
