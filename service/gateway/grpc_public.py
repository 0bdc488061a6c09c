# ruff: noqa: N802  (gRPC method names are fixed by the proto)
"""The public ``pose3d.v1.Pose3D`` servicer: the REST API's inputs and results over gRPC, plus streaming and jobs.

``Estimate`` takes the inputs of ``POST /v1/pose3d`` through the same validation and engine calls (the same poses).
``StreamEstimate`` (docs/api.md): at most ``grpc_stream_buffer`` results wait per stream; while the client does not
read them the server stops reading its frames, so a slow reader slows only itself. A cancelled call drops its
buffer; the engine stream stays resumable until it idles out (``engine.stream_ttl_s``).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import asdict, replace
from typing import Final

import grpc

from model.joints import H36M_JOINT_NAMES, JointSet
from service.api.estimate import EstimateContext, estimate_keypoints, estimate_media
from service.api.jobs import JobStatus, clip_job, keypoints_job
from service.api.media import Media, checked_image
from service.api.models import resolve_model
from service.api.schemas import Frame as FrameDocument
from service.api.schemas import ModelOut
from service.api.validation import safe_request_id
from service.config import GatewaySettings, InputKind
from service.engine.stream_ids import known_stream_id
from service.engine.types import EngineClient, Frame, FrameResult, ImageFrame, ModelInfo, WindowMode
from service.engine.windows import WindowSpec
from service.engine.work import close, push
from service.errors import BadRequest, DeadlineExceeded, InvalidInput, Pose3DError, Unavailable
from service.gateway.deps import within
from service.gateway.encoding import PoseAnswer
from service.gateway.grpc_inputs import (
    check_frame_header,
    check_keypoint_count,
    joint_set_of,
    keypoint_frames,
    public_options,
    stream_keypoint_frame,
)
from service.gateway.jobs.results import checked_job_id, pages
from service.gateway.jobs.runner import Jobs, cancel_owned, create_job
from service.gateway.messages import to_message
from service.jobs.store import JobRecord
from service.metrics import Metrics
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.proto_gen.pose3d.v1 import pose3d_pb2_grpc
from service.rpc.handlers import Context, as_service_error, deadline_of, observed_call, unary
from service.security import door
from service.security.door import owned_job
from service.security.guard import Security
from service.telemetry.context import request_id

EngineGetter = Callable[[], EngineClient]  # the engine, or Unavailable while it is loading

_END: Final = object()


class Pose3DServicer(pose3d_pb2_grpc.Pose3DServicer):
    def __init__(self, settings: GatewaySettings, metrics: Metrics, engine: EngineGetter, security: Security) -> None:
        self.settings = settings
        self.metrics = metrics
        self._engine = engine
        self.security = security  # its in-flight bound is the one REST counts against too
        self.open_calls = 0  # StreamEstimate calls in progress (pose3d_active_streams is the engine's count)
        self.stopping = False  # set before the server stops: a request stream that ends now is not a half-close
        self.jobs: Jobs | None = None  # the app's (``app.state.jobs``): REST's store and runner, given once it is built

    # ---- unary ------------------------------------------------------------------------------------------------

    @unary("grpc.Estimate")
    async def Estimate(self, request: pb.EstimateRequest, context: Context) -> pb.EstimateResponse:
        started = time.perf_counter()
        engine = self._engine()
        try:
            self.security.in_flight.acquire()
        except Pose3DError as busy:
            self.metrics.rejected_total.labels(busy.type_slug).inc()
            raise
        deadline = deadline_of(context, self.settings.engine.request_timeout_s)
        assert deadline is not None
        try:
            async with within(deadline - time.monotonic(), "the request did not complete within its deadline"):
                response = await self._estimate(engine, request, deadline)
        finally:
            self.security.in_flight.release()
        response.timings_ms["total"] = (time.perf_counter() - started) * 1000.0
        return response

    async def _estimate(
        self, engine: EngineClient, request: pb.EstimateRequest, deadline: float
    ) -> pb.EstimateResponse:
        limits = self.settings.limits
        rid = safe_request_id(request.request_id or request_id.get())  # the message's, else the call's
        request_id.set(rid)
        options, every_nth = public_options(request.options, limits)
        ctx = EstimateContext(engine, self.settings, rid, deadline)
        kind = request.WhichOneof("input")
        if kind == "keypoints":
            check_keypoint_count(request.keypoints, limits)  # the frame limit first: no per-frame work past it
            done = await estimate_keypoints(
                ctx, options.model, options, lambda: keypoint_frames(request.keypoints, limits)
            )
        elif kind in ("image", "clip"):
            data: bytes = request.image if kind == "image" else request.clip
            done = await estimate_media(ctx, Media.of(data, kind), options, every_nth)
        else:
            raise BadRequest("EstimateRequest needs one of image, clip or keypoints")
        answer = PoseAnswer(rid, done.model, done.box_source, done.frames, done.timings_ms, options.camera)
        # the REST document as the gRPC message: CPU work in proportion to the frames, off the event loop
        return await asyncio.to_thread(lambda: to_message(answer.to_document(), pb.EstimateResponse))

    @unary("grpc.ListModels")
    async def ListModels(self, request: pb.ListModelsRequest, context: Context) -> pb.ListModelsResponse:
        engine = self._engine()
        models, components = await engine.models(), await engine.components()
        return pb.ListModelsResponse(
            models=[_model_info(m) for m in models],
            components=[_model_info(c) for c in components],
        )

    # ---- bidirectional stream -----------------------------------------------------------------------------------

    async def StreamEstimate(
        self, requests: AsyncIterator[pb.StreamEstimateRequest], context: Context
    ) -> AsyncIterator[pb.StreamEstimateResponse]:
        self.open_calls += 1
        try:
            async with observed_call(self.metrics, "grpc.StreamEstimate", context):
                async for response in self._stream(requests):
                    yield response
        finally:
            self.open_calls -= 1

    async def _stream(
        self, requests: AsyncIterator[pb.StreamEstimateRequest]
    ) -> AsyncIterator[pb.StreamEstimateResponse]:
        try:
            first = await asyncio.wait_for(anext(aiter(requests), None), self.settings.grpc_open_timeout_s)
        except TimeoutError:
            raise DeadlineExceeded(
                f"no `open` message within {self.settings.grpc_open_timeout_s:g} s of the call's start"
            ) from None
        if first is None or first.WhichOneof("message") != "open":
            raise BadRequest("the first StreamEstimate message must be `open`")
        engine = self._engine()
        opened, joint_set = await self._open(engine, first.open)
        yield pb.StreamEstimateResponse(opened=opened)
        queue: asyncio.Queue[object] = asyncio.Queue(maxsize=self.settings.grpc_stream_buffer)
        pump = asyncio.create_task(
            self._pump(engine, opened.stream_id, joint_set, requests, queue, explicit_close=first.open.explicit_close)
        )
        watch = asyncio.create_task(self._revocation(engine, opened.stream_id, pump, queue))
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, FrameResult)
                yield pb.StreamEstimateResponse(result=to_message(FrameDocument.of(item).model_dump(), pb.FrameResult))
        finally:
            watch.cancel()
            pump.cancel()
            await asyncio.gather(pump, watch, return_exceptions=True)

    async def _revocation(
        self, engine: EngineClient, stream_id: str, pump: asyncio.Task[None], queue: asyncio.Queue[object]
    ) -> None:
        """When the caller's key is revoked: stop reading, close its engine stream, end the call UNAUTHENTICATED."""
        error = await door.revoked(self.security, door.caller())
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
        await close(engine, stream_id)
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(error)

    async def _open(self, engine: EngineClient, msg: pb.StreamOpen) -> tuple[pb.StreamOpened, JointSet]:
        asked, _ = public_options(msg.options, self.settings.limits)
        joint_set = joint_set_of(msg.joint_set)
        if msg.stream_id:  # resume: its options stand
            info = await engine.get_stream(known_stream_id(msg.stream_id, "the server's `opened` message"))
        else:
            model = await resolve_model(engine, asked.model or self.settings.default_model(InputKind.CLIP))
            options = replace(asked, model=model.name)
            info = await engine.open_stream(options, stream_id=secrets.token_urlsafe(24))
        model = await resolve_model(engine, info.model)
        lag = 0 if info.mode is WindowMode.CAUSAL else WindowSpec(model.frames, model.stride).lag_right
        lag += info.smoothing_lag_frames  # its own smoothing's, a resumed stream's too (it keeps its options)
        fields = {**asdict(info), "lag_frames": lag, "joint_names": list(H36M_JOINT_NAMES)}
        opened = to_message({**fields, "model_info": ModelOut.of(model).model_dump()}, pb.StreamOpened)
        return opened, joint_set

    async def _frame(self, msg: pb.StreamFrame, joint_set: JointSet) -> Frame:
        limits = self.settings.limits
        kind = msg.WhichOneof("data")
        if kind == "keypoints":
            if msg.detect_people:
                raise InvalidInput("detect_people is for image frames: keypoint frames skip the person detector")
            return stream_keypoint_frame(msg, joint_set, limits)
        if kind != "image" or not msg.image:
            raise InvalidInput("a stream frame carries an encoded image or one person's keypoints")
        index, timestamp = check_frame_header(msg)
        image = checked_image(msg.image, limits)
        return ImageFrame(image.data, index, timestamp, detect_people=msg.detect_people)

    async def _pump(
        self,
        engine: EngineClient,
        stream_id: str,
        joint_set: JointSet,
        requests: AsyncIterator[pb.StreamEstimateRequest],
        queue: asyncio.Queue[object],
        *,
        explicit_close: bool = False,
    ) -> None:
        """Read frames, push each, queue its results (blocking while the queue is full); flush and close the stream
        at a `close` message, or at a half-close unless ``explicit_close`` (then the stream stays to be resumed)."""
        timeout = self.settings.engine.request_timeout_s
        closing = False
        try:
            async for msg in requests:
                if closing := msg.WhichOneof("message") == "close":
                    break
                if msg.WhichOneof("message") != "frame":
                    raise BadRequest("after `open`, every StreamEstimate message must be a `frame` or `close`")
                await door.admit_frame(self.security)  # every frame draws from the key's bucket
                frame = await self._frame(msg.frame, joint_set)
                for result in await push(engine, stream_id, [frame], time.monotonic() + timeout):
                    await queue.put(result)
            if self.stopping and not closing:  # the server's stop ended the call (grpc may end it as a half-close)
                raise asyncio.CancelledError("the gateway is stopping; the stream stays to be resumed")
            if closing or not explicit_close:  # a cancelled call can end its requests as a half-close does
                for result in await engine.close_stream(stream_id):
                    await queue.put(result)
            await queue.put(_END)
        except grpc.aio.AbortError as aborted:  # a frame that is not protobuf: its decoder already ended the call
            await queue.put(aborted)
        except Exception as exc:  # a cancellation (BaseException) passes: it ends the pump
            await queue.put(exc if isinstance(exc, Pose3DError) else as_service_error(exc, "grpc.StreamEstimate"))

    # ---- jobs: SubmitJob, GetJob, WatchJob, CancelJob on the store and runner of /v1/jobs --------------------------

    def _jobs(self) -> Jobs:
        jobs = self.jobs
        if jobs is None:
            raise Unavailable("jobs are not available yet (the gateway is starting)", retry_after_s=1.0)
        return jobs

    @unary("grpc.SubmitJob")
    async def SubmitJob(self, request: pb.SubmitJobRequest, context: Context) -> pb.Job:
        engine, jobs = self._engine(), self._jobs()
        rid = safe_request_id(request_id.get())  # the call's (x-request-id, or the one it was given)
        which = request.WhichOneof("input")
        if which == "clip":
            record = await clip_job(self.settings, engine, request.clip, dict(request.fields), rid)
            return job_pb(await create_job(jobs, record, request.clip))
        if which == "keypoints_json":
            raw = request.keypoints_json.encode()
            return job_pb(await create_job(jobs, await keypoints_job(self.settings, engine, raw, rid), raw))
        raise BadRequest("SubmitJob needs `clip` or `keypoints_json`")

    @unary("grpc.GetJob")
    async def GetJob(self, request: pb.GetJobRequest, context: Context) -> pb.Job:
        return job_pb(await owned_job(self._jobs().store, checked_job_id(request.job_id)))

    @unary("grpc.CancelJob")
    async def CancelJob(self, request: pb.CancelJobRequest, context: Context) -> pb.Job:
        return job_pb(await cancel_owned(self._jobs(), request.job_id))

    async def WatchJob(self, request: pb.WatchJobRequest, context: Context) -> AsyncIterator[pb.WatchJobResponse]:
        async with observed_call(self.metrics, "grpc.WatchJob", context):
            async for msg in door.until_revoked(self.security, door.caller(), self._watch(request)):
                yield msg

    async def _watch(self, request: pb.WatchJobRequest) -> AsyncGenerator[pb.WatchJobResponse]:
        store = self._jobs().store
        await owned_job(store, checked_job_id(request.job_id))
        after = request.after if request.HasField("after") else None
        async for page in pages(store, request.job_id, after, self.settings.jobs.poll_interval_s):
            for frame in await asyncio.to_thread(frames_pb, page):  # converted off the event loop
                yield pb.WatchJobResponse(frame=frame)
        yield pb.WatchJobResponse(status=job_pb(await store.get(request.job_id)))


def job_pb(record: JobRecord) -> pb.Job:
    """The job's status (the REST ``JobStatus``) as the gRPC message; its problem document travels as JSON text."""
    status = JobStatus.of(record).model_dump(mode="json")
    return to_message({**status, "error_json": "" if status["error"] is None else json.dumps(status["error"])}, pb.Job)


def frames_pb(docs: list[bytes]) -> list[pb.FrameResult]:
    """Stored frames (the REST ``Frame`` JSON) as gRPC messages: CPU work, called on a thread."""
    return [to_message(json.loads(doc), pb.FrameResult) for doc in docs]


def _model_info(info: ModelInfo) -> pb.ModelInfo:
    return to_message(ModelOut.of(info).model_dump(), pb.ModelInfo)
