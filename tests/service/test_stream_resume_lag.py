"""A resumed stream keeps the window its first ``opened`` gave: a Savitzky–Golay smoothed stream holds each result
back ``half_window`` frames, which the gateway's ``opened`` counted in ``lag_frames`` for a new stream only (it now
counts it for a resumed one too: the last test). Before, the client took the resumed stream's smaller lag as its window, so after a gateway restart it allowed fewer frames
unanswered than the smoothing needs ahead of the oldest one: it waited for a result, the engine for a frame — for
ever. The guard timeout below only turns that hang into a failure; a passing run never waits on it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from service.client.stream import StreamClient, StreamConfig
from service.engine.inprocess import build_engine
from service.gateway.grpc_server import PublicGrpcServer
from service.metrics import Metrics
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.rpc.link import stream_from_pb, stream_to_pb
from tests.service.test_engine_support import keypoint_clip, tiny_settings
from tests.service.test_grpc_public import settings, stub_for

FRAMES = 40
HALF_WINDOW = 12  # more than max_ahead (8): the window must count the smoothing's lag
OPTIONS = pb.Options(
    model="pstmo",
    mode=pb.WINDOW_MODE_CAUSAL,  # the model adds no lag of its own
    camera=pb.Camera(fov_deg=70.0),
    smoothing=pb.Smoothing(method=pb.SMOOTHING_METHOD_SAVGOL, half_window=HALF_WINDOW, polyorder=1),
)


def keypoint_frames() -> Iterator[pb.StreamFrame]:
    for f in keypoint_clip(FRAMES):
        yield pb.StreamFrame(
            keypoints=pb.Keypoints2D(xy=f.keypoints.ravel().tolist(), scores=f.scores.tolist()),
            frame_index=f.frame_index, timestamp_s=f.timestamp_s, image_width=640, image_height=480,
        )  # fmt: skip


async def test_a_smoothed_stream_resumed_after_a_gateway_restart_ends_whole() -> None:
    engine = await build_engine(tiny_settings(), Metrics())
    servers = [PublicGrpcServer(settings(), Metrics())]
    port = await servers[0].start()
    servers[0].engine = engine
    results: list[dict[str, Any]] = []
    dropped, up = asyncio.Event(), asyncio.Event()

    def collect(result: dict[str, Any]) -> None:
        results.append(result)
        if len(results) == 5:
            dropped.set()

    async def restart() -> None:
        await dropped.wait()
        await servers[0].stop(0)
        servers.append(PublicGrpcServer(settings(grpc_port=port), Metrics()))
        await servers[1].start()
        servers[1].engine = engine  # the engine's streams outlive the gateway
        up.set()

    async def sleep(_: float) -> None:
        await up.wait()  # reconnect once the new gateway listens

    config = StreamConfig(options=OPTIONS, paced=False, max_ahead=8)
    client = StreamClient(f"127.0.0.1:{port}", keypoint_frames(), config, collect)
    client.sleep = sleep
    try:
        stats, _ = await asyncio.wait_for(asyncio.gather(client.run(), restart()), timeout=60)
    finally:
        for server in servers:
            await server.stop(0)
        await engine.aclose()
    assert stats.resumes == 1
    assert [r["frame_index"] for r in results] == list(range(FRAMES))


async def test_a_resumed_stream_is_opened_with_its_smoothing_lag() -> None:
    """The gateway's ``opened`` of a resumed stream counts the smoothing it was opened with (the engine's stream info
    carries it, across the worker link too), so no client has to remember it."""
    engine = await build_engine(tiny_settings(), Metrics())
    server = PublicGrpcServer(settings(), Metrics())
    port = await server.start()
    server.engine = engine
    try:
        channel, stub = stub_for(port)
        async with channel:
            first = stub.StreamEstimate()
            await first.write(pb.StreamEstimateRequest(open=pb.StreamOpen(options=OPTIONS)))
            opened = (await first.read()).opened
            again = stub.StreamEstimate()  # while the first call lives: cancelling it may flush and close the stream
            await again.write(pb.StreamEstimateRequest(open=pb.StreamOpen(stream_id=opened.stream_id)))
            resumed = (await again.read()).opened
            info = await engine.get_stream(opened.stream_id)
            again.cancel()
            first.cancel()
    finally:
        await server.stop(0)
        await engine.aclose()
    assert opened.lag_frames == HALF_WINDOW  # causal: the smoothing's lag alone
    assert resumed.stream_id == opened.stream_id
    assert resumed.lag_frames == HALF_WINDOW
    assert stream_from_pb(stream_to_pb(info)) == info
    assert info.smoothing_lag_frames == HALF_WINDOW
