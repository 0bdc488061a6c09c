"""The one handler wrap (``service.rpc.decoding.CallInterceptor``): each call is one server span, child of the
caller's ``traceparent``, also when its request is refused as undecodable; handlers that write their stream through
the context (health ``Watch``) still stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service.engine.types import EstimateOptions, Work
from service.gateway.grpc_server import PublicGrpcServer
from service.metrics import Metrics
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.rpc.remote_engine import RemoteEngineClient
from service.rpc.server import PUBLIC_SERVICE
from service.telemetry import grpc_trace
from tests.service.grpc_toy_engine import ToyEngine
from tests.service.test_engine_support import keypoint_clip
from tests.service.test_grpc_decoding import GARBAGE
from tests.service.test_grpc_public import settings
from tests.service.worker_support import serve_worker

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


async def finished_spans(spans: InMemorySpanExporter, count: int) -> tuple[ReadableSpan, ...]:
    """The first ``count`` spans once they have ended: a refused call's server span ends in this loop after its
    status has gone out, so the client can see the refusal first."""
    while len(spans.get_finished_spans()) < count:  # noqa: ASYNC110 (the exporter has no event to wait on)
        await asyncio.sleep(0.001)
    return tuple(spans.get_finished_spans())


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
    finished = await finished_spans(spans, 2)
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


class _Unreadable:
    """Call metadata that fails the test if anyone reads it."""

    def __iter__(self) -> Iterator[object]:
        raise AssertionError("the call's metadata was read while tracing is off")


async def test_while_tracing_is_off_no_metadata_is_read_and_no_traceparent_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No tracer provider installed (the default): the server span is the API's invalid one without reading the
    call's metadata, and the worker channel's interceptors hand the call on as it came (no span, no metadata)."""
    monkeypatch.setattr(trace, "get_tracer_provider", trace.ProxyTracerProvider)  # as a process that set none
    assert grpc_trace.server_span("/pose3d.v1.Pose3D/Estimate", _Unreadable())() is trace.INVALID_SPAN
    handed_on: list[object] = []

    async def continuation(details: object, request: object) -> str:
        handed_on.append(details)
        return "the call"

    details = SimpleNamespace(method=b"/pose3d.worker.v1.Worker/Submit", metadata=_Unreadable())
    assert await grpc_trace.TraceClientInterceptor().intercept_unary_unary(continuation, details, None) == "the call"
    assert await grpc_trace.TraceStreamClientInterceptor().intercept_unary_stream(continuation, details, None) == (
        "the call"
    )
    assert handed_on == [details, details]


async def test_a_worker_stream_its_caller_leaves_ends_both_spans_without_a_context_error(
    spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    """A ``Submit`` the gateway stops reading (its client left): the call is cancelled, and its client span and the
    worker's server span end with it. Both were held current across the stream's ``yield``: the client span ended
    only when its generator was collected, and each span's context was left from another one — an ERROR 'Failed to
    detach context' with a traceback on every such call."""
    server, _, address = await serve_worker(ToyEngine())
    client = RemoteEngineClient([address])
    try:
        info = await client.open_stream(EstimateOptions())
        work = Work("r", keypoint_clip(50), EstimateOptions(), None, info.stream_id, chunk_frames=1)
        async with contextlib.aclosing(client.submit(work)) as steps:
            async for _ in steps:
                break  # the caller leaves after the first step
        for _ in range(10_000):  # the spans end as the cancelled call does, a few loop turns on (not when collected)
            if len(spans.get_finished_spans()) >= 4:  # Stream (open), client and server; Submit, client and server
                break
            await asyncio.sleep(0.001)
        ended = spans.get_finished_spans()
        submits = [s for s in ended if s.name == "Worker/Submit"]
        assert sorted(s.kind.name for s in submits) == ["CLIENT", "SERVER"], [s.name for s in ended]
        client_span = next(s for s in submits if s.kind is trace.SpanKind.CLIENT)
        assert client_span.attributes is not None
        assert client_span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.CANCELLED.value[0]
        assert client_span.status.status_code is trace.StatusCode.UNSET  # the caller left: no error
    finally:
        await client.aclose()
        await server.stop(0)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
