"""A call cut short by a dying worker is made again on another worker, within the request's deadline:

- a clip whose worker dies after answering some frames is made again from the first frame not answered
  (:meth:`~service.rpc.remote_engine.RemoteEngineClient._call_submit`); that call must carry what is left of the
  request's deadline, not the whole of it again — else the worker computes, and the caller waits, past it;
- a call the channel's retry policy makes again (its worker died before answering) is made again whatever its size.
"""

from __future__ import annotations

import asyncio
import time
import types
from collections.abc import AsyncGenerator

import numpy as np
import pytest

from service.api.media import clip_limits
from service.config import LimitSettings
from service.engine.types import EncodedClip, EstimateOptions, Frame, FrameResult, ImageFrame, Progress, Work
from service.engine.work import push
from service.rpc import remote_engine
from service.rpc.remote_engine import RemoteEngineClient
from tests.service.grpc_toy_engine import ToyEngine
from tests.service.media_samples import encode_image, rolling_clip
from tests.service.test_grpc_remote import Gate, HoldFirst, start_worker

LIMITS = LimitSettings(max_clip_frames=1000, max_clip_seconds=600)


class HoldAtThird(ToyEngine):
    """Toy engines sharing one gate: the first to be pushed a clip's third frame holds it (its worker is then
    stopped); each keeps the deadline every call it took came with."""

    def __init__(self, name: str, gate: Gate) -> None:
        super().__init__(name)
        self.gate = gate
        self.deadlines: list[float | None] = []

    async def submit(self, work: Work) -> AsyncGenerator[Progress]:
        if isinstance(work.frames, EncodedClip):
            self.deadlines.append(work.deadline)
        async for step in super().submit(work):
            yield step

    async def toy_push(self, stream_id: str, frame: Frame) -> list[FrameResult]:
        if frame.frame_index == 2 and not self.gate.entered.is_set():
            self.gate.holder = self.name
            self.gate.entered.set()
            await asyncio.Event().wait()  # held until its server is stopped
        return await super().toy_push(stream_id, frame)


async def test_a_clip_made_again_on_another_worker_keeps_what_is_left_of_its_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = Gate(asyncio.Event())
    engines = {name: HoldAtThird(name, gate) for name in "ab"}
    a, b = await start_worker(engines["a"]), await start_worker(engines["b"])
    b.engine.streams = a.engine.streams  # as if both shared Redis
    client = RemoteEngineClient([a.address, b.address], clip_chunk_frames=1)
    await client.start()
    skipped = 0.0  # seconds the gateway's clock is moved on while the first worker holds the clip
    monkeypatch.setattr(remote_engine, "time", types.SimpleNamespace(monotonic=lambda: time.monotonic() + skipped))
    clip = EncodedClip(rolling_clip(6, 96, 64), "mp4", clip_limits(LIMITS))
    deadline = time.monotonic() + 60.0
    try:
        sid = "clip-deadline"
        await client.open_stream(EstimateOptions(), stream_id=sid)
        seen: list[int] = []

        async def run() -> None:
            async for step in client.submit(Work(sid, clip, deadline=deadline, stream=sid, chunk_frames=1)):
                seen.extend(r.frame_index for r in step.results)

        pushing = asyncio.create_task(run())
        await asyncio.wait_for(gate.entered.wait(), 60)
        holder, other = (a, b) if gate.holder == "a" else (b, a)
        skipped = 20.0  # 20 s of the request's 60 pass while its worker holds it, then the worker dies
        await holder.server.stop(0)
        await asyncio.wait_for(pushing, 60)
    finally:
        await client.aclose()
        for w in (a, b):
            await w.server.stop(0)
    assert seen == list(range(6))  # carried on from the first frame not answered
    first, again = (engines[w.engine.name].deadlines for w in (holder, other))
    assert first == [pytest.approx(deadline, abs=1.0)]
    assert len(again) == 1
    assert again[0] is not None
    assert again[0] <= deadline - 15.0  # what was left of the 60 s (40 s), not 60 s more from the retry


async def test_a_stream_frame_past_256_kib_whose_worker_dies_is_made_again_on_another_worker() -> None:
    """gRPC's retry policy replays only a request it kept, and keeps 256 KiB by default: a camera frame larger than
    that failed UNAVAILABLE with its worker instead of being made again on the other one."""
    gate = Gate(asyncio.Event())
    a, b = await start_worker(HoldFirst("a", gate)), await start_worker(HoldFirst("b", gate))
    b.engine.streams = a.engine.streams  # as if both shared Redis
    client = RemoteEngineClient([a.address, b.address])
    await client.start()
    noise = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    image = encode_image(noise, ".png")
    assert len(image) > 256 * 1024
    try:
        info = await client.open_stream(EstimateOptions())
        pushing = asyncio.create_task(push(client, info.stream_id, [ImageFrame(image, 0)]))
        await asyncio.wait_for(gate.entered.wait(), 30)
        holder, other = (a, b) if gate.holder == "a" else (b, a)
        await holder.server.stop(0)  # dies with the frame in flight
        results = await asyncio.wait_for(pushing, 30)
    finally:
        await client.aclose()
        for w in (a, b):
            await w.server.stop(0)
    assert [r.frame_index for r in results] == [0]
    assert other.engine.frames_pushed == 1
