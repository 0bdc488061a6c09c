"""The gateway's view of its workers: channels, health, and which worker takes a call.

- **Spreading**: calls go round-robin over the worker addresses whose ``grpc.health.v1`` status is SERVING;
  inside one address gRPC's own ``round_robin`` policy (with client-side health checking and a retry policy)
  spreads over the backends it resolves to (a DNS name over a headless Service, or ``ipv4:a,b,...``).
- **Stream affinity**: a stream's calls stick to the address that served its previous call while it stays
  healthy. Not for speed — with a shared (Redis) frame buffer any worker serves any frame equally fast
  (``bench/affinity.py``) — but because a stream's smoothing state (``engine.world.StreamWorld``) lives in the
  worker process: a smoothed stream spread over workers would be smoothed piecewise and lose the frames a
  smoother still holds. Drop it once that state lives in the frame buffer.
- **Failover**: a call that fails because its worker is gone (connection refused/reset), cannot take work yet
  (UNAVAILABLE, e.g. still loading) or is full (RESOURCE_EXHAUSTED) may be made again on another worker; every
  Worker method is idempotent (``estimate`` recomputes, frames are keyed by index).
- **Visibility**: a background task checks every address each ``health_interval_s`` over a probe channel
  without load balancing (it reaches a NOT_SERVING worker too); :meth:`WorkerPool.detail` names each state.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.errors import DeadlineExceeded, Overloaded, Pose3DError, Unavailable
from service.proto_gen.pose3d.v1 import worker_pb2_grpc
from service.rpc.server import WORKER_SERVICE, channel_options
from service.rpc.status import error_from_rpc
from service.telemetry.grpc_trace import TraceClientInterceptor

log = logging.getLogger("service.rpc.remote_engine")

RETRY_ON_OTHER_WORKER: Final = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
_MAX_STICKY_STREAMS: Final = 100_000

# gRPC's own machinery inside each worker address: round_robin over the resolved backends, client-side health
# checking (only SERVING backends get calls; re-resolution follows scaling), and a transparent retry of
# UNAVAILABLE on another backend (every Worker method is idempotent, so retrying is safe).
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
class Worker:
    address: str
    channel: Any  # grpc.aio.Channel
    stub: Any  # worker_pb2_grpc.WorkerStub
    health: Any  # health_pb2_grpc.HealthStub on probe_channel
    probe_channel: Any  # grpc.aio.Channel without load balancing/health config: reaches a NOT_SERVING worker too
    healthy: bool = False
    state: str = "not checked yet"


class WorkerPool:
    """Channels to ``addresses`` (``host:port`` or any gRPC target each). Call :meth:`start` before use."""

    def __init__(
        self,
        addresses: Sequence[str],
        max_message_bytes: int,
        health_interval_s: float,
        call_timeout_s: float,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        if not addresses:
            raise ValueError("RemoteEngineClient needs at least one worker address")
        options = [*channel_options(max_message_bytes), ("grpc.service_config", WORKER_SERVICE_CONFIG)]
        self.workers: list[Worker] = []
        for address in addresses:
            channel = _channel(address, options, credentials)
            probe = _channel(address, channel_options(max_message_bytes), credentials)
            stub = worker_pb2_grpc.WorkerStub(channel)  # type: ignore[no-untyped-call]
            self.workers.append(Worker(address, channel, stub, health_pb2_grpc.HealthStub(probe), probe))
        self._rr = itertools.count()
        self._health_interval_s = health_interval_s
        self.call_timeout_s = call_timeout_s
        self._sticky: OrderedDict[str, Worker] = OrderedDict()
        self._health_task: asyncio.Task[None] | None = None

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
        channels = [c for w in self.workers for c in (w.channel, w.probe_channel)]
        await asyncio.gather(*(c.close() for c in channels), return_exceptions=True)

    async def _watch_health(self) -> None:
        while True:
            await asyncio.sleep(self._health_interval_s)
            await self._check_all()

    async def _check_all(self) -> None:
        await asyncio.gather(*(self._check(w) for w in self.workers))

    async def _check(self, worker: Worker) -> None:
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

    def _set_health(self, worker: Worker, healthy: bool, state: str) -> None:
        if worker.healthy != healthy:
            log.log(logging.INFO if healthy else logging.WARNING, "worker %s is now %s", worker.address, state)
        worker.healthy, worker.state = healthy, state

    @property
    def ready(self) -> bool:
        return any(w.healthy for w in self.workers)

    def detail(self) -> dict[str, str]:
        return {f"worker {w.address}": w.state for w in self.workers}

    # ---- routing ------------------------------------------------------------------------------------------------

    def order(self, stream_id: str | None = None) -> list[Worker]:
        """Workers to try, best first: the stream's worker if healthy, the healthy ones round-robin, the rest."""
        sticky = self._sticky.get(stream_id) if stream_id else None
        n = len(self.workers)
        start = next(self._rr) % n
        rotated = self.workers[start:] + self.workers[:start]
        healthy = [w for w in rotated if w.healthy]
        if sticky is not None and sticky.healthy:
            healthy.remove(sticky)
            healthy.insert(0, sticky)
        return healthy + [w for w in rotated if not w.healthy]

    def timeout(self, deadline: float | None) -> float:
        """Seconds left for a call (``call_timeout_s`` without a deadline)."""
        if deadline is None:
            return self.call_timeout_s
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceeded("the request's deadline passed before it reached a worker")
        return remaining

    def failed_over(self, worker: Worker, method: str, exc: grpc.aio.AioRpcError) -> Pose3DError:
        """The service error of a failed call, returned when another worker may take the call over (raised
        otherwise); a worker that answered UNAVAILABLE (not over capacity) counts as unhealthy until its next health
        check."""
        error = error_from_rpc(exc)
        if exc.code() not in RETRY_ON_OTHER_WORKER:
            raise error from exc
        if exc.code() is grpc.StatusCode.UNAVAILABLE and not isinstance(error, Overloaded):  # busy ≠ down
            self._set_health(worker, False, f"unavailable: {exc.details()}")
        log.warning("worker %s: %s failed (%s: %s); trying another", worker.address, method, exc.code().name,
                    exc.details())  # fmt: skip
        return error

    async def call(
        self, method: str, message: Any, *, deadline: float | None = None, stream_id: str | None = None
    ) -> tuple[Any, Worker]:
        """Call ``Worker.<method>`` on the best worker, moving on while workers are gone or busy.

        Returns the reply and the worker that gave it (which the stream, if any, now sticks to).
        """
        last: Pose3DError | None = None
        for worker in self.order(stream_id):
            try:
                reply = await getattr(worker.stub, method)(message, timeout=self.timeout(deadline))
            except grpc.aio.AioRpcError as exc:
                last = self.failed_over(worker, method, exc)
                continue
            if stream_id:
                self.remember(stream_id, worker)
            return reply, worker
        raise no_worker(last)

    def remember(self, stream_id: str, worker: Worker) -> None:
        self._sticky[stream_id] = worker
        self._sticky.move_to_end(stream_id)
        while len(self._sticky) > _MAX_STICKY_STREAMS:
            self._sticky.popitem(last=False)

    def forget(self, stream_id: str) -> None:
        self._sticky.pop(stream_id, None)


def no_worker(last: Pose3DError | None) -> Pose3DError:
    """What to raise when no worker took a call: the last Overloaded as it is, else Unavailable."""
    if isinstance(last, Overloaded):
        return last
    return Unavailable(f"no worker could take the request ({last.detail if last else 'no workers'})")


def _channel(address: str, options: list[tuple[str, Any]], credentials: grpc.ChannelCredentials | None) -> Any:
    """A channel to a worker: mTLS with ``credentials`` (security.worker_*), else plaintext."""
    interceptors = [TraceClientInterceptor()]  # traceparent in the metadata of every worker call
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)
    return grpc.aio.secure_channel(address, credentials, options=options, interceptors=interceptors)
