"""RemoteEngineClient: the EngineClient protocol over ``pose3d.worker.v1`` to a list of workers.

Which worker takes a call is gRPC's business (:class:`~service.rpc.workers.WorkerChannel`: one channel,
``round_robin`` over health-checked backends, UNAVAILABLE retried by the channel's retry policy; no stickiness,
since stream state lives in the frame buffer); this module maps EngineClient calls to Worker calls:

- **Clips** travel encoded: an :class:`~service.engine.types.EncodedClip` goes as its container bytes in one
  ``PushClip`` call into a private worker stream (Redis-backed in a deployment), and the worker decodes it in its
  decode stage, sending each step's results back as it completes. A call cut short (its worker died: UNAVAILABLE
  after results were sent, which no retry policy replays) is made again — the channel picks a serving worker —
  from the first position not answered yet, carrying the clip again; the stream carries on there.
  A clip given as decoded frames (an async source) goes in ``PushFrames`` chunks (at most ``clip_chunk_frames``
  frames / ``clip_chunk_bytes`` bytes per call, one call at a time), each retried elsewhere like any frame.
- **Visibility**: ``ready()`` is the channel's connectivity state (READY while some worker serves), named in
  ``/readyz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import replace
from typing import Final

import grpc

from service.config import DEFAULT_WORKER_MESSAGE_BYTES
from service.engine.types import (
    ClipProgress,
    ClipRequest,
    ClipResult,
    EncodedClip,
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
from service.errors import Pose3DError, Unavailable
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.proto_gen.pose3d.v1 import worker_pb2 as wpb
from service.rpc import codec
from service.rpc.status import error_from_rpc
from service.rpc.workers import (
    RETRY_MAX_ATTEMPTS,
    WORKER_SERVICE_CONFIG,
    WorkerChannel,
    worker_target,
    worker_tls_name,
)

__all__ = ["MODELS_TTL_S", "WORKER_SERVICE_CONFIG", "RemoteEngineClient"]

MODELS_TTL_S: Final = 10.0
START_WAIT_S: Final = 2.0


class RemoteEngineClient:
    """EngineClient over gRPC to the workers at ``addresses`` (:func:`~service.rpc.workers.worker_target`: several
    ``host:port``, or one gRPC target such as ``dns:///workers:50061``). Call :meth:`start` first."""

    def __init__(
        self,
        addresses: Sequence[str],
        *,
        max_message_bytes: int = DEFAULT_WORKER_MESSAGE_BYTES,
        call_timeout_s: float = 30.0,
        clip_chunk_frames: int = 1,
        clip_chunk_bytes: int = 16 * 1024 * 1024,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        if clip_chunk_frames < 1 or clip_chunk_bytes < 1:
            raise ValueError("clip chunks need at least one frame and one byte")
        target, tls_name = worker_target(addresses), worker_tls_name(addresses)
        self.workers = WorkerChannel(target, max_message_bytes, call_timeout_s, credentials, tls_name)
        self._call = self.workers.call
        self._clip_chunk_frames = clip_chunk_frames
        self._clip_chunk_bytes = min(clip_chunk_bytes, max_message_bytes // 2)
        self._models: list[ModelInfo] | None = None
        self._components: list[ModelInfo] = []
        self._models_fetched_at = 0.0

    async def start(self) -> None:
        """Connect: wait up to ``START_WAIT_S`` for a serving worker (the channel keeps resolving, connecting and
        health-checking in the background; a gateway may start before its workers)."""
        await self.workers.wait_ready(START_WAIT_S)

    async def aclose(self) -> None:
        await self.workers.aclose()

    # ---- EngineClient -------------------------------------------------------------------------------------------

    async def estimate(self, request: EstimateRequest) -> EstimateResult:
        message = wpb.WorkerEstimateRequest(
            request_id=request.request_id,
            frames=[codec.frame_to_pb(f) for f in request.frames],
            options=codec.options_to_pb(request.options),
        )
        reply = await self._call("Estimate", message, request.deadline)
        return codec.estimate_result_from_pb(reply)

    async def open_stream(self, options: EstimateOptions, stream_id: str | None = None) -> StreamInfo:
        message = wpb.OpenStreamRequest(options=codec.options_to_pb(options), stream_id=stream_id or "")
        return codec.stream_info_from_pb(await self._call("OpenStream", message))

    async def push_frame(self, stream_id: str, frame: Frame, deadline: float | None = None) -> list[FrameResult]:
        message = wpb.PushFrameRequest(stream_id=stream_id, frame=codec.frame_to_pb(frame))
        reply = await self._call("PushFrame", message, deadline)
        return codec.frame_results_from_pb(reply)

    async def push_frames(
        self, stream_id: str, frames: Sequence[Frame], deadline: float | None = None
    ) -> list[FrameResult]:
        if not frames:
            return []
        message = wpb.PushFramesRequest(stream_id=stream_id, frames=[codec.frame_to_pb(f) for f in frames])
        reply = await self._call("PushFrames", message, deadline)
        return codec.frame_results_from_pb(reply)

    async def estimate_clip(self, request: ClipRequest) -> ClipResult:
        """The clip as a private worker stream: an encoded clip goes as its bytes (``PushClip``: the worker
        decodes it); frames from an async source are fed in chunks (``PushFrames``). Closed on error too."""
        if isinstance(request.frames, EncodedClip):
            return await self._estimate_encoded_clip(request, request.frames)
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

    async def push_clip(
        self, stream_id: str, clip: EncodedClip, chunk_frames: int, chunk_timeout_s: float
    ) -> AsyncGenerator[ClipProgress]:
        """``PushClip`` to the stream's worker: the clip's encoded bytes go once per call and the worker decodes
        them. A call cut short because its worker is gone or busy is made again on another worker from the first
        position not answered yet (frames are keyed by index: those the stream holds are answered again, and
        results already yielded are dropped)."""
        steps = self._push_clip(stream_id, clip, chunk_frames, chunk_timeout_s, None)
        async with contextlib.aclosing(steps):
            async for step in steps:
                yield step

    async def _push_clip(
        self, stream_id: str, clip: EncodedClip, chunk_frames: int, chunk_timeout_s: float, deadline: float | None
    ) -> AsyncGenerator[ClipProgress]:
        """:meth:`push_clip` within ``deadline`` (a ``time.monotonic()`` instant; None: no overall deadline).

        A call that fails UNAVAILABLE (not a refusal) is made again from the first position not answered yet, at
        most ``RETRY_MAX_ATTEMPTS`` times in a row without progress; any other failure is raised as it is."""
        next_position, failures = clip.start, 0
        while True:
            request = wpb.PushClipRequest(
                stream_id=stream_id,
                clip=codec.clip_to_pb(replace(clip, start=next_position)),
                chunk_frames=chunk_frames,
                chunk_timeout_s=chunk_timeout_s,
            )
            timeout = None if deadline is None else self.workers.timeout(deadline)
            try:
                async for reply in self.workers.stub.PushClip(request, timeout=timeout):
                    step = codec.clip_progress_from_pb(reply)
                    fresh = [r for r in step.results if r.frame_index >= next_position]
                    if fresh:
                        next_position = max(r.frame_index for r in fresh) + 1
                        failures = 0  # progress: the next failure starts a fresh count
                    yield ClipProgress(fresh, step.frames_decoded)
                return
            except grpc.aio.AioRpcError as exc:
                error = error_from_rpc(exc)
                failures += 1
                if not isinstance(error, Unavailable) or failures >= RETRY_MAX_ATTEMPTS:
                    raise error from exc

    async def _estimate_encoded_clip(self, request: ClipRequest, clip: EncodedClip) -> ClipResult:
        """An encoded clip as a private worker stream fed by ``PushClip``, then closed (closed on error too)."""
        started = time.monotonic()
        stream_id = "clip-" + secrets.token_urlsafe(18)
        info = await self.open_stream(request.options, stream_id=stream_id)
        results: list[FrameResult] = []
        open_ = True
        chunk_timeout = self.workers.call_timeout_s
        try:
            steps = self._push_clip(stream_id, clip, self._clip_chunk_frames, chunk_timeout, request.deadline)
            async with contextlib.aclosing(steps):
                async for step in steps:
                    results += step.results
            open_ = False
            results += await self.close_stream(stream_id)
        finally:
            if open_:
                with contextlib.suppress(Pose3DError):
                    await asyncio.shield(self.close_stream(stream_id))
        frames = [FrameResult(clip.source_index(r.frame_index), r.timestamp_s, r.people) for r in results]
        timings = {"total": round((time.monotonic() - started) * 1000.0, 3)}
        return ClipResult(request.request_id, info.model, frames, timings)

    async def close_stream(self, stream_id: str) -> list[FrameResult]:
        reply = await self._call("CloseStream", wpb.StreamRef(stream_id=stream_id))
        return codec.frame_results_from_pb(reply)

    async def get_stream(self, stream_id: str) -> StreamInfo:
        reply = await self._call("GetStream", wpb.StreamRef(stream_id=stream_id))
        return codec.stream_info_from_pb(reply)

    async def models(self) -> list[ModelInfo]:
        """The workers' models, cached for ``MODELS_TTL_S`` (the gateway resolves a model on every request;
        workers of one deployment serve the same model set). A stale list is used while no worker answers."""
        now = time.monotonic()
        if self._models is not None and now - self._models_fetched_at < MODELS_TTL_S:
            return self._models
        try:
            reply = await self._call("Models", pb.ListModelsRequest())
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
        """Ready while the channel is READY (some worker connected and SERVING); ``detail`` names its state."""
        state = self.workers.state()
        ready = state is grpc.ChannelConnectivity.READY
        word = "serving" if ready else "not serving"
        detail = {f"worker {self.workers.target}": f"{word} (channel {state.name.lower()})"}
        return ReadyStatus(ready=ready, detail=detail)


def _frame_bytes(frame: Frame) -> int:
    """Roughly what ``frame`` weighs on the wire."""
    if isinstance(frame, KeypointFrame):
        return 256
    return len(frame.image) if isinstance(frame.image, bytes) else int(frame.image.nbytes)
