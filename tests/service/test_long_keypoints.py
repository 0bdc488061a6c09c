"""A keypoint sequence longer than the engine's queue is admitted in bounded chunks (never a 429 that no retry
can satisfy), with the results of the whole sequence run at once; 5 000 and 20 000 frames (the default
``limits.max_clip_frames``) succeed on an idle service over REST and gRPC, and one frame more gets the limit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import uvicorn

from service.client.results import estimate_json
from service.config import EngineSettings, GatewaySettings, LimitSettings
from service.engine.inprocess import build_engine
from service.gateway.app import create_app
from service.gateway.grpc_server import PublicGrpcServer
from service.metrics import Metrics
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.proto_gen.pose3d.v1 import pose3d_pb2_grpc
from service.rpc.server import channel_options
from tests.conftest import free_port
from tests.service.jobs_support import assert_same_frames
from tests.service.rest_support import assert_problem, live_server, tiny_settings

FRAMES = 150


def body(frames: int = FRAMES) -> dict[str, Any]:
    poses = [[[320.0 + 4 * j + t % 97, 180.0 + 10 * j, 0.9] for j in range(17)] for t in range(frames)]
    return {"keypoints_2d": poses, "image_size": [640, 480], "model": "pstmo-9"}


def post(max_queue: int) -> dict[str, Any]:
    engine = EngineSettings(max_batch_size=16, max_delay_ms=2.0, request_timeout_s=600.0, max_queue=max_queue)
    with live_server(tiny_settings(engine=engine)) as live, live.client(timeout_s=600) as client:
        response = client.post("/v1/pose3d", json=body())
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def test_a_sequence_longer_than_the_queue_is_run_in_chunks() -> None:
    chunked = post(max_queue=40)  # 150 frames > 40: pushed 20 at a time through a private stream
    whole = post(max_queue=1024)  # one engine.estimate
    assert len(chunked["frames"]) == FRAMES
    assert chunked["box_source"] == whole["box_source"] == "keypoints"
    assert chunked["model"] == whole["model"]
    assert_same_frames(chunked["frames"], whole["frames"])


# ---- 5 000 and 20 000 frames, REST and gRPC, one idle service ---------------------------------------------------

MAX_FRAMES = 20_000


def long_settings() -> GatewaySettings:
    """The default frame and body limits (20 000 frames, 64 MiB) and queue (1 024); tiny P-STMO over 9 frames,
    in batches of 256 windows."""
    engine = EngineSettings(max_batch_size=256, max_delay_ms=2.0, request_timeout_s=3600.0)
    limits = LimitSettings(max_clip_frames=MAX_FRAMES, max_clip_seconds=1200.0)
    return tiny_settings(engine=engine, limits=limits, port=free_port(), grpc_port=free_port())


class Service:
    """REST (uvicorn) and gRPC on this event loop, over one in-process engine."""

    def __init__(self, rest: str, grpc_address: str) -> None:
        self.rest, self.grpc_address = rest, grpc_address

    async def post(self, document: dict[str, Any]) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.rest, timeout=3600) as client:
            return await client.post("/v1/pose3d", json=document)

    async def estimate(self, document: dict[str, Any]) -> pb.EstimateResponse:
        keypoints = pb.KeypointsInput(image_width=640, image_height=480)
        for pose in np.asarray(document["keypoints_2d"]):
            keypoints.frames.add(xy=pose[:, :2].ravel().tolist(), scores=pose[:, 2].tolist())
        request = pb.EstimateRequest(keypoints=keypoints, options=pb.Options(model="pstmo-9"))
        async with grpc.aio.insecure_channel(self.grpc_address, options=channel_options(256 * 2**20)) as channel:
            stub = pose3d_pb2_grpc.Pose3DStub(channel)  # type: ignore[no-untyped-call]
            reply: pb.EstimateResponse = await stub.Estimate(request, timeout=3600)
            return reply


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    settings = long_settings()
    metrics = Metrics()
    engine = await build_engine(settings, metrics)
    app = create_app(settings, engine=engine, metrics=metrics)
    rest = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_level="warning"))
    serving = asyncio.create_task(rest.serve())
    public = PublicGrpcServer(settings, metrics)
    await public.start()
    public.engine = engine
    try:
        while not rest.started:
            assert not serving.done(), serving
            await asyncio.sleep(0.05)
        yield Service(f"http://127.0.0.1:{settings.port}", f"127.0.0.1:{public.port}")
    finally:
        await public.stop(0)
        rest.should_exit = True
        await serving
        await engine.aclose()


@pytest.mark.slow
@pytest.mark.parametrize("frames", [5_000, MAX_FRAMES])
async def test_long_sequences_succeed_over_rest_and_grpc(service: Service, frames: int) -> None:
    document = body(frames)
    started = time.perf_counter()
    response = await service.post(document)
    took = time.perf_counter() - started
    assert response.status_code == 200, response.text[:500]
    rest = response.json()
    print(f"{frames} frames over REST: {took:.1f} s (timings_ms {rest['timings_ms']})")
    assert [f["frame_index"] for f in rest["frames"]] == list(range(frames))
    assert all(len(f["people"]) == 1 for f in rest["frames"])
    started = time.perf_counter()
    over_grpc = estimate_json(await service.estimate(document))
    print(f"{frames} frames over gRPC: {time.perf_counter() - started:.1f} s (timings_ms {over_grpc['timings_ms']})")
    assert over_grpc["box_source"] == rest["box_source"] == "keypoints"
    assert_same_frames(over_grpc["frames"], rest["frames"])


async def test_one_frame_past_the_limit_is_refused_with_the_limit(service: Service) -> None:
    document = body(MAX_FRAMES + 1)
    problem = assert_problem(await service.post(document), 413, "payload-too-large")
    assert problem["detail"] == f"{MAX_FRAMES + 1} frames of keypoints; at most {MAX_FRAMES}"
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await service.estimate(document)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == problem["detail"]
