# ruff: noqa: N802  (gRPC method names are fixed by the proto)
"""``pose3d.worker.v1.Worker``: the EngineClient operations served over gRPC around one engine.

The worker only computes: the gateway has validated the input. Every handler maps service errors to
gRPC status through :mod:`service.rpc.status`; while the engine is still loading every call answers
UNAVAILABLE so the gateway tries another worker.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Final

from model.joints import H36M_JOINT_NAMES
from service.engine.types import EngineClient, EstimateRequest
from service.errors import Unavailable
from service.metrics import Metrics
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.proto_gen.pose3d.v1 import worker_pb2 as wpb
from service.proto_gen.pose3d.v1 import worker_pb2_grpc
from service.rpc import codec
from service.rpc.handlers import Context, deadline_of, observed_call, unary

_CHUNK_TIMEOUT_S: Final = 30.0
"""A PushClip step's time when the request names none."""


class WorkerServicer(worker_pb2_grpc.WorkerServicer):
    """Serves ``engine`` once it is set (``None`` while loading)."""

    def __init__(self, metrics: Metrics, engine: EngineClient | None = None) -> None:
        self.metrics = metrics
        self.engine = engine

    def _engine(self) -> EngineClient:
        if self.engine is None:
            raise Unavailable("worker is loading its models", retry_after_s=1.0)
        return self.engine

    @unary("worker.Estimate")
    async def Estimate(self, request: wpb.WorkerEstimateRequest, context: Context) -> pb.EstimateResponse:
        engine = self._engine()
        estimate = EstimateRequest(
            request_id=request.request_id,
            frames=[codec.frame_from_pb(f) for f in request.frames],
            options=codec.options_from_pb(request.options),
            deadline=deadline_of(context),
        )
        result = await engine.estimate(estimate)
        return codec.estimate_result_to_pb(result, H36M_JOINT_NAMES)

    @unary("worker.OpenStream")
    async def OpenStream(self, request: wpb.OpenStreamRequest, context: Context) -> wpb.StreamInfo:
        info = await self._engine().open_stream(codec.options_from_pb(request.options), request.stream_id or None)
        return codec.stream_info_to_pb(info)

    @unary("worker.PushFrame")
    async def PushFrame(self, request: wpb.PushFrameRequest, context: Context) -> wpb.FrameResults:
        frame = codec.frame_from_pb(request.frame)
        results = await self._engine().push_frame(request.stream_id, frame, deadline_of(context))
        return codec.frame_results_to_pb(results)

    @unary("worker.PushFrames")
    async def PushFrames(self, request: wpb.PushFramesRequest, context: Context) -> wpb.FrameResults:
        frames = [codec.frame_from_pb(f) for f in request.frames]
        results = await self._engine().push_frames(request.stream_id, frames, deadline_of(context))
        return codec.frame_results_to_pb(results)

    async def PushClip(self, request: wpb.PushClipRequest, context: Context) -> AsyncIterator[wpb.ClipProgress]:
        """Decode the clip here and push it into the stream, one message per step (see the proto)."""
        async with observed_call(self.metrics, "worker.PushClip", context):
            clip = codec.clip_from_pb(request.clip)
            chunk = max(1, request.chunk_frames)
            timeout_s = request.chunk_timeout_s if request.chunk_timeout_s > 0 else None
            steps = self._engine().push_clip(request.stream_id, clip, chunk, timeout_s or _CHUNK_TIMEOUT_S)
            async with contextlib.aclosing(steps):  # a cancelled call stops the decoding at once
                async for step in steps:
                    yield codec.clip_progress_to_pb(step)

    @unary("worker.CloseStream")
    async def CloseStream(self, request: wpb.StreamRef, context: Context) -> wpb.FrameResults:
        return codec.frame_results_to_pb(await self._engine().close_stream(request.stream_id))

    @unary("worker.GetStream")
    async def GetStream(self, request: wpb.StreamRef, context: Context) -> wpb.StreamInfo:
        return codec.stream_info_to_pb(await self._engine().get_stream(request.stream_id))

    @unary("worker.Models")
    async def Models(self, request: pb.ListModelsRequest, context: Context) -> pb.ListModelsResponse:
        engine = self._engine()
        return pb.ListModelsResponse(
            models=[codec.model_info_to_pb(m) for m in await engine.models()],
            components=[codec.model_info_to_pb(c) for c in await engine.components()],
        )

    @unary("worker.Ready")
    async def Ready(self, request: wpb.ReadyRequest, context: Context) -> wpb.ReadyResponse:
        if self.engine is None:
            return wpb.ReadyResponse(ready=False, detail={"engine": "loading"})
        return codec.ready_to_pb(await self.engine.ready())
