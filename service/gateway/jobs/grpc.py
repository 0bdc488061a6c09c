# ruff: noqa: N802  (gRPC method names are fixed by the proto)
"""Jobs over gRPC (``pose3d.v1.Pose3D``: SubmitJob, GetJob, WatchJob, CancelJob): a mixin of the public servicer,
backed by the same store and runner as ``/v1/jobs`` (the app's, given to the servicer once the app is built)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from service.api.validation import safe_request_id
from service.config import GatewaySettings
from service.engine.types import EngineClient
from service.errors import BadRequest, Unavailable
from service.gateway.jobs.results import JobStatus, checked_job_id, first_position_after
from service.gateway.jobs.service import Jobs, clip_job, create_job, keypoints_job
from service.jobs.store import JobRecord, JobState
from service.metrics import Metrics
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.rpc.handlers import Context, observed_call, unary
from service.security.door import owned_job

PAGE = 256


def job_pb(record: JobRecord) -> pb.Job:
    status = JobStatus.of(record)
    msg = pb.Job(
        job_id=status.job_id, state=status.state.value, kind=status.kind, model=status.model,
        frames_done=status.frames_done, attempts=status.attempts,
        error_json="" if status.error is None else json.dumps(status.error),
    )  # fmt: skip
    if status.frames_total is not None:
        msg.frames_total = status.frames_total
    if status.frames_per_second is not None:
        msg.frames_per_second = status.frames_per_second
    if status.eta_s is not None:
        msg.eta_s = status.eta_s
    return msg


def frame_pb(doc: dict[str, Any]) -> pb.FrameResult:
    """A stored frame (the REST ``Frame`` JSON) as the gRPC message (flattened keypoints, see the proto)."""
    people = []
    for p in doc["people"]:
        person = pb.Person(
            track_id=p["track_id"], box=pb.Box(x1=p["box"][0], y1=p["box"][1], x2=p["box"][2], y2=p["box"][3]),
            box_score=p["box_score"], keypoints_2d=[v for xy in p["keypoints_2d"] for v in xy],
            keypoint_scores=p["keypoint_scores"], keypoints_3d=[v for xyz in p["keypoints_3d"] for v in xyz],
            keypoints_3d_camera=[v for xyz in p.get("keypoints_3d_camera") or [] for v in xyz],
            warnings=p.get("warnings", []),
        )  # fmt: skip
        if p.get("distance_m") is not None:
            person.distance_m = p["distance_m"]
        people.append(person)
    msg = pb.FrameResult(frame_index=doc["frame_index"], people=people)
    if doc.get("timestamp_s") is not None:
        msg.timestamp_s = doc["timestamp_s"]
    return msg


def frames_pb(docs: list[bytes]) -> list[pb.FrameResult]:
    """Stored frames (JSON) as gRPC messages: CPU work, called on a thread."""
    return [frame_pb(json.loads(doc)) for doc in docs]


class JobsServicer:
    """SubmitJob / GetJob / WatchJob / CancelJob for :class:`~service.gateway.grpc_public.Pose3DServicer`."""

    settings: GatewaySettings
    metrics: Metrics
    _engine: Callable[[], EngineClient]
    jobs: Jobs | None = None  # the app's (``app.state.jobs``), given once the app is built

    def _jobs(self) -> Jobs:
        jobs = self.jobs
        if jobs is None:
            raise Unavailable("jobs are not available yet (the gateway is starting)", retry_after_s=1.0)
        return jobs

    @unary("grpc.SubmitJob")
    async def SubmitJob(self, request: pb.SubmitJobRequest, context: Context) -> pb.Job:
        engine, jobs = self._engine(), self._jobs()
        rid = safe_request_id(None)
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
        jobs = self._jobs()
        await owned_job(jobs.store, checked_job_id(request.job_id))
        record = await jobs.store.cancel(request.job_id, time.time())
        jobs.runner.cancel_local(request.job_id)
        return job_pb(record)

    async def WatchJob(self, request: pb.WatchJobRequest, context: Context) -> AsyncIterator[pb.WatchJobResponse]:
        async with observed_call(self.metrics, "grpc.WatchJob", context):
            async for msg in self._watch(request):
                yield msg

    async def _watch(self, request: pb.WatchJobRequest) -> AsyncIterator[pb.WatchJobResponse]:
        store = self._jobs().store
        record = await owned_job(store, checked_job_id(request.job_id))
        after = request.after if request.HasField("after") else None
        position = await first_position_after(store, request.job_id, record.frames_done, after)
        while True:
            record = await store.get(request.job_id)
            page = await store.read_frames(request.job_id, position, min(record.frames_done, position + PAGE))
            for frame in await asyncio.to_thread(frames_pb, page):  # converted off the event loop
                yield pb.WatchJobResponse(frame=frame)
            position += len(page)
            if page:
                continue
            if record.state.terminal and position >= record.frames_done:
                yield pb.WatchJobResponse(status=job_pb(record))
                return
            await asyncio.sleep(self.settings.jobs.poll_interval_s)


__all__ = ["JobState", "JobsServicer"]
