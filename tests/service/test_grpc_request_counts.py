"""``pose3d_requests_total`` on the public gRPC port counts every call under the status it ended with — those
refused before their handler ran (a message that is not protobuf, keypoints past the frame limit, no API key) too,
as REST counts its 400s and 401s."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from service.gateway.grpc_inputs import KEYPOINT_FRAME_WIRE_BYTES
from service.gateway.grpc_server import PublicGrpcServer
from service.metrics import Metrics
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.proto_gen.pose3d.v1 import pose3d_pb2_grpc
from tests.service.grpc_toy_engine import ToyEngine
from tests.service.security_support import make_keys
from tests.service.test_grpc_public import settings
from tests.service.test_security_grpc import serve

GARBAGE = b"\xff\xff\xff\xff\x0f"  # a truncated varint: no message decodes from it


def counts(metrics: Metrics, route: str) -> dict[str, float]:
    """``{code: calls}`` of ``route`` in ``pose3d_requests_total``."""
    return {
        s.labels["code"]: s.value
        for m in metrics.registry.collect()
        for s in m.samples
        if s.name == "pose3d_requests_total" and s.labels.get("route") == route
    }


async def counted(metrics: Metrics, route: str) -> dict[str, float]:
    """The counts of ``route`` once there are any (the server counts a call as its handler returns, which may be
    a moment after the client has its status)."""
    for _ in range(500):
        if found := counts(metrics, route):
            return found
        await asyncio.sleep(0.01)
    return {}


@pytest.fixture
async def public() -> AsyncIterator[PublicGrpcServer]:
    server = PublicGrpcServer(settings(), Metrics())
    await server.start()
    server.engine = ToyEngine()
    yield server
    await server.stop(0)


async def test_a_stream_ended_by_an_undecodable_frame_counts_invalid_argument(public: PublicGrpcServer) -> None:
    """The frame's decoder aborts the call INVALID_ARGUMENT: counted so, not as ABORTED (another gRPC status)."""
    gate = asyncio.Event()

    async def messages() -> AsyncIterator[bytes]:
        yield pb.StreamEstimateRequest(open=pb.StreamOpen()).SerializeToString()
        yield GARBAGE
        await gate.wait()

    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{public.port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                async for _ in channel.stream_stream("/pose3d.v1.Pose3D/StreamEstimate")(messages()):
                    pass
    finally:
        gate.set()
    assert ended.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert await counted(public.metrics, "grpc.StreamEstimate") == {"INVALID_ARGUMENT": 1.0}


async def test_unary_calls_refused_before_their_handler_are_counted(public: PublicGrpcServer) -> None:
    """Not protobuf, or a request past the keypoints bound that is no EstimateRequest (refused from its raw bytes,
    unparsed): INVALID_ARGUMENT, counted under the method's route."""
    bound = public.servicer.settings.limits.max_clip_frames * KEYPOINT_FRAME_WIRE_BYTES + 64 * 1024
    async with grpc.aio.insecure_channel(f"127.0.0.1:{public.port}") as channel:
        estimate = channel.unary_unary("/pose3d.v1.Pose3D/Estimate")
        for raw in (GARBAGE, b"\xff" * (bound + 1)):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await estimate(raw)
            assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        for _ in range(500):
            if counts(public.metrics, "grpc.Estimate").get("INVALID_ARGUMENT") == 2.0:
                break
            await asyncio.sleep(0.01)
        assert counts(public.metrics, "grpc.Estimate") == {"INVALID_ARGUMENT": 2.0}


async def test_calls_refused_for_their_api_key_are_counted(tmp_path: Path) -> None:
    """No key: UNAUTHENTICATED before any message is read — counted (REST counts its 401s)."""
    public = await serve(make_keys(tmp_path))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{public.port}") as channel:
            stub: Any = pose3d_pb2_grpc.Pose3DStub(channel)  # type: ignore[no-untyped-call]
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.ListModels(pb.ListModelsRequest())
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert await counted(public.metrics, "grpc.ListModels") == {"UNAUTHENTICATED": 1.0}
    finally:
        await public.stop(0)
