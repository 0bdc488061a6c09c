"""A request that is not valid protobuf is INVALID_ARGUMENT (grpc.aio alone says UNKNOWN, which clients retry)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc
import pytest

from service.gateway.grpc_server import PublicGrpcServer
from service.metrics import Metrics
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from tests.service.grpc_toy_engine import ToyEngine
from tests.service.test_grpc_public import settings

GARBAGE = b"\xff\xff\xff\xff\x0f"  # a truncated varint: no message decodes from it


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    public = PublicGrpcServer(settings(), Metrics())
    port = await public.start()
    public.engine = ToyEngine()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        yield ch
    await public.stop(0)


async def test_undecodable_unary_and_streaming_requests_are_invalid_argument(channel: grpc.aio.Channel) -> None:
    estimate = channel.unary_unary("/pose3d.v1.Pose3D/Estimate")
    with pytest.raises(grpc.aio.AioRpcError) as unary:
        await estimate(GARBAGE)
    assert unary.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "protobuf" in (unary.value.details() or "")

    async def messages() -> AsyncIterator[bytes]:
        yield GARBAGE

    stream = channel.stream_stream("/pose3d.v1.Pose3D/StreamEstimate")
    with pytest.raises(grpc.aio.AioRpcError) as streaming:
        async for _ in stream(messages()):
            pass
    assert streaming.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    models = channel.unary_unary(
        "/pose3d.v1.Pose3D/ListModels",
        request_serializer=pb.ListModelsRequest.SerializeToString,
        response_deserializer=pb.ListModelsResponse.FromString,
    )
    assert [m.name for m in (await models(pb.ListModelsRequest())).models] == ["toy"]  # valid calls still work


async def test_an_undecodable_frame_after_open_is_the_client_s_mistake_not_a_server_fault(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A frame that is not protobuf, after a valid ``open``, is read by the stream's pump task: its abort must end
    the call as INVALID_ARGUMENT, not be logged and counted as a server fault (INTERNAL)."""
    public = PublicGrpcServer(settings(), Metrics())
    port = await public.start()
    public.engine = ToyEngine()
    gate = asyncio.Event()

    async def messages() -> AsyncIterator[bytes]:
        yield pb.StreamEstimateRequest(open=pb.StreamOpen()).SerializeToString()
        yield GARBAGE
        await gate.wait()  # the client stays connected: the server alone ends the call

    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stream = ch.stream_stream("/pose3d.v1.Pose3D/StreamEstimate")
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                async for _ in stream(messages()):
                    pass
        assert ended.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        counted: dict[str, float] = {}
        for _ in range(100):  # the server counts the call once its handler has returned, a moment later
            counted = {
                s.labels["code"]: s.value
                for m in public.metrics.registry.collect()
                for s in m.samples
                if s.name == "pose3d_requests_total" and s.labels.get("route") == "grpc.StreamEstimate"
            }
            if counted:
                break
            await asyncio.sleep(0.02)
        assert "INTERNAL" not in counted, counted
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    finally:
        gate.set()
        await public.stop(0)
