"""Clips travel gateway → worker as their encoded bytes, and the worker decodes them.

- the gateway hands the engine the upload's bytes untouched (an ``EncodedClip``), having probed only the header;
- on the worker protocol the clip weighs its encoded size (plus a few bytes), and the codec refuses malformed clips;
- a clip whose worker dies mid-way carries on on another worker from the first frame not answered, every frame
  answered once, in order, with its source index;
- the gateway ↔ worker message limit is the largest upload plus headroom, and such a clip fits in it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator

import pytest

from service.api.clips import run_clip
from service.api.media import Media, MediaKind, clip_limits
from service.config import GatewaySettings, LimitSettings, WorkerSettings
from service.engine.types import (
    ClipLimits,
    EncodedClip,
    EstimateOptions,
    Frame,
    FrameResult,
    Progress,
    Work,
)
from service.errors import PayloadTooLarge
from service.proto_gen.pose3d.worker.v1 import worker_pb2 as wpb
from service.rpc import link
from service.rpc.remote_engine import RemoteEngineClient
from tests.service.grpc_toy_engine import ToyEngine
from tests.service.media_samples import rolling_clip
from tests.service.test_grpc_remote import start_worker

LIMITS = LimitSettings(max_clip_frames=1000, max_clip_seconds=600)


class Slow(ToyEngine):
    """A slow toy engine that says when it has answered ``frames`` frames."""

    def __init__(self, frames: int, answered: asyncio.Event | None = None) -> None:
        super().__init__("slow", delay_s=0.3)
        self.frames = frames
        self.answered = answered or asyncio.Event()

    async def toy_push(self, stream_id: str, frame: Frame) -> list[FrameResult]:
        results = await super().toy_push(stream_id, frame)
        if self.frames_pushed >= self.frames:
            self.answered.set()
        return results


class Recording(ToyEngine):
    """A toy engine that keeps the clip requests it was given."""

    def __init__(self) -> None:
        super().__init__("recording")
        self.requests: list[Work] = []

    async def submit(self, work: Work) -> AsyncGenerator[Progress]:
        self.requests.append(work)
        async for step in super().submit(work):
            yield step


def _upload(data: bytes, kind: MediaKind = MediaKind.MP4) -> Media:
    return Media(kind, data)


async def test_the_gateway_sends_the_clip_bytes_untouched_and_the_engine_decodes_them() -> None:
    clip = rolling_clip(9, 96, 64)
    engine = Recording()
    outcome = await run_clip(engine, _upload(clip), EstimateOptions(), LIMITS, 2, time.monotonic() + 600)
    (request,) = engine.requests
    assert isinstance(request.frames, EncodedClip)
    assert request.frames.data == clip  # the upload's bytes, not a decoded frame
    assert (request.frames.container, request.frames.every_nth) == ("mp4", 2)
    assert request.frames.limits == clip_limits(LIMITS)
    assert [f.frame_index for f in outcome.frames] == [0, 2, 4, 6, 8]  # decoded by the engine, every 2nd frame


async def test_a_clip_past_the_header_limits_is_refused_before_the_engine_sees_it() -> None:
    engine = Recording()
    limits = LimitSettings(max_clip_frames=5, max_clip_seconds=600)
    upload = _upload(rolling_clip(12, 96, 64))
    with pytest.raises(PayloadTooLarge, match="frames"):
        await run_clip(engine, upload, EstimateOptions(), limits, 1, time.monotonic() + 60)
    assert engine.requests == []


def test_an_encoded_clip_weighs_its_bytes_on_the_worker_wire_and_round_trips() -> None:
    data = rolling_clip(30, 160, 120)
    clip = EncodedClip(data, "mp4", clip_limits(LIMITS), every_nth=3, start=7)
    message = link.work_to_pb(Work("r", clip, stream="s", chunk_frames=8, chunk_timeout_s=30.0))
    size = message.ByteSize()
    print(f"clip of {len(data)} bytes: Work of {size} bytes")
    assert len(data) < size <= len(data) + 128
    assert link.work_from_pb(message, None).frames == clip
    for broken in (wpb.Clip(), wpb.Clip(data=b"x", every_nth=0)):
        with pytest.raises(ValueError, match="Clip needs"):
            link.clip_from_pb(broken)


def test_the_worker_message_limit_is_the_largest_upload_plus_headroom() -> None:
    gateway = GatewaySettings()
    limit = gateway.worker_message_limit()
    assert limit == gateway.limits.max_body_bytes + 1024 * 1024 < 128 * 1024 * 1024
    assert WorkerSettings().max_message_bytes >= limit
    raised = GatewaySettings(limits=LimitSettings(max_body_bytes=200 * 1024 * 1024))
    assert raised.worker_message_limit() == 201 * 1024 * 1024
    assert GatewaySettings(worker_max_message_bytes=4096).worker_message_limit() == 4096
    largest = EncodedClip(bytes(gateway.limits.max_body_bytes), "mp4", ClipLimits(1, 1.0, 1, 1), 1000, 10**9)
    message = link.work_to_pb(Work("r" * 128, largest, stream="x" * 128, chunk_frames=1024, chunk_timeout_s=30.0))
    assert message.ByteSize() <= limit


async def test_a_clip_whose_worker_dies_carries_on_on_another_worker() -> None:
    answered = asyncio.Event()
    first, second = await start_worker(Slow(4, answered)), await start_worker(Slow(4, answered))
    second.engine.streams = first.engine.streams  # as if both shared Redis
    client = RemoteEngineClient([first.address, second.address], clip_chunk_frames=2)
    await client.start()
    clip = EncodedClip(rolling_clip(24, 96, 64), "mp4", clip_limits(LIMITS), every_nth=2)
    try:
        sid = "clip-moves"
        await client.open_stream(EstimateOptions(), stream_id=sid)
        seen: list[int] = []

        async def run() -> None:
            async for step in client.submit(Work(sid, clip, stream=sid, chunk_frames=2, chunk_timeout_s=30.0)):
                seen.extend(r.frame_index for r in step.results)

        pushing = asyncio.create_task(run())
        await asyncio.wait_for(answered.wait(), 120)  # some chunks answered by the worker the channel picked
        dying, other = (first, second) if first.engine.frames_pushed else (second, first)
        await dying.server.stop(0)  # dies with a chunk in flight
        await asyncio.wait_for(pushing, 120)
        tail = await client.close_stream(sid)
    finally:
        await client.aclose()
        await other.server.stop(0)
    assert seen == list(range(12))  # every kept frame answered once, in order
    assert tail == []
    assert dying.engine.frames_pushed >= 4
    assert other.engine.frames_pushed >= 12 - dying.engine.frames_pushed


async def test_a_limit_the_worker_finds_while_decoding_reaches_the_gateway_as_it_is() -> None:
    worker = await start_worker(ToyEngine("decoder"))
    client = RemoteEngineClient([worker.address], clip_chunk_frames=4)
    await client.start()
    limits = LimitSettings(max_clip_frames=30, max_clip_seconds=600)
    upload = _upload(rolling_clip(60, 96, 64, kind="webm"), MediaKind.WEBM)  # WebM states no frame count
    try:
        with pytest.raises(PayloadTooLarge, match="more than 30 frames"):
            await run_clip(client, upload, EstimateOptions(), limits, 1, time.monotonic() + 600)
    finally:
        await client.aclose()
        await worker.server.stop(0)
    assert worker.engine.streams == {}  # the clip's private stream was closed
    assert worker.engine.frames_pushed >= 4  # the worker ran the clip until its decoder found the limit
