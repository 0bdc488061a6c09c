"""Jobs over gRPC (SubmitJob, GetJob, WatchJob, CancelJob) on a real grpc.aio server, tiny random models, the
job store in memory: the same jobs, frames and states as /v1/jobs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from service.engine.inprocess import build_engine
from service.engine.types import EngineClient
from service.gateway.grpc_server import PublicGrpcServer
from service.gateway.jobs.runner import JobRunner, Jobs
from service.jobs.memory import MemoryJobStore
from service.metrics import Metrics
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.proto_gen.pose3d.v1 import pose3d_pb2_grpc
from tests.service.media_samples import encode_clip
from tests.service.rest_support import tiny_settings


@pytest.fixture
async def stub() -> AsyncIterator[Any]:
    settings = tiny_settings()
    metrics = Metrics()
    engine: EngineClient = await build_engine(settings, metrics)
    store = MemoryJobStore(60.0)
    runner = JobRunner(store, settings, lambda: engine)
    runner.start()
    public = PublicGrpcServer(settings, metrics)
    public.servicer.jobs = Jobs(store, runner)
    port = await public.start()
    public.engine = engine
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield pose3d_pb2_grpc.Pose3DStub(channel)  # type: ignore[no-untyped-call]
    await channel.close()
    await public.stop(0)
    await runner.aclose()
    await engine.aclose()


async def watch(stub: Any, job_id: str, after: int | None = None) -> tuple[list[pb.FrameResult], pb.Job]:
    request = pb.WatchJobRequest(job_id=job_id) if after is None else pb.WatchJobRequest(job_id=job_id, after=after)
    frames: list[pb.FrameResult] = []
    final = None
    async for msg in stub.WatchJob(request):
        if msg.WhichOneof("message") == "frame":
            frames.append(msg.frame)
        else:
            final = msg.status
    assert final is not None
    return frames, final


async def test_keypoint_and_clip_jobs_over_grpc(stub: Any) -> None:
    pose = [[320.0 + 4 * j, 180.0 + 10 * j, 0.9] for j in range(17)]
    body = json.dumps({"keypoints_2d": [pose] * 30, "image_size": [640, 480], "model": "pstmo-9"})
    job = await stub.SubmitJob(pb.SubmitJobRequest(keypoints_json=body))
    assert job.state == "queued"
    assert job.frames_total == 30
    frames, final = await watch(stub, job.job_id)
    assert [f.frame_index for f in frames] == list(range(30))
    assert len(frames[0].people[0].keypoints_3d) == 51
    assert final.state == "done"
    assert final.frames_done == 30
    tail, _ = await watch(stub, job.job_id, after=26)
    assert [f.frame_index for f in tail] == [27, 28, 29]
    assert (await stub.GetJob(pb.GetJobRequest(job_id=job.job_id))).state == "done"

    clip_job = await stub.SubmitJob(pb.SubmitJobRequest(clip=encode_clip(frames=6), fields={"mode": "causal"}))
    frames, final = await watch(stub, clip_job.job_id)
    assert final.state == "done"
    assert [f.frame_index for f in frames] == list(range(6))
    assert (await stub.CancelJob(pb.CancelJobRequest(job_id=clip_job.job_id))).state == "done"


async def test_job_errors_are_status_codes(stub: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.GetJob(pb.GetJobRequest(job_id="A" * 24))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as empty:
        await stub.SubmitJob(pb.SubmitJobRequest())
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as bad_field:
        await stub.SubmitJob(pb.SubmitJobRequest(clip=encode_clip(frames=3), fields={"nope": "1"}))
    assert bad_field.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    cancelled = await stub.SubmitJob(pb.SubmitJobRequest(clip=encode_clip(frames=12)))
    assert (await stub.CancelJob(pb.CancelJobRequest(job_id=cancelled.job_id))).state == "cancelled"
    _, final = await watch(stub, cancelled.job_id)
    assert final.state == "cancelled"
