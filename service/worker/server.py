# ruff: noqa: N802  (gRPC method names are fixed by the proto)
"""The ``pose3d worker`` process: loads the models and serves ``pose3d.worker.v1.Worker`` on its own port.

The gRPC port (health NOT_SERVING, reflection) and ``/metrics`` open first, so orchestrators can watch the worker
while the engine loads off the event loop; health turns SERVING (``pose3d_worker_up`` 1) once it is ready.
SIGTERM/SIGINT turn health NOT_SERVING, give in-flight calls ``shutdown_grace_s``, then close the engine. The worker
only computes (the gateway validated the input); while the engine loads, every call answers UNAVAILABLE so the
channel tries another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import signal
from collections.abc import AsyncGenerator, Callable
from typing import Any

from service.config import WorkerSettings
from service.engine.types import EngineClient
from service.errors import Unavailable
from service.metrics import Metrics
from service.proto_gen.pose3d.worker.v1 import worker_pb2 as wpb
from service.proto_gen.pose3d.worker.v1 import worker_pb2_grpc
from service.rpc import link
from service.rpc.handlers import Context, deadline_of, observed_call, refusal_counter, unary
from service.rpc.server import WORKER_SERVICE, add_health_and_reflection, new_server, set_serving
from service.security.guard import SecurityConfigError
from service.security.keys import KeyStore
from service.security.tls import add_worker_port
from service.security.worker_link import WorkerKeyInterceptor, worker_link_summary
from service.startup import frozen_heap, loading_thread
from service.telemetry.setup import setup_telemetry
from service.worker.metrics_http import serve_metrics

log = logging.getLogger(__name__)

REFRESH_TIMEOUT_S = 5.0
"""Seconds a scrape of ``/metrics`` waits for the engine's gauges to be refreshed (:func:`_refresh_gauges`)."""

EngineFactory = Callable[[WorkerSettings, Metrics], Any]
"""Builds the engine (called on the loading thread, :func:`~service.startup.loading_thread`: it may block while
loading weights); its ``start()``, when it has one, is awaited next."""


class WorkerServicer(worker_pb2_grpc.WorkerServicer):
    """Serves ``engine`` once it is set (``None`` while loading)."""

    def __init__(self, metrics: Metrics, engine: EngineClient | None = None) -> None:
        self.metrics = metrics
        self.engine = engine

    def _engine(self) -> EngineClient:
        if self.engine is None:
            raise Unavailable("worker is loading its models", retry_after_s=1.0)
        return self.engine

    async def Submit(self, request: wpb.Work, context: Context) -> AsyncGenerator[wpb.Progress]:
        """Run the work here, one message per progress event; a cancelled call cancels the work at once."""
        async with observed_call(self.metrics, "worker.Submit", context):
            engine, deadline = self._engine(), deadline_of(context)
            if len(request.frames.frames) < link.OFF_LOOP_FRAMES:
                work = link.work_from_pb(request, deadline)
            else:
                work = await asyncio.to_thread(link.work_from_pb, request, deadline)
            steps = engine.submit(work)
            async with contextlib.aclosing(steps):
                async for step in steps:
                    yield link.progress_to_pb(step)

    @unary("worker.Stream")
    async def Stream(self, request: wpb.StreamCall, context: Context) -> wpb.StreamReply:
        engine, sid = self._engine(), request.stream_id
        if request.op == wpb.StreamCall.OP_OPEN:
            return link.stream_to_pb(await engine.open_stream(link.options_from_pb(request.options), sid or None))
        if request.op == wpb.StreamCall.OP_CLOSE:
            return wpb.StreamReply(stream_id=sid, tail=link.results_to_pb(await engine.close_stream(sid)))
        return link.stream_to_pb(await engine.get_stream(sid))

    @unary("worker.Describe")
    async def Describe(self, request: wpb.DescribeRequest, context: Context) -> wpb.Description:
        engine = self._engine()
        models, components = await engine.models(), await engine.components()
        return wpb.Description(models=map(link.model_to_pb, models), components=map(link.model_to_pb, components))

    @unary("worker.Ready")
    async def Ready(self, request: wpb.ReadyRequest, context: Context) -> wpb.ReadyReply:
        if self.engine is None:
            return wpb.ReadyReply(ready=False, detail={"engine": "loading"})
        status = await self.engine.ready()
        return wpb.ReadyReply(ready=status.ready, detail=status.detail)


def default_engine_factory(settings: WorkerSettings, metrics: Metrics) -> EngineClient:
    """The in-process engine, not yet started (``start()`` loads and warms the models off the event loop)."""
    from service.engine.inprocess import InProcessEngine

    return InProcessEngine(settings, metrics)


async def _build_engine(factory: EngineFactory, settings: WorkerSettings, metrics: Metrics) -> EngineClient:
    engine: EngineClient = await loading_thread(factory, settings, metrics)
    if (start := getattr(engine, "start", None)) is not None:
        await start()
    return engine


def worker_keys(settings: WorkerSettings) -> KeyStore | None:
    """The keys callers must present (``api_keys_file``), or None; SecurityConfigError when unreadable."""
    if settings.api_keys_file is None:
        return None
    keys = KeyStore(settings.api_keys_file)
    if keys.error is not None:
        raise SecurityConfigError(keys.error)
    return keys


async def run_worker(
    settings: WorkerSettings,
    *,
    engine_factory: EngineFactory = default_engine_factory,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until ``stop`` is set (or SIGTERM/SIGINT when ``stop`` is None)."""
    setup_telemetry(settings, "pose3d-worker")  # traces and JSON logs when settings.telemetry asks
    level, link = worker_link_summary(settings)  # SecurityConfigError: beyond loopback, callers must authenticate
    log.log(level, "%s", link)
    keys = worker_keys(settings)
    metrics = Metrics()  # pose3d_worker_up 0 until the engine serves
    # the key from the metadata, before any message is read
    interceptors = [] if keys is None else [WorkerKeyInterceptor(keys)]
    server = new_server(settings.max_message_bytes, interceptors, refused=refusal_counter(metrics, "worker."))
    servicer = WorkerServicer(metrics)
    worker_pb2_grpc.add_WorkerServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    health = add_health_and_reflection(server, [WORKER_SERVICE])
    await set_serving(health, [WORKER_SERVICE], serving=False)
    address = f"{settings.host}:{settings.port}"
    if add_worker_port(server, address, settings.tls) == 0:  # mTLS when settings.tls names certificates
        raise OSError(errno.EADDRINUSE, f"cannot listen on {address} (worker gRPC)")
    refresh = functools.partial(_refresh_gauges, servicer, asyncio.get_running_loop())
    http_server = serve_metrics(settings, metrics.registry, keys, refresh) if settings.metrics_port else None
    await server.start()  # after the metrics port: one that is taken stops the command before gRPC serves
    log.info("pose3d worker: gRPC on %s, metrics on :%d; loading models", address, settings.metrics_port)

    received: list[int] = []
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _on_signal, sig, stop, received)
    engine: EngineClient | None = None
    try:
        loading = asyncio.create_task(_build_engine(engine_factory, settings, metrics))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({loading, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if loading.done():
            engine = loading.result()
            servicer.engine = engine
            await set_serving(health, [WORKER_SERVICE], serving=True)
            metrics.worker_up.set(1)
            with frozen_heap():  # as the gateway does once started
                log.info("pose3d worker: serving on %s", address)
                await stopping
        else:
            loading.cancel()
    finally:
        log.info("pose3d worker: shutting down")
        metrics.worker_up.set(0)
        await health.enter_graceful_shutdown()
        await server.stop(settings.shutdown_grace_s)
        if engine is not None:
            await engine.aclose()
        if http_server is not None:
            http_server.shutdown()
            http_server.server_close()
    if signal.SIGINT in received:  # Ctrl-C: the command line says "interrupted" and exits 130
        raise KeyboardInterrupt


def _refresh_gauges(servicer: WorkerServicer, loop: asyncio.AbstractEventLoop) -> None:
    """At a scrape of ``/metrics`` (on its thread): the gauges the engine sets as it checks its readiness — open
    streams (a shared frame buffer is counted only there), CUDA memory — as the gateway's ``/metrics`` does; no one
    else asks a worker's engine. A refresh that fails or takes over :data:`REFRESH_TIMEOUT_S` leaves them as they
    were."""
    if (engine := servicer.engine) is None:
        return
    ready = None
    try:
        ready = asyncio.run_coroutine_threadsafe(engine.ready(), loop)
        ready.result(REFRESH_TIMEOUT_S)
    except Exception as exc:  # the scrape still answers: a stale gauge, not a failed scrape
        if ready is not None:
            ready.cancel()
        log.warning("pose3d worker: /metrics served without refreshing the engine's gauges (%r)", exc)


def _on_signal(sig: int, stop: asyncio.Event, received: list[int]) -> None:
    received.append(sig)
    stop.set()
