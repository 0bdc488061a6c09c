# ruff: noqa: N802  (gRPC method names are fixed by the proto)
"""Jobs over gRPC (``pose3d.v1.Pose3D``: SubmitJob, GetJob, WatchJob, CancelJob): a mixin of the public servicer,
backed by the same store and runner as ``/v1/jobs`` (the app's, given to the servicer once the app is built)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

from service.api.jobs import JobStatus, clip_job, keypoints_job
from service.api.validation import safe_request_id
from service.config import GatewaySettings
from service.engine.types import EngineClient
from service.errors import BadRequest, Unavailable
from service.gateway.jobs.results import checked_job_id, pages
from service.gateway.jobs.runner import Jobs, cancel_owned, create_job
from service.gateway.messages import to_message
from service.jobs.store import JobRecord
from service.metrics import Metrics
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.rpc.handlers import Context, observed_call, unary
from service.security.door import owned_job


def job_pb(record: JobRecord) -> pb.Job:
    """The job's status (the REST ``JobStatus``) as the gRPC message; its problem document travels as JSON text."""
    status = JobStatus.of(record).model_dump(mode="json")
    return to_message({**status, "error_json": "" if status["error"] is None else json.dumps(status["error"])}, pb.Job)


def frames_pb(docs: list[bytes]) -> list[pb.FrameResult]:
    """Stored frames (the REST ``Frame`` JSON) as gRPC messages: CPU work, called on a thread."""
    return [to_message(json.loads(doc), pb.FrameResult) for doc in docs]


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
        return job_pb(await cancel_owned(self._jobs(), request.job_id))

    async def WatchJob(self, request: pb.WatchJobRequest, context: Context) -> AsyncIterator[pb.WatchJobResponse]:
        async with observed_call(self.metrics, "grpc.WatchJob", context):
            async for msg in self._watch(request):
                yield msg

    async def _watch(self, request: pb.WatchJobRequest) -> AsyncIterator[pb.WatchJobResponse]:
        store = self._jobs().store
        await owned_job(store, checked_job_id(request.job_id))
        after = request.after if request.HasField("after") else None
        async for page in pages(store, request.job_id, after, self.settings.jobs.poll_interval_s):
            for frame in await asyncio.to_thread(frames_pb, page):  # converted off the event loop
                yield pb.WatchJobResponse(frame=frame)
        yield pb.WatchJobResponse(status=job_pb(await store.get(request.job_id)))
