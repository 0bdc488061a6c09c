"""The load of ``bench scale``: N concurrent gRPC streams, each sending 2D keypoint frames at a fixed rate (open
loop: frame i leaves at ``start + i / fps`` whatever the answers), bounded in frames and in time. Streams are
spread over the gateways and their starts over one frame period, so the offered load is even."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import grpc
import numpy as np

from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.proto_gen.pose3d.v1 import pose3d_pb2_grpc


@dataclass
class LoadResult:
    """What the streams saw: answered frames, per-frame latency (send → result, ms), failures."""

    sent: int = 0
    answered: int = 0
    latency_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


def walk(frames: int, seed: int) -> list[pb.StreamFrame]:
    """One person's COCO keypoints drifting about a 640×480 image (pixels), ``frames`` messages."""
    rng = np.random.default_rng(seed)
    base = rng.random((17, 2)) * np.array([300.0, 250.0]) + np.array([150.0, 100.0])
    xy = np.cumsum(rng.normal(0, 3, (frames, 17, 2)), axis=0) + base
    scores = rng.random(17).tolist()
    return [
        pb.StreamFrame(
            keypoints=pb.Keypoints2D(xy=xy[i].ravel().tolist(), scores=scores),
            frame_index=i,
            timestamp_s=i / 30.0,
            image_width=640,
            image_height=480,
        )
        for i in range(frames)
    ]


async def _one_stream(
    stub: pose3d_pb2_grpc.Pose3DStub, frames: list[pb.StreamFrame], fps: float, delay_s: float, out: LoadResult
) -> None:
    await asyncio.sleep(delay_s)
    sent_at: dict[int, float] = {}
    call = stub.StreamEstimate()
    opening = pb.StreamOpen(options=pb.Options(model="pstmo-9", mode=pb.WINDOW_MODE_CAUSAL))

    async def send() -> None:
        await call.write(pb.StreamEstimateRequest(open=opening))
        start = time.monotonic()
        for i, frame in enumerate(frames):
            await asyncio.sleep(max(0.0, start + i / fps - time.monotonic()))
            sent_at[frame.frame_index] = time.monotonic()
            await call.write(pb.StreamEstimateRequest(frame=frame))
            out.sent += 1
        await call.done_writing()

    sender = asyncio.create_task(send())
    try:
        async for msg in call:
            if msg.WhichOneof("message") == "result":
                sent = sent_at.pop(msg.result.frame_index, None)
                if sent is not None:
                    out.latency_ms.append((time.monotonic() - sent) * 1000.0)
                    out.answered += 1
        await sender
    except grpc.aio.AioRpcError as exc:
        out.error(exc.code().name)
    except asyncio.CancelledError:
        out.error("unfinished at the time bound")
        raise
    finally:
        sender.cancel()


async def run_load(addresses: list[str], streams: int, fps: float, seconds: float, drain_s: float) -> LoadResult:
    """``streams`` streams of ``fps × seconds`` frames over ``addresses`` (round robin); ends ``drain_s`` after
    the last frame is due, cancelling what has not finished."""
    out = LoadResult()
    frames_each = max(1, round(fps * seconds))
    template = walk(frames_each, seed=7)
    channels = [grpc.aio.insecure_channel(a) for a in addresses]
    stubs = [pose3d_pb2_grpc.Pose3DStub(c) for c in channels]  # type: ignore[no-untyped-call]
    started = time.monotonic()
    tasks = [
        asyncio.create_task(_one_stream(stubs[s % len(stubs)], template, fps, (s / streams) / fps, out))
        for s in range(streams)
    ]
    _, pending = await asyncio.wait(tasks, timeout=seconds + 1.0 / fps + drain_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    out.seconds = time.monotonic() - started
    for channel in channels:
        await channel.close()
    return out
