"""The one handler wrap (``service.rpc.decoding.CallInterceptor``): each call is one server span, child of the
caller's ``traceparent``, also when its request is refused as undecodable; handlers that write their stream through
the context (health ``Watch``) still stream."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service.gateway.grpc_server import PublicGrpcServer
from service.metrics import Metrics
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.rpc.server import PUBLIC_SERVICE
from service.telemetry import grpc_trace
from tests.service.grpc_toy_engine import ToyEngine
from tests.service.test_grpc_decoding import GARBAGE
from tests.service.test_grpc_public import settings

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(grpc_trace, "tracer", provider.get_tracer("pose3d"))  # not the process-wide provider
    return exporter


@pytest.fixture
async def public() -> AsyncIterator[PublicGrpcServer]:
    server = PublicGrpcServer(settings(), Metrics())
    await server.start()
    yield server
    await server.stop(0)


async def test_each_call_is_one_server_span_under_the_callers_traceparent(
    public: PublicGrpcServer, spans: InMemorySpanExporter
) -> None:
    public.engine = ToyEngine()
    metadata = (("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01"),)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{public.port}") as channel:
        models = channel.unary_unary(
            "/pose3d.v1.Pose3D/ListModels",
            request_serializer=pb.ListModelsRequest.SerializeToString,
            response_deserializer=pb.ListModelsResponse.FromString,
        )
        assert [m.name for m in (await models(pb.ListModelsRequest(), metadata=metadata)).models] == ["toy"]
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await channel.unary_unary("/pose3d.v1.Pose3D/Estimate")(GARBAGE, metadata=metadata)
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finished = spans.get_finished_spans()
    assert [s.name for s in finished] == ["Pose3D/ListModels", "Pose3D/Estimate"]
    for span in finished:
        assert span.kind is trace.SpanKind.SERVER
        assert format(span.context.trace_id, "032x") == TRACE_ID
        assert span.parent is not None
        assert format(span.parent.span_id, "016x") == PARENT_ID
    assert finished[0].status.status_code is trace.StatusCode.UNSET
    assert finished[1].status.status_code is trace.StatusCode.ERROR  # the refusal is in the call's span


async def test_health_watch_writes_its_stream_through_the_wrap(public: PublicGrpcServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{public.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service=PUBLIC_SERVICE))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        public.engine = ToyEngine()  # the server follows the engine: the watcher is told
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()
