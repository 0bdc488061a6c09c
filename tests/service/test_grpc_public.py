"""The public Pose3D gRPC server (real grpc.aio server on a free port) over a toy engine:
validation and status codes, health and reflection, streaming with resume, flow control, cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from model.joints import JointSet
from service.client.sources import SourceFrame, encode_frame, synthetic_image
from service.client.stream import StreamClient, StreamConfig
from service.config import GatewaySettings
from service.engine.types import EstimateOptions
from service.gateway.grpc_public import _END
from service.gateway.grpc_server import PublicGrpcServer
from service.metrics import Metrics
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.proto_gen.pose3d.v1 import pose3d_pb2_grpc
from service.rpc.server import PUBLIC_SERVICE
from tests.service.grpc_toy_engine import ToyEngine


def settings(**overrides: Any) -> GatewaySettings:
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "grpc_port": 0,
        "default_image_model": "toy",
        "default_clip_model": "toy",
        "grpc_stream_buffer": 4,
    }
    return GatewaySettings(**(base | overrides))


@pytest.fixture
async def server() -> AsyncIterator[tuple[PublicGrpcServer, ToyEngine]]:
    public = PublicGrpcServer(settings(), Metrics())
    await public.start()
    engine = ToyEngine()
    public.engine = engine
    yield public, engine
    await public.stop(0)


def stub_for(port: int, options: list[tuple[str, Any]] | None = None) -> tuple[grpc.aio.Channel, Any]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options)
    return channel, pose3d_pb2_grpc.Pose3DStub(channel)  # type: ignore[no-untyped-call]


def keypoints_msg(frames: int = 3) -> pb.KeypointsInput:
    msg = pb.KeypointsInput(image_width=640, image_height=480, joint_set=pb.JOINT_SET_COCO)
    for t in range(frames):
        msg.frames.add(xy=[float(100 + j + t) for j in range(34)])
    return msg


async def test_estimate_keypoints_and_image(server: tuple[PublicGrpcServer, ToyEngine]) -> None:
    public, _ = server
    channel, stub = stub_for(public.port)
    async with channel:
        reply = await stub.Estimate(pb.EstimateRequest(keypoints=keypoints_msg(3)))
        assert [f.frame_index for f in reply.frames] == [0, 1, 2]
        assert reply.units == "m"
        assert len(reply.joint_names) == 17
        assert reply.box_source == pb.BOX_SOURCE_WHOLE_FRAME
        assert list(reply.frames[1].people[0].keypoints_2d)[:2] == [101.0, 102.0]
        image = synthetic_image(0, 64, 48)
        reply = await stub.Estimate(pb.EstimateRequest(image=encode_frame(image)))
        level = np.float32(image.astype(np.float32).mean())
        assert reply.frames[0].people[0].keypoints_2d[0] == pytest.approx(level)
        assert "decode" in reply.timings_ms
        assert "total" in reply.timings_ms
        assert reply.warnings  # the toy model has random weights and says so


@pytest.mark.parametrize(
    ("request_msg", "code"),
    [
        (pb.EstimateRequest(), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.EstimateRequest(image=b"not an image at all, just some bytes"), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.EstimateRequest(keypoints=pb.KeypointsInput(image_width=640, image_height=480)), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.EstimateRequest(keypoints=keypoints_msg(1), options=pb.Options(model="missing")), grpc.StatusCode.NOT_FOUND),
    ],
)  # fmt: skip
async def test_errors_map_to_status_codes(
    server: tuple[PublicGrpcServer, ToyEngine], request_msg: pb.EstimateRequest, code: grpc.StatusCode
) -> None:
    public, _ = server
    channel, stub = stub_for(public.port)
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Estimate(request_msg)
    assert info.value.code() == code
    assert any(k == "pose3d-error-type" for k, _ in info.value.trailing_metadata())


async def test_bad_floats_are_refused_before_the_engine(server: tuple[PublicGrpcServer, ToyEngine]) -> None:
    public, engine = server
    msg = keypoints_msg(1)
    msg.frames[0].xy[3] = float("nan")
    channel, stub = stub_for(public.port)
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Estimate(pb.EstimateRequest(keypoints=msg))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert engine.calls == 0


async def test_message_size_limit_is_enforced() -> None:
    public = PublicGrpcServer(settings(limits={"max_body_bytes": 64 * 1024}), Metrics())
    await public.start()
    public.engine = ToyEngine()
    channel, stub = stub_for(public.port)
    try:
        async with channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Estimate(pb.EstimateRequest(image=b"\xff\xd8\xff" + bytes(128 * 1024)))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        await public.stop(0)


async def test_health_follows_the_engine_and_reflection_lists_services() -> None:
    public = PublicGrpcServer(settings(), Metrics())
    await public.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{public.port}")
    try:
        health = health_pb2_grpc.HealthStub(channel)
        check = health_pb2.HealthCheckRequest(service=PUBLIC_SERVICE)
        assert (await health.Check(check)).status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await pose3d_pb2_grpc.Pose3DStub(channel).ListModels(pb.ListModelsRequest())  # type: ignore[no-untyped-call]
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        public.engine = ToyEngine()
        for _ in range(40):
            if (await health.Check(check)).status == health_pb2.HealthCheckResponse.SERVING:
                break
            await asyncio.sleep(0.1)
        assert (await health.Check(check)).status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)

        async def ask() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        names = set()
        async for reply in reflection.ServerReflectionInfo(ask()):
            names |= {s.name for s in reply.list_services_response.service}
        assert {"pose3d.v1.Pose3D", "grpc.health.v1.Health"} <= names
    finally:
        await channel.close()
        await public.stop(0)


def frames(count: int, width: int = 48, height: int = 32) -> Iterator[SourceFrame]:
    for i in range(count):
        yield SourceFrame(i, i / 25.0, synthetic_image(i, width, height))


async def test_stream_client_gets_every_result(server: tuple[PublicGrpcServer, ToyEngine]) -> None:
    public, engine = server
    results: list[dict[str, Any]] = []
    client = StreamClient(f"127.0.0.1:{public.port}", frames(20), StreamConfig(paced=False), results.append)
    stats = await client.run()
    assert [r["frame_index"] for r in results] == list(range(20))
    assert stats.results == 20
    assert len(stats.latency_ms) == 20
    assert "p50" in stats.summary()["latency_ms"]
    assert engine.streams == {}  # half-close flushed and closed the stream


async def test_stream_resumes_after_the_server_restarts() -> None:
    engine = ToyEngine(delay_s=0.01)
    first = PublicGrpcServer(settings(), Metrics())
    port = await first.start()
    first.engine = engine
    results: list[dict[str, Any]] = []
    restarted: list[PublicGrpcServer] = []
    ten_results = asyncio.Event()

    def collect(result: dict[str, Any]) -> None:
        results.append(result)
        if len(results) >= 10:
            ten_results.set()

    async def restart_midway() -> None:
        await ten_results.wait()
        await first.stop(0)
        await asyncio.sleep(0.3)
        again = PublicGrpcServer(settings(grpc_port=port), Metrics())
        await again.start()
        again.engine = engine  # the engine's streams outlive the gateway (as in Redis)
        restarted.append(again)

    config = StreamConfig(paced=False, resume_backoff_s=0.2)
    client = StreamClient(f"127.0.0.1:{port}", frames(40), config, collect)
    try:
        stats, _ = await asyncio.gather(client.run(), restart_midway())
    finally:
        for s in restarted:
            await s.stop(0)
    assert stats.resumes >= 1
    assert [r["frame_index"] for r in results] == list(range(40))


async def test_slow_reader_stalls_only_its_own_stream(server: tuple[PublicGrpcServer, ToyEngine]) -> None:
    public, engine = server
    big = encode_frame(np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8))  # ~200 kB
    # the client's receive window stays at HTTP/2's 64 kB (no BDP growth): ~100 small results fill it
    channel, stub = stub_for(public.port, [("grpc.http2.bdp_probe", 0)])
    async with channel:
        call = stub.StreamEstimate()
        await call.write(pb.StreamEstimateRequest(open=pb.StreamOpen()))
        await call.read()  # opened; from now on this client never reads
        stalled = await write_until_stalled(call, big, 400)  # up to 80 MB offered
        assert stalled, "every write went through although the client read nothing"
        stalled_at = engine.frames_pushed
        assert stalled_at < 200, "the server kept reading frames its client did not take results for"
        await asyncio.sleep(1.0)
        assert engine.frames_pushed == stalled_at  # and it stays stalled: nothing piles up in the server
        # another stream on the same server is served meanwhile
        results: list[dict[str, Any]] = []
        await StreamClient(f"127.0.0.1:{public.port}", frames(5), StreamConfig(paced=False), results.append).run()
        assert len(results) == 5
        call.cancel()
    for _ in range(50):
        if public_active_streams(public) == 0:
            break
        await asyncio.sleep(0.05)
    assert public_active_streams(public) == 0  # the cancelled stream released its tasks and buffer


async def write_until_stalled(call: Any, image: bytes, count: int) -> bool:
    """Write ``count`` frames; True as soon as one write blocks for 2 s (flow control pushing back)."""
    for i in range(count):
        try:
            async with asyncio.timeout(2.0):
                await call.write(pb.StreamEstimateRequest(frame=pb.StreamFrame(image=image, frame_index=i)))
        except TimeoutError:
            return True
    return False


def public_active_streams(public: PublicGrpcServer) -> int:
    return public.servicer.open_calls


async def test_estimate_calls_in_flight_are_bounded_like_rest() -> None:
    public = PublicGrpcServer(settings(limits={"max_inflight_requests": 2, "retry_after_s": 3.0}), Metrics())
    await public.start()
    public.engine = ToyEngine(delay_s=0.5)
    channel, stub = stub_for(public.port)
    try:
        async with channel:
            calls = [stub.Estimate(pb.EstimateRequest(keypoints=keypoints_msg(1))) for _ in range(4)]
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
        refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
        assert len(refused) == 2, outcomes
        assert {o.code() for o in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert all(("retry-after-s", "3") in tuple(o.trailing_metadata()) for o in refused)
        assert public.security.in_flight.count == 0
        assert metric(public, "pose3d_rejected_total", reason="overloaded") == 2
    finally:
        await public.stop(0)


async def test_cancelled_and_timed_out_calls_are_not_counted_ok(server: tuple[PublicGrpcServer, ToyEngine]) -> None:
    public, engine = server
    engine.delay_s = 2.0
    channel, stub = stub_for(public.port)
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Estimate(pb.EstimateRequest(keypoints=keypoints_msg(1)), timeout=0.2)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        call = stub.Estimate(pb.EstimateRequest(keypoints=keypoints_msg(1)))
        await asyncio.sleep(0.2)
        call.cancel()
    codes = {"OK": 0.0, "DEADLINE_EXCEEDED": 0.0, "CANCELLED": 0.0}
    for _ in range(40):  # the server sees the cancellations a moment later
        codes = {c: metric(public, "pose3d_requests_total", route="grpc.Estimate", code=c) for c in codes}
        if codes["DEADLINE_EXCEEDED"] + codes["CANCELLED"] == 2:
            break
        await asyncio.sleep(0.05)
    assert codes == {"OK": 0.0, "DEADLINE_EXCEEDED": 1.0, "CANCELLED": 1.0}


def metric(public: PublicGrpcServer, name: str, **labels: str) -> float:
    value = public.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else float(value)


async def test_request_ids_are_kept_only_when_safe(server: tuple[PublicGrpcServer, ToyEngine]) -> None:
    public, _ = server
    channel, stub = stub_for(public.port)
    async with channel:
        kept = await stub.Estimate(pb.EstimateRequest(keypoints=keypoints_msg(1), request_id="client-7:a.b"))
        assert kept.request_id == "client-7:a.b"
        for unsafe in ("forged\nlog line", "x" * 129, "semi;colon"):
            reply = await stub.Estimate(pb.EstimateRequest(keypoints=keypoints_msg(1), request_id=unsafe))
            assert reply.request_id != unsafe[:128]
            assert len(reply.request_id) == 32  # a fresh uuid4 hex instead


async def test_a_stream_that_never_opens_is_ended_not_held_forever() -> None:
    public = PublicGrpcServer(settings(grpc_open_timeout_s=0.3), Metrics())
    await public.start()
    public.engine = ToyEngine()
    channel, stub = stub_for(public.port)
    try:
        async with channel:
            call = stub.StreamEstimate()  # sends nothing: not even the `open` message
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await asyncio.wait_for(call.read(), timeout=10)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "open" in (info.value.details() or "")
        assert public.servicer.open_calls == 0
    finally:
        await public.stop(0)


async def _no_more_requests() -> AsyncIterator[pb.StreamEstimateRequest]:
    """A request stream that has ended: what a half-close gives, and what a call the server's stop ends can give."""
    nothing: list[pb.StreamEstimateRequest] = []
    for message in nothing:
        yield message


async def test_a_request_stream_ended_by_the_servers_stop_leaves_the_stream_open() -> None:
    """A half-close flushes and closes the stream; but the stop of a gateway ends its calls' request streams too, and
    gRPC may end them just as a half-close does. Before, that closed the stream, and the client's resume on the
    restarted gateway answered NOT_FOUND (seen beside ``make test-stressed``'s burners)."""
    public = PublicGrpcServer(settings(), Metrics())
    engine = ToyEngine()
    opened = await engine.open_stream(EstimateOptions(model="toy"))
    servicer, queue = public.servicer, asyncio.Queue[object]()
    servicer.stopping = True
    with pytest.raises(asyncio.CancelledError):
        await servicer._pump(engine, opened.stream_id, JointSet.COCO, _no_more_requests(), queue)
    assert await engine.get_stream(opened.stream_id) == opened  # still there, to be resumed
    assert queue.empty()
    servicer.stopping = False  # a real half-close
    await servicer._pump(engine, opened.stream_id, JointSet.COCO, _no_more_requests(), queue)
    assert opened.stream_id not in engine.streams
    assert queue.get_nowait() is not None  # the end marker


async def _requests(*messages: pb.StreamEstimateRequest) -> AsyncIterator[pb.StreamEstimateRequest]:
    for message in messages:
        yield message


async def test_with_explicit_close_only_a_close_message_closes_the_stream() -> None:
    """A client that cancels its call can have gRPC end the gateway's request stream just as a half-close does (2–3
    of 30 tries here), which flushed and closed the stream its resume then asked for (NOT_FOUND). A call opened with
    ``explicit_close`` keeps the stream at any ending but a ``close`` message, which flushes and closes it; frames
    after ``close`` are not read. A call without it keeps the old contract: a half-close closes."""
    public, engine = PublicGrpcServer(settings(), Metrics()), ToyEngine()
    servicer = public.servicer
    kept = await engine.open_stream(EstimateOptions(model="toy"))
    queue = asyncio.Queue[object]()
    await servicer._pump(engine, kept.stream_id, JointSet.COCO, _no_more_requests(), queue, explicit_close=True)
    assert await engine.get_stream(kept.stream_id) == kept  # still there, to be resumed
    assert queue.get_nowait() is _END  # the call ends, with nothing flushed
    assert queue.empty()
    close, frame = pb.StreamEstimateRequest(close=pb.StreamClose()), pb.StreamEstimateRequest(frame=pb.StreamFrame())
    for explicit in (True, False):
        closed = await engine.open_stream(EstimateOptions(model="toy"))
        await servicer._pump(
            engine, closed.stream_id, JointSet.COCO, _requests(close, frame), queue, explicit_close=explicit
        )
        assert closed.stream_id not in engine.streams
        assert queue.get_nowait() is _END  # the empty frame after `close` was never read (it would be refused)
        assert queue.empty()
    compatible = await engine.open_stream(EstimateOptions(model="toy"))
    await servicer._pump(engine, compatible.stream_id, JointSet.COCO, _no_more_requests(), queue)
    assert compatible.stream_id not in engine.streams  # no explicit_close: a half-close closes, as before


async def test_a_client_that_cancels_its_call_can_always_resume_the_stream(
    server: tuple[PublicGrpcServer, ToyEngine],
) -> None:
    """Thirty cancels of a live call opened with ``explicit_close``: the stream is still there for each resume (before,
    any cancel could be taken as a half-close), and the stream client's own run ends with ``close``."""
    public, engine = server
    channel, stub = stub_for(public.port)
    image = encode_frame(synthetic_image(0, 48, 32))
    async with channel:
        call = stub.StreamEstimate()
        await call.write(pb.StreamEstimateRequest(open=pb.StreamOpen(explicit_close=True)))
        stream_id = (await call.read()).opened.stream_id
        for index in range(30):
            await call.write(pb.StreamEstimateRequest(frame=pb.StreamFrame(image=image, frame_index=index)))
            assert (await call.read()).result.frame_index == index
            call.cancel()
            call = stub.StreamEstimate()
            await call.write(pb.StreamEstimateRequest(open=pb.StreamOpen(stream_id=stream_id, explicit_close=True)))
            assert (await call.read()).opened.frames_received == index + 1
        await call.write(pb.StreamEstimateRequest(close=pb.StreamClose()))
        await call.done_writing()
        assert await call.read() is grpc.aio.EOF
        assert await call.code() is grpc.StatusCode.OK
    assert stream_id not in engine.streams
