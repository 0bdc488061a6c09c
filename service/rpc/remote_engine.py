"""RemoteEngineClient: the EngineClient protocol over ``pose3d.worker.v1`` to a list of workers.

- **Spreading**: calls go round-robin over the workers whose ``grpc.health.v1`` status is SERVING; a
  stream's frames stick to the worker that served its previous frame while it stays healthy (with Redis
  any worker can serve any frame; without it the sticky worker holds the stream).
- **Failover**: a call that fails because its worker is gone (connection refused/reset) or says it cannot
  take work (UNAVAILABLE, e.g. still loading) or is full (RESOURCE_EXHAUSTED) is retried on another worker.
  Every operation retried this way is idempotent: ``estimate`` recomputes, frames are keyed by index.
- **Clips** (:meth:`RemoteEngineClient.estimate_clip`): a private stream on the workers, its frames sent in
  chunks (``PushFrames``: at most ``clip_chunk_frames`` frames / ``clip_chunk_bytes`` bytes per call, one call
  at a time); the gateway holds one chunk, and a chunk whose worker dies is retried on another like any frame
  (with Redis the stream carries on there). With chunks of more than one frame a clip's frames share the
  worker's detector and lifter batches (faster; results then differ from the frame-by-frame ones by float32
  rounding). The default, 1, keeps a clip bit-identical to the same frames streamed alone.
- **Visibility**: a background task checks every worker's health each ``health_interval_s``; ``ready()``
  names each worker and its state, so a lost worker shows in ``/readyz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.engine.types import (
    ClipRequest,
    ClipResult,
    EstimateOptions,
    EstimateRequest,
    EstimateResult,
    Frame,
    FrameResult,
    KeypointFrame,
    ModelInfo,
    ReadyStatus,
    StreamInfo,
)
from service.errors import DeadlineExceeded, Overloaded, Pose3DError, Unavailable
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.proto_gen.pose3d.v1 import worker_pb2 as wpb
from service.proto_gen.pose3d.v1 import worker_pb2_grpc
from service.rpc import codec
from service.rpc.server import WORKER_SERVICE, channel_options
from service.rpc.status import error_from_rpc
from service.telemetry.grpc_trace import TraceClientInterceptor

log = logging.getLogger(__name__)

_RETRY_ON_OTHER_WORKER: Final = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
_MAX_STICKY_STREAMS: Final = 100_000
MODELS_TTL_S: Final = 10.0

# gRPC's own machinery inside each worker address: an address may name many workers (``dns:///workers:50061``
# over a Kubernetes headless Service, or ``ipv4:10.0.0.1:50061,10.0.0.2:50061``): round_robin over the
# resolved backends, client-side health checking (only SERVING backends get calls; re-resolution follows scaling),
# and a transparent retry of UNAVAILABLE on another backend. Every Worker method is idempotent (frames are keyed
# by index, a retried open of the same stream returns it), so retrying is safe. Across addresses this client adds
# its own round robin, sticky streams and failover (above).
WORKER_SERVICE_CONFIG: Final = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "healthCheckConfig": {"serviceName": WORKER_SERVICE},
        "methodConfig": [
            {
                "name": [{"service": WORKER_SERVICE}],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "0.5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }
)


@dataclass
class _Worker:
    address: str
    channel: Any  # grpc.aio.Channel
    stub: Any  # worker_pb2_grpc.WorkerStub
    health: Any  # health_pb2_grpc.HealthStub on probe_channel
    probe_channel: Any  # grpc.aio.Channel without load balancing/health config: reaches a NOT_SERVING worker too
    healthy: bool = False
    state: str = "not checked yet"


class RemoteEngineClient:
    """EngineClient over gRPC to ``addresses`` (``host:port`` each). Call :meth:`start` before use."""

    def __init__(
        self,
        addresses: Sequence[str],
        *,
        max_message_bytes: int = 128 * 1024 * 1024,
        health_interval_s: float = 1.0,
        call_timeout_s: float = 30.0,
        clip_chunk_frames: int = 1,
        clip_chunk_bytes: int = 64 * 1024 * 1024,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        if not addresses:
            raise ValueError("RemoteEngineClient needs at least one worker address")
        options = [*channel_options(max_message_bytes), ("grpc.service_config", WORKER_SERVICE_CONFIG)]
        self._workers: list[_Worker] = []
        for address in addresses:
            channel = _channel(address, options, credentials)
            probe = _channel(address, channel_options(max_message_bytes), credentials)
            self._workers.append(
                _Worker(
                    address=address,
                    channel=channel,
                    stub=worker_pb2_grpc.WorkerStub(channel),  # type: ignore[no-untyped-call]
                    health=health_pb2_grpc.HealthStub(probe),
                    probe_channel=probe,
                )
            )
        if clip_chunk_frames < 1 or clip_chunk_bytes < 1:
            raise ValueError("clip chunks need at least one frame and one byte")
        self._clip_chunk_frames = clip_chunk_frames
        self._clip_chunk_bytes = min(clip_chunk_bytes, max_message_bytes // 2)
        self._rr = itertools.count()
        self._health_interval_s = health_interval_s
        self._call_timeout_s = call_timeout_s
        self._sticky: OrderedDict[str, _Worker] = OrderedDict()
        self._health_task: asyncio.Task[None] | None = None
        self._models: list[ModelInfo] | None = None
        self._components: list[ModelInfo] = []
        self._models_fetched_at = 0.0

    # ---- lifecycle and health -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Check every worker once, then keep checking in the background."""
        if self._health_task is None:
            await self._check_all()
            self._health_task = asyncio.create_task(self._watch_health(), name="worker-health")

    async def aclose(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
            self._health_task = None
        channels = [c for w in self._workers for c in (w.channel, w.probe_channel)]
        await asyncio.gather(*(c.close() for c in channels), return_exceptions=True)

    async def _watch_health(self) -> None:
        while True:
            await asyncio.sleep(self._health_interval_s)
            await self._check_all()

    async def _check_all(self) -> None:
        await asyncio.gather(*(self._check(w) for w in self._workers))

    async def _check(self, worker: _Worker) -> None:
        """An address is healthy when its probe says SERVING, or when its data channel is READY (client-side
        health checking: some backend behind the address serves, though the probe reached another)."""
        request = health_pb2.HealthCheckRequest(service=WORKER_SERVICE)
        try:
            reply = await worker.health.Check(request, timeout=max(0.5, self._health_interval_s))
        except grpc.aio.AioRpcError as exc:
            state = f"unreachable: {exc.code().name}"
            serving = False
        else:
            serving = reply.status == health_pb2.HealthCheckResponse.SERVING
            state = "serving" if serving else health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status).lower()
        if not serving and worker.channel.get_state(try_to_connect=True) is grpc.ChannelConnectivity.READY:
            serving, state = True, f"serving (a backend behind it; the probe saw {state})"
        self._set_health(worker, serving, state)

    def _set_health(self, worker: _Worker, healthy: bool, state: str) -> None:
        if worker.healthy != healthy:
            log.log(logging.INFO if healthy else logging.WARNING, "worker %s is now %s", worker.address, state)
        worker.healthy, worker.state = healthy, state

    # ---- routing ------------------------------------------------------------------------------------------------

    def _order(self, sticky: _Worker | None) -> list[_Worker]:
        """Workers to try, best first: the sticky one if healthy, the healthy ones round-robin, then the rest."""
        n = len(self._workers)
        start = next(self._rr) % n
        rotated = self._workers[start:] + self._workers[:start]
        healthy = [w for w in rotated if w.healthy]
        if sticky is not None and sticky.healthy:
            healthy.remove(sticky)
            healthy.insert(0, sticky)
        return healthy + [w for w in rotated if not w.healthy]

    def _timeout(self, deadline: float | None) -> float:
        if deadline is None:
            return self._call_timeout_s
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceeded("the request's deadline passed before it reached a worker")
        return remaining

    async def _call(
        self, method: str, message: Any, *, deadline: float | None = None, stream_id: str | None = None
    ) -> tuple[Any, _Worker]:
        """Call ``Worker.<method>`` on the best worker, moving on while workers are gone or busy.

        Returns the reply and the worker that gave it (which the stream, if any, now sticks to).
        """
        sticky = self._sticky.get(stream_id) if stream_id else None
        last: Pose3DError | None = None
        for worker in self._order(sticky):
            try:
                reply = await getattr(worker.stub, method)(message, timeout=self._timeout(deadline))
            except grpc.aio.AioRpcError as exc:
                error = error_from_rpc(exc)
                if exc.code() not in _RETRY_ON_OTHER_WORKER:
                    raise error from exc
                if exc.code() is grpc.StatusCode.UNAVAILABLE and not isinstance(error, Overloaded):  # busy ≠ down
                    self._set_health(worker, False, f"unavailable: {exc.details()}")
                log.warning("worker %s: %s failed (%s: %s); trying another", worker.address, method,
                            exc.code().name, exc.details())  # fmt: skip
                last = error
                continue
            if stream_id:
                self._remember(stream_id, worker)
            return reply, worker
        if isinstance(last, Overloaded):
            raise last
        raise Unavailable(f"no worker could take the request ({last.detail if last else 'no workers'})")

    def _remember(self, stream_id: str, worker: _Worker) -> None:
        self._sticky[stream_id] = worker
        self._sticky.move_to_end(stream_id)
        while len(self._sticky) > _MAX_STICKY_STREAMS:
            self._sticky.popitem(last=False)

    # ---- EngineClient -------------------------------------------------------------------------------------------

    async def estimate(self, request: EstimateRequest) -> EstimateResult:
        message = wpb.WorkerEstimateRequest(
            request_id=request.request_id,
            frames=[codec.frame_to_pb(f) for f in request.frames],
            options=codec.options_to_pb(request.options),
        )
        reply, _ = await self._call("Estimate", message, deadline=request.deadline)
        return codec.estimate_result_from_pb(reply)

    async def open_stream(self, options: EstimateOptions, stream_id: str | None = None) -> StreamInfo:
        message = wpb.OpenStreamRequest(options=codec.options_to_pb(options), stream_id=stream_id or "")
        reply, worker = await self._call("OpenStream", message, stream_id=stream_id)
        info = codec.stream_info_from_pb(reply)
        self._remember(info.stream_id, worker)
        return info

    async def push_frame(self, stream_id: str, frame: Frame, deadline: float | None = None) -> list[FrameResult]:
        message = wpb.PushFrameRequest(stream_id=stream_id, frame=codec.frame_to_pb(frame))
        reply, _ = await self._call("PushFrame", message, deadline=deadline, stream_id=stream_id)
        return codec.frame_results_from_pb(reply)

    async def push_frames(
        self, stream_id: str, frames: Sequence[Frame], deadline: float | None = None
    ) -> list[FrameResult]:
        if not frames:
            return []
        message = wpb.PushFramesRequest(stream_id=stream_id, frames=[codec.frame_to_pb(f) for f in frames])
        reply, _ = await self._call("PushFrames", message, deadline=deadline, stream_id=stream_id)
        return codec.frame_results_from_pb(reply)

    async def estimate_clip(self, request: ClipRequest) -> ClipResult:
        """The clip as a private worker stream fed in chunks (``PushFrames``), then closed (closed on error too)."""
        started = time.monotonic()
        stream_id = "clip-" + secrets.token_urlsafe(18)
        info = await self.open_stream(request.options, stream_id=stream_id)
        client_index: list[tuple[int, float | None]] = []
        results: list[FrameResult] = []
        chunk: list[Frame] = []
        chunk_bytes = 0
        open_ = True
        try:
            async for frame in request.frames:
                chunk.append(replace(frame, frame_index=len(client_index)))
                client_index.append((frame.frame_index, frame.timestamp_s))
                chunk_bytes += _frame_bytes(frame)
                del frame
                if len(chunk) >= self._clip_chunk_frames or chunk_bytes >= self._clip_chunk_bytes:
                    results += await self.push_frames(stream_id, chunk, request.deadline)
                    chunk, chunk_bytes = [], 0
            results += await self.push_frames(stream_id, chunk, request.deadline)
            chunk = []
            open_ = False
            results += await self.close_stream(stream_id)
        finally:
            if open_:
                with contextlib.suppress(Pose3DError):
                    await asyncio.shield(self.close_stream(stream_id))
        frames = [FrameResult(*client_index[r.frame_index], r.people) for r in results]
        timings = {"total": round((time.monotonic() - started) * 1000.0, 3)}
        return ClipResult(request.request_id, info.model, frames, timings)

    async def close_stream(self, stream_id: str) -> list[FrameResult]:
        try:
            reply, _ = await self._call("CloseStream", wpb.StreamRef(stream_id=stream_id), stream_id=stream_id)
        finally:
            self._sticky.pop(stream_id, None)
        return codec.frame_results_from_pb(reply)

    async def get_stream(self, stream_id: str) -> StreamInfo:
        reply, _ = await self._call("GetStream", wpb.StreamRef(stream_id=stream_id), stream_id=stream_id)
        return codec.stream_info_from_pb(reply)

    async def models(self) -> list[ModelInfo]:
        """The workers' models, cached for ``MODELS_TTL_S`` (the gateway resolves a model on every request;
        workers of one deployment serve the same model set). A stale list is used while no worker answers."""
        now = time.monotonic()
        if self._models is not None and now - self._models_fetched_at < MODELS_TTL_S:
            return self._models
        try:
            reply, _ = await self._call("Models", pb.ListModelsRequest())
        except Unavailable:
            if self._models is None:
                raise
            return self._models
        self._models = [codec.model_info_from_pb(m) for m in reply.models]
        self._components = [codec.model_info_from_pb(m) for m in reply.components]
        self._models_fetched_at = now
        return self._models

    async def components(self) -> list[ModelInfo]:
        """The workers' detectors, from the same (cached) ``Models`` reply as :meth:`models`."""
        await self.models()
        return list(self._components)

    async def ready(self) -> ReadyStatus:
        """Ready while at least one worker is SERVING; ``detail`` names every worker's state."""
        detail = {f"worker {w.address}": w.state for w in self._workers}
        return ReadyStatus(ready=any(w.healthy for w in self._workers), detail=detail)

    @property
    def addresses(self) -> list[str]:
        return [w.address for w in self._workers]


def _channel(address: str, options: list[tuple[str, Any]], credentials: grpc.ChannelCredentials | None) -> Any:
    """A channel to a worker: mTLS with ``credentials`` (security.worker_*), else plaintext."""
    interceptors = [TraceClientInterceptor()]  # traceparent in the metadata of every worker call
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)
    return grpc.aio.secure_channel(address, credentials, options=options, interceptors=interceptors)


def _frame_bytes(frame: Frame) -> int:
    """Roughly what ``frame`` weighs on the wire."""
    if isinstance(frame, KeypointFrame):
        return 256
    return len(frame.image) if isinstance(frame.image, bytes) else int(frame.image.nbytes)
