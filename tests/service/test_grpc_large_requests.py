"""Large gRPC requests do not stall the server (issue 10: a 200 000-frame ``Estimate`` took 25.9 s to be refused).

- A payload over the message limit is refused by gRPC itself (RESOURCE_EXHAUSTED; test_grpc_public.py), and one
  that is not protobuf is INVALID_ARGUMENT (test_grpc_decoding.py).
- Keypoints larger on the wire than ``max_clip_frames`` frames can be are refused from a scan of the request's top
  level, never decoded: 200 000 frames (42 MB) get INVALID_ARGUMENT naming the limit; the engine is never called.
- A large payload under that bound is decoded on a worker thread: while its decoding is held at a gate, health
  checks and other calls are answered (no clock: a decode on the event loop would hold them until the gate opens,
  which happens only after they were answered — the test would fail on their timeout). Then its frame count is
  checked before any per-frame work (20 001 frames: INVALID_ARGUMENT with the limit).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.gateway import grpc_inputs
from service.gateway.grpc_server import PublicGrpcServer
from service.metrics import Metrics
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.rpc import decoding
from tests.service.grpc_toy_engine import ToyEngine
from tests.service.test_grpc_public import settings, stub_for

HUGE_FRAMES = 200_000


@pytest.fixture
async def server() -> AsyncIterator[tuple[PublicGrpcServer, ToyEngine]]:
    public = PublicGrpcServer(settings(), Metrics())  # default limits: 64 MiB messages, 20 000 frames
    await public.start()
    engine = ToyEngine()
    public.engine = engine
    yield public, engine
    await public.stop(0)


def huge_request() -> bytes:
    """An ``EstimateRequest`` with 200 000 frames of keypoints (~42 MB, under the 64 MiB message limit)."""
    frame = pb.Keypoints2D(xy=[float(100 + j) for j in range(34)], scores=[0.9] * 17)
    one_frame = pb.KeypointsInput(frames=[frame]).SerializeToString()  # a repeated field's entry: concatenable
    keypoints = pb.KeypointsInput(image_width=640, image_height=480).SerializeToString() + one_frame * HUGE_FRAMES
    raw = pb.EstimateRequest(keypoints=pb.KeypointsInput.FromString(keypoints)).SerializeToString()
    return raw


def test_the_huge_request_is_what_it_claims() -> None:
    raw = huge_request()
    assert 30 * 1024 * 1024 < len(raw) < 64 * 1024 * 1024
    assert len(pb.EstimateRequest.FromString(raw).keypoints.frames) == HUGE_FRAMES


class Gate:
    """Holds the off-loop decode of large payloads until opened; says when one started."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.open = threading.Event()

    def decode(self, decode: decoding.Decoder, raw: bytes) -> Any:
        self.started.set()
        assert self.open.wait(600), "the gate was never opened"
        return decode(raw)


def no_per_frame_work(*_: Any) -> Any:
    raise AssertionError("frames were built past the frame limit")


async def test_keypoints_too_large_for_the_frame_limit_are_refused_undecoded(
    server: tuple[PublicGrpcServer, ToyEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    public, engine = server

    def never(*_: Any) -> Any:
        raise AssertionError("the huge request was decoded")

    monkeypatch.setattr(decoding, "decode_off_loop", never)
    raw = huge_request()
    channel, _ = stub_for(public.port)
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await channel.unary_unary("/pose3d.v1.Pose3D/Estimate")(raw, timeout=600)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == (
        f"keypoints input of {len(raw) - 5} bytes holds more than the 20000 frames of keypoints allowed "
        f"(at most {20_000 * 300 + 64 * 1024} bytes)"
    )
    assert dict(refused.value.trailing_metadata() or ())["pose3d-error-type"] == "payload-too-large"
    assert engine.calls == 0


def over_the_frame_limit() -> pb.EstimateRequest:
    """20 001 frames: one past the frame limit, but not larger on the wire than 20 000 frames may be."""
    keypoints = pb.KeypointsInput(image_width=640, image_height=480)
    frame = pb.Keypoints2D(xy=[float(100 + j) for j in range(34)], scores=[0.9] * 17)
    keypoints.frames.extend([frame] * 20_001)
    return pb.EstimateRequest(keypoints=keypoints)


async def test_a_large_request_is_decoded_off_the_loop_then_refused_on_its_frame_count(
    server: tuple[PublicGrpcServer, ToyEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    public, engine = server
    gate = Gate()
    monkeypatch.setattr(decoding, "decode_off_loop", gate.decode)
    monkeypatch.setattr(grpc_inputs, "_keypoint_rows", no_per_frame_work)
    request = over_the_frame_limit()
    assert request.ByteSize() > decoding.OFF_LOOP_BYTES
    channel, stub = stub_for(public.port)
    async with channel:
        large = asyncio.ensure_future(stub.Estimate(request, timeout=600))
        try:
            while not gate.started.is_set():
                assert not large.done(), large
                await asyncio.sleep(0.01)
            health = health_pb2_grpc.HealthStub(channel)
            for _ in range(5):  # answered while the large message is being decoded
                reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=120)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
            models = await stub.ListModels(pb.ListModelsRequest(), timeout=120)
            assert [m.name for m in models.models] == ["toy"]
            assert not large.done(), "the large request ended before its decode was let go"
        finally:
            gate.open.set()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await large
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == "20001 frames of keypoints; at most 20000"
    assert engine.calls == 0


async def test_small_requests_are_decoded_on_the_loop_as_before(
    server: tuple[PublicGrpcServer, ToyEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    public, _ = server

    def no_thread(*_: Any) -> Any:
        raise AssertionError("a small message went to a thread")

    monkeypatch.setattr(decoding, "decode_off_loop", no_thread)
    channel, stub = stub_for(public.port)
    async with channel:
        models = await stub.ListModels(pb.ListModelsRequest(), timeout=120)
    assert [m.name for m in models.models] == ["toy"]
