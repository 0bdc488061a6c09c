"""A request that is not valid protobuf is INVALID_ARGUMENT (grpc.aio alone says UNKNOWN, which clients retry)."""

from __future__ import annotations

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
