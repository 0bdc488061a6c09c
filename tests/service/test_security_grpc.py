"""API keys, ownership and quotas on the public gRPC port (a real grpc.aio server over the toy engine)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from service.config import QuotaSettings
from service.gateway.grpc_server import PublicGrpcServer
from service.metrics import Metrics
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.proto_gen.pose3d.v1 import pose3d_pb2_grpc
from service.security.guard import Security
from service.security.owned_engine import owned
from tests.service.grpc_toy_engine import ToyEngine
from tests.service.security_support import Clock, Keys, make_keys, secured


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path)


async def serve(keys: Keys, quotas: QuotaSettings | None = None, clock: Clock | None = None) -> PublicGrpcServer:
    settings = secured(keys, quotas)
    metrics = Metrics()
    public = PublicGrpcServer(settings, metrics, Security(settings, metrics, clock=clock or Clock()))
    await public.start()
    public.engine = owned(ToyEngine(), public.security)
    return public


@pytest.fixture
async def public(keys: Keys) -> AsyncIterator[PublicGrpcServer]:
    server = await serve(keys)
    yield server
    await server.stop(0)


def meta(key: str, header: str = "authorization") -> tuple[tuple[str, str], ...]:
    return ((header, f"Bearer {key}" if header == "authorization" else key),)


async def test_no_wrong_revoked_key_is_unauthenticated_and_valid_key_serves(
    public: PublicGrpcServer, keys: Keys
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{public.port}") as channel:
        stub: Any = pose3d_pb2_grpc.Pose3DStub(channel)  # type: ignore[no-untyped-call]
        for metadata in ((), meta("p3d_00000000_nope"), meta(keys.revoked), (("authorization", "Basic x"),)):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.ListModels(pb.ListModelsRequest(), metadata=metadata)
            assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED, metadata
        assert (await stub.ListModels(pb.ListModelsRequest(), metadata=meta(keys.alice))).models
        assert (await stub.ListModels(pb.ListModelsRequest(), metadata=meta(keys.bob, "x-api-key"))).models
        health: Any = health_pb2_grpc.HealthStub(channel)
        await health.Check(health_pb2.HealthCheckRequest())  # health stays open
        reflect: Any = reflection_pb2_grpc.ServerReflectionStub(channel)
        ask = reflection_pb2.ServerReflectionRequest(list_services="")
        with pytest.raises(grpc.aio.AioRpcError) as hidden:
            async for _ in reflect.ServerReflectionInfo(iter([ask])):
                pass
        assert hidden.value.code() is grpc.StatusCode.UNAUTHENTICATED
        replies = [r async for r in reflect.ServerReflectionInfo(iter([ask]), metadata=meta(keys.alice))]
        assert replies[0].list_services_response.service


async def _open(stub: Any, key: str, calls: list[Any], stream_id: str = "") -> pb.StreamOpened:
    call = stub.StreamEstimate(metadata=meta(key))
    calls.append(call)  # left open: a half-closed call would close its stream
    await call.write(pb.StreamEstimateRequest(open=pb.StreamOpen(stream_id=stream_id)))
    first = await call.read()
    opened: pb.StreamOpened = first.opened
    return opened


async def test_a_second_key_cannot_resume_the_first_keys_stream(public: PublicGrpcServer, keys: Keys) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{public.port}") as channel:
        stub: Any = pose3d_pb2_grpc.Pose3DStub(channel)  # type: ignore[no-untyped-call]
        calls: list[Any] = []
        opened = await _open(stub, keys.alice, calls)
        assert opened.stream_id
        with pytest.raises(grpc.aio.AioRpcError) as other:
            await _open(stub, keys.bob, calls, opened.stream_id)
        assert other.value.code() is grpc.StatusCode.NOT_FOUND
        resumed = await _open(stub, keys.alice, calls, opened.stream_id)
        assert resumed.stream_id == opened.stream_id
        for call in calls:
            call.cancel()


async def test_rate_quota_is_resource_exhausted_with_retry_after(keys: Keys) -> None:
    clock = Clock()
    server = await serve(keys, QuotaSettings(rate_per_s=1.0, burst=1, max_streams=0), clock)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub: Any = pose3d_pb2_grpc.Pose3DStub(channel)  # type: ignore[no-untyped-call]
            await stub.ListModels(pb.ListModelsRequest(), metadata=meta(keys.alice))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.ListModels(pb.ListModelsRequest(), metadata=meta(keys.alice))
            assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            trailers = dict(refused.value.trailing_metadata() or ())
            assert trailers["pose3d-error-type"] == "quota-exceeded"
            assert float(trailers["retry-after-s"]) == pytest.approx(1.0)
            clock.now += 1.0
            await stub.ListModels(pb.ListModelsRequest(), metadata=meta(keys.alice))
    finally:
        await server.stop(0)
