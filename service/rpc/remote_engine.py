"""RemoteEngineClient: the EngineClient protocol over ``pose3d.worker.v1`` to the workers behind one
:class:`WorkerChannel`, the gateway's one channel to them: gRPC's own ``round_robin`` over health-checked backends
(which worker takes a call is gRPC's business), UNAVAILABLE retried by the service config's ``retryPolicy`` (never a
refusal: RESOURCE_EXHAUSTED is an answer), no stickiness (stream state lives in the frame buffer). ``workers``
becomes one target (:func:`worker_target`). The why and the details: docs/streams-and-state.md "How the gateway
balances".

Every :class:`~service.engine.types.Work` is one ``Submit`` call (frames in hand, or frames for a named stream); a
private clip runs in a private worker stream, sent as its container bytes and decoded by the worker, and a call cut
short by a dying worker is made again from the first position not answered. Decoded frames from an async source go
in chunks of at most ``clip_chunk_frames`` frames / ``clip_chunk_bytes`` bytes, one call at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import socket
import time
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Sequence
from dataclasses import replace
from typing import Any, Final, TypeVar

import grpc

from service.config import DEFAULT_WORKER_MESSAGE_BYTES
from service.engine.types import (
    EncodedClip,
    EstimateOptions,
    Frame,
    FrameResult,
    KeypointFrame,
    ModelInfo,
    Progress,
    ReadyStatus,
    StreamInfo,
    Work,
)
from service.engine.work import in_private_stream
from service.errors import DeadlineExceeded, InternalError, Unavailable
from service.proto_gen.pose3d.worker.v1 import worker_pb2 as wpb
from service.proto_gen.pose3d.worker.v1 import worker_pb2_grpc
from service.rpc import link
from service.rpc.server import WORKER_SERVICE, channel_options
from service.rpc.status import error_from_rpc
from service.telemetry.grpc_trace import TraceClientInterceptor, TraceStreamClientInterceptor

T = TypeVar("T")
RETRY_MAX_ATTEMPTS: Final = 3
RECONNECT_BACKOFF_MAX_MS: Final = 2000

WORKER_SERVICE_CONFIG: Final = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "healthCheckConfig": {"serviceName": WORKER_SERVICE},
        "methodConfig": [
            {
                "name": [{"service": WORKER_SERVICE}],
                "retryPolicy": {
                    "maxAttempts": RETRY_MAX_ATTEMPTS,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "0.5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],  # never RESOURCE_EXHAUSTED: a refusal is an answer
                },
            }
        ],
    }
)
_SCHEMES: Final = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:", "vsock:")


def _split(address: str) -> tuple[str, str]:
    """``host:port`` or ``[v6]:port`` → ``(host, port)``; raises ValueError."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"worker address {address!r} is not host:port (a port in 1-65535)")
    return host.strip("[]"), port


def _resolve(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """``host`` itself when it is an IP literal, else its address (IPv4 preferred); raises ValueError when it does
    not resolve."""
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host)
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ValueError(f"worker host {host!r} does not resolve: {e}") from e
    found = [ipaddress.ip_address(str(info[4][0])) for info in infos]
    return next((a for a in found if a.version == 4), found[0])


def worker_target(addresses: Sequence[str]) -> str:
    """The one gRPC target for ``addresses`` (see the module docstring); raises ValueError.

    >>> worker_target(["127.0.0.1:50061", "127.0.0.1:50062"])
    'ipv4:127.0.0.1:50061,127.0.0.1:50062'
    >>> worker_target(["dns:///workers.pose3d.svc:50061"])
    'dns:///workers.pose3d.svc:50061'
    """
    if not addresses:
        raise ValueError("the gateway needs at least one worker address")
    if len(addresses) == 1:
        if not addresses[0].startswith(_SCHEMES):
            _split(addresses[0])  # a bad one would leave the channel connecting for ever: every request a 503
        return addresses[0]
    if any(a.startswith(_SCHEMES) for a in addresses):
        raise ValueError("a worker address with a scheme (dns:///, ipv4:, ...) must be the only one")
    pairs = [_split(a) for a in addresses]
    ips = [(_resolve(host), port) for host, port in pairs]
    versions = {ip.version for ip, _ in ips}
    if versions == {4}:
        return "ipv4:" + ",".join(f"{ip}:{port}" for ip, port in ips)
    if versions == {6}:
        return "ipv6:" + ",".join(f"[{ip}]:{port}" for ip, port in ips)
    raise ValueError("worker addresses mix IPv4 and IPv6; gRPC's static target lists take one family")


def worker_tls_name(addresses: Sequence[str]) -> str | None:
    """The name the workers' TLS certificates are checked against when ``addresses`` become an ``ipv4:``/``ipv6:``
    list (whose authority names no host): the first address's host as written, before it was resolved; ``None``
    for a single target (gRPC takes the name from it).

    >>> worker_tls_name(["workers.internal:50061", "10.0.0.7:50061"])
    'workers.internal'
    """
    return _split(addresses[0])[0] if len(addresses) > 1 else None


class WorkerChannel:
    """One balanced, health-checked channel to the workers behind ``target`` (:func:`worker_target`): messages
    up to ``max_message_bytes`` both ways, ``call_timeout_s`` for a call without a deadline, mTLS with
    ``credentials`` (else plaintext) checking the name ``tls_name`` (:func:`worker_tls_name`) for a target list."""

    def __init__(
        self,
        target: str,
        max_message_bytes: int,
        call_timeout_s: float,
        credentials: grpc.ChannelCredentials | None = None,
        tls_name: str | None = None,
    ) -> None:
        self.target = target
        self.call_timeout_s = call_timeout_s
        options = [
            *channel_options(max_message_bytes),
            ("grpc.service_config", WORKER_SERVICE_CONFIG),
            ("grpc.initial_reconnect_backoff_ms", 200),  # a worker that (re)starts is seen within a few seconds
            ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MAX_MS),
            # the retry policy replays only a call whose request it kept (default 256 KiB): an image frame past that
            # would not be made again on another worker when its worker dies
            ("grpc.per_rpc_retry_buffer_size", max_message_bytes),
        ]
        if credentials is not None and tls_name is not None:
            options.append(("grpc.ssl_target_name_override", tls_name))
        interceptors = [TraceClientInterceptor(), TraceStreamClientInterceptor()]  # traceparent in every worker call
        if credentials is None:
            self.channel: Any = grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
        else:
            self.channel = grpc.aio.secure_channel(target, credentials, options=options, interceptors=interceptors)
        self.stub: Any = worker_pb2_grpc.WorkerStub(self.channel)  # type: ignore[no-untyped-call]

    def state(self) -> grpc.ChannelConnectivity:
        """The channel's connectivity (asks it to connect when idle)."""
        state: grpc.ChannelConnectivity = self.channel.get_state(try_to_connect=True)
        return state

    async def wait_ready(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for a connected, SERVING backend (start-up); False when none came."""
        try:
            await asyncio.wait_for(self.channel.channel_ready(), timeout_s)
        except TimeoutError:
            return False
        return True

    def timeout(self, deadline: float | None) -> float:
        """Seconds left for a call (``call_timeout_s`` without a deadline)."""
        if deadline is None:
            return self.call_timeout_s
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceeded("the request's deadline passed before it reached a worker")
        return remaining

    async def call(self, method: str, message: Any, deadline: float | None = None) -> Any:
        """``Worker.<method>(message)``; a failed call raises its service error (:func:`error_from_rpc`)."""
        try:
            return await getattr(self.stub, method)(message, timeout=self.timeout(deadline))
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from exc

    async def aclose(self) -> None:
        await self.channel.close()


MODELS_TTL_S: Final = 10.0
START_WAIT_S: Final = 2.0
CLIP_CHUNK_BYTES: Final = 16 * 1024 * 1024
"""At most this many bytes of decoded frames (or half the message limit) per ``Submit`` call."""


class RemoteEngineClient:
    """EngineClient over gRPC to the workers at ``addresses`` (:func:`worker_target`: several
    ``host:port``, or one gRPC target such as ``dns:///workers:50061``). Call :meth:`start` first."""

    def __init__(
        self,
        addresses: Sequence[str],
        *,
        max_message_bytes: int = DEFAULT_WORKER_MESSAGE_BYTES,
        call_timeout_s: float = 30.0,
        clip_chunk_frames: int = 1,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        if clip_chunk_frames < 1:
            raise ValueError("clip chunks need at least one frame")
        target, tls_name = worker_target(addresses), worker_tls_name(addresses)
        self.workers = WorkerChannel(target, max_message_bytes, call_timeout_s, credentials, tls_name)
        self._clip_chunk_frames = clip_chunk_frames
        self._clip_chunk_bytes = min(CLIP_CHUNK_BYTES, max_message_bytes // 2)
        self._models: list[ModelInfo] | None = None
        self._components: list[ModelInfo] = []
        self._models_fetched_at = 0.0

    async def start(self) -> None:
        """Connect: wait up to ``START_WAIT_S`` for a serving worker (the channel keeps resolving, connecting and
        health-checking in the background; a gateway may start before its workers)."""
        await self.workers.wait_ready(START_WAIT_S)

    async def aclose(self) -> None:
        await self.workers.aclose()

    async def submit(self, work: Work) -> AsyncGenerator[Progress]:
        """``Submit`` calls: frames in hand run privately on one worker in one call; any other private work runs in
        a private worker stream (:func:`~service.engine.work.in_private_stream`); frames for a named stream go as
        they are (an encoded clip as its bytes), an async source in chunks, and closing is one call more."""
        if work.stream is None:
            steps = self._call_submit(work) if isinstance(work.frames, Sequence) else in_private_stream(self, work)
            async with contextlib.aclosing(steps):
                async for step in steps:
                    yield step
            return
        if not (work.chunk_frames or isinstance(work.frames, Sequence)):  # a clip: the worker's steps, as chunks here
            work = replace(work, chunk_frames=self._clip_chunk_frames)
        async for call in self._calls(work):
            async with contextlib.aclosing(self._call_submit(call)) as steps:
                async for step in steps:
                    yield step

    async def _calls(self, work: Work) -> AsyncGenerator[Work]:
        """The calls of work for a named stream: its frames as they are, or an async source's frames in chunks of at
        most ``clip_chunk_frames`` frames / ``clip_chunk_bytes`` bytes; then, to close the stream, one without."""
        if not isinstance(work.frames, AsyncIterable):
            yield replace(work, close=False)
        else:
            chunk: list[Frame] = []
            size = 0
            async for frame in work.frames:
                chunk.append(frame)
                size += _frame_bytes(frame)
                del frame
                if len(chunk) >= self._clip_chunk_frames or size >= self._clip_chunk_bytes:
                    yield replace(work, frames=chunk, close=False)
                    chunk, size = [], 0
            if chunk:
                yield replace(work, frames=chunk, close=False)
        if work.close:
            yield replace(work, frames=[])

    async def _call_submit(self, work: Work) -> AsyncGenerator[Progress]:
        """One ``Submit`` call, its progress as it comes. An encoded clip's call cut short (UNAVAILABLE after it has
        answered, which no retry policy replays) is made again from the first position not answered, at most
        ``RETRY_MAX_ATTEMPTS`` times in a row without progress, each call with what is left of the deadline. A
        refusal is never retried."""
        clip = work.frames if isinstance(work.frames, EncodedClip) else None
        next_position, failures = 0 if clip is None else clip.start, 0
        while True:
            timeout = None if work.deadline is None and work.chunk_timeout_s else self.workers.timeout(work.deadline)
            this = work if clip is None else replace(work, frames=replace(clip, start=next_position))
            if not isinstance(this.frames, Sequence) or len(this.frames) < link.OFF_LOOP_FRAMES:
                request = link.work_to_pb(this)
            else:
                request = await asyncio.to_thread(link.work_to_pb, this)
            call = self.workers.stub.Submit(request, timeout=timeout)
            try:
                async for reply in call:
                    step = _read(link.progress_from_pb, reply)
                    if clip is not None and work.stream is not None:
                        fresh = [r for r in step.results if r.frame_index >= next_position]
                        if fresh:
                            next_position, failures = max(r.frame_index for r in fresh) + 1, 0
                        step = replace(step, results=fresh)
                    yield step
                return
            except grpc.aio.AioRpcError as exc:
                error = error_from_rpc(exc)
                failures += 1
                retryable = clip is not None and work.stream is not None and isinstance(error, Unavailable)
                if not retryable or failures >= RETRY_MAX_ATTEMPTS:
                    raise error from exc
            finally:
                call.cancel()  # closed early (the caller left): the worker stops at once

    async def _stream_call(self, op: wpb.StreamCall.Op, stream_id: str, **kw: Any) -> wpb.StreamReply:
        reply: wpb.StreamReply = await self.workers.call("Stream", wpb.StreamCall(op=op, stream_id=stream_id, **kw))
        return reply

    async def open_stream(self, options: EstimateOptions, stream_id: str | None = None) -> StreamInfo:
        options_pb = link.options_to_pb(options)
        return _read(
            link.stream_from_pb, await self._stream_call(wpb.StreamCall.OP_OPEN, stream_id or "", options=options_pb)
        )

    async def close_stream(self, stream_id: str) -> list[FrameResult]:
        return _read(link.results_from_pb, (await self._stream_call(wpb.StreamCall.OP_CLOSE, stream_id)).tail)

    async def get_stream(self, stream_id: str) -> StreamInfo:
        return _read(link.stream_from_pb, await self._stream_call(wpb.StreamCall.OP_GET, stream_id))

    async def models(self) -> list[ModelInfo]:
        """The workers' models, cached for ``MODELS_TTL_S`` (the gateway resolves a model on every request;
        workers of one deployment serve the same model set). A stale list is used while no worker answers."""
        now = time.monotonic()
        if self._models is not None and now - self._models_fetched_at < MODELS_TTL_S:
            return self._models
        try:
            reply = await self.workers.call("Describe", wpb.DescribeRequest())
        except Unavailable:
            if self._models is None:
                raise
            return self._models
        self._models = [link.model_from_pb(m) for m in reply.models]
        self._components = [link.model_from_pb(m) for m in reply.components]
        self._models_fetched_at = now
        return self._models

    async def components(self) -> list[ModelInfo]:
        """The workers' detectors, from the same (cached) ``Describe`` reply as :meth:`models`."""
        await self.models()
        return list(self._components)

    async def ready(self) -> ReadyStatus:
        """Ready while the channel is READY (some worker connected and SERVING); ``detail`` names its state."""
        state = self.workers.state()
        ready = state is grpc.ChannelConnectivity.READY
        word = "serving" if ready else "not serving"
        detail = {f"worker {self.workers.target}": f"{word} (channel {state.name.lower()})"}
        return ReadyStatus(ready=ready, detail=detail)


def _read(convert: Callable[[Any], T], reply: Any) -> T:
    """``convert(reply)``, a worker's reply read by the link's codec; one it refuses (another version's, or broken)
    is the service's fault (InternalError), not the caller's invalid input."""
    try:
        return convert(reply)
    except ValueError as exc:
        raise InternalError(f"a worker's reply could not be read: {exc}") from exc


def _frame_bytes(frame: Frame) -> int:
    """Roughly what ``frame`` weighs on the wire."""
    if isinstance(frame, KeypointFrame):
        return 256
    return len(frame.image) if isinstance(frame.image, bytes) else int(frame.image.nbytes)
