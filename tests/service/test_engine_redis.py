"""Stream state in a real Redis: a stream moves between two engine instances, even when the first one stops."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any

import numpy as np
import pytest
from redis.asyncio.connection import AbstractConnection

from service.engine.inprocess import build_engine
from service.engine.types import (
    EstimateOptions,
    Frame,
    FrameResult,
    WindowMode,
    Work,
)
from service.engine.work import collect, push
from service.metrics import Metrics
from tests.conftest import RedisServer
from tests.service.test_engine_support import assert_same_poses, image_clip, keypoint_clip, options, tiny_settings

pytestmark = pytest.mark.redis


async def moved_stream(
    redis_url: str, frames: Sequence[Frame], opts: EstimateOptions, switch_at: int
) -> tuple[list[FrameResult], list[FrameResult]]:
    """Whole-clip reference (engine A), and the stream: frames alternate between A and B up to ``switch_at``,
    a retry of the last frame A took is sent to B, then A stops and B finishes the stream."""
    first = await build_engine(tiny_settings(redis_url), Metrics())
    second = await build_engine(tiny_settings(redis_url), Metrics())
    try:
        reference = (await collect(first, Work("r", list(frames), opts))).frames
        info = await first.open_stream(opts)
        got: list[FrameResult] = []
        last_on_first: list[FrameResult] = []
        for i, frame in enumerate(frames[:switch_at]):
            engine = first if i % 2 == 0 else second
            out = await push(engine, info.stream_id, [frame])
            got.extend(out)
            if engine is first:
                last_on_first, last_index = out, i
        replay = await push(second, info.stream_id, [frames[last_index]])  # the gateway's retry elsewhere
        assert [f.frame_index for f in replay] == [f.frame_index for f in last_on_first]
        assert_same_poses(last_on_first, replay)
        await first.aclose()  # stopped mid-stream
        for frame in frames[switch_at:]:
            got.extend(await push(second, info.stream_id, [frame]))
        state = await second.get_stream(info.stream_id)
        assert state.frames_received == len(frames)
        got.extend(await second.close_stream(info.stream_id))
        return reference, got
    finally:
        await first.aclose()
        await second.aclose()


async def test_pstmo_stream_moves_between_engines(redis_server: RedisServer) -> None:
    clip = keypoint_clip(24, seed=5)
    reference, streamed = await moved_stream(redis_server.url, clip, options("pstmo"), switch_at=13)
    assert len(reference) == 24
    assert_same_poses(reference, streamed)


@pytest.mark.slow
async def test_capf_temporal_stream_with_two_tracks_moves_between_engines(redis_server: RedisServer) -> None:
    clip = image_clip(5, encoded=(2,))
    reference, streamed = await moved_stream(redis_server.url, clip, options("capf-t", boxes=True), switch_at=3)
    assert [[p.track_id for p in f.people] for f in streamed] == [[0, 1]] * 5
    assert_same_poses(reference, streamed)
    assert not np.allclose(streamed[0].people[0].keypoints_3d, streamed[0].people[1].keypoints_3d)


async def test_redis_engine_reports_readiness_and_stream_survival(redis_server: RedisServer) -> None:
    engine = await build_engine(tiny_settings(redis_server.url), Metrics())
    try:
        ready = await engine.ready()
        assert ready.ready
        assert ready.detail["frame_buffer"] == "redis ok"
        info = await engine.open_stream(options("pstmo"))
    finally:
        await engine.aclose()
    other = await build_engine(tiny_settings(redis_server.url), Metrics())
    try:
        assert (await other.get_stream(info.stream_id)).model == "pstmo"
        assert await other.close_stream(info.stream_id) == []
    finally:
        await other.aclose()


async def test_a_stream_id_reopened_through_another_engine_is_served_with_its_new_options(
    redis_server: RedisServer,
) -> None:
    """Engine A knows stream ``cam-1`` as causal; it is closed and opened again (centred) through engine B. A's
    pushes and close must follow the stream as it now is, not A's memory of the old one."""
    first = await build_engine(tiny_settings(redis_server.url), Metrics())
    second = await build_engine(tiny_settings(redis_server.url), Metrics())
    try:
        clip = keypoint_clip(6, seed=3)
        reference = (await collect(first, Work("r", list(clip), options("pstmo")))).frames
        await first.open_stream(options("pstmo", WindowMode.CAUSAL), stream_id="cam-1")
        assert [f.frame_index for f in await push(first, "cam-1", [clip[0]])] == [0]
        await second.close_stream("cam-1")
        await second.open_stream(options("pstmo"), stream_id="cam-1")
        assert await push(first, "cam-1", [clip[0]]) == []  # centred: frame 0 waits for its future frames
        for frame in clip[1:]:
            assert await push(second, "cam-1", [frame]) == []
        assert_same_poses(reference, await first.close_stream("cam-1"))
    finally:
        await first.aclose()
        await second.aclose()


class SentToRedis:
    """Counts what this process sends to Redis: each command or pipeline is one round trip."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = AbstractConnection.send_packed_command

        async def counted(conn: AbstractConnection, command: Any, check_health: bool = True) -> None:
            self.count += 1
            await original(conn, command, check_health)

        monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)

    async def of(self, call: Awaitable[object]) -> int:
        before = self.count
        await call
        return self.count - before


@pytest.mark.parametrize(("model", "clip", "takeover"), [("pstmo", keypoint_clip(10), 1), ("capf-t", image_clip(6), 2)])
async def test_a_stream_frame_costs_one_round_trip(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, model: str, clip: Sequence[Frame], takeover: int
) -> None:
    """Each frame of a stream is one Redis round trip on the engine that serves it: the tracker state it tracks
    with is the engine's own copy (image frames are tracked: their state is written with every frame). An
    engine taking over a tracked stream pays one more on its first frame (its copy is stale: the append answers
    with the stored state); a keypoint stream's state never changes, so any copy stays good. An engine that
    never saw the stream reads its metadata and tracker state first, in one more round trip."""
    sent = SentToRedis(monkeypatch)
    first = await build_engine(tiny_settings(redis_server.url), Metrics())
    second = await build_engine(tiny_settings(redis_server.url), Metrics())
    try:
        info = await first.open_stream(options(model, boxes=model == "capf-t"))
        half = len(clip) // 2
        await push(first, info.stream_id, [clip[0]])  # (the first append also loads the script into Redis)
        assert await sent.of(push(second, info.stream_id, [clip[1]])) == 2
        on_first = [await sent.of(push(first, info.stream_id, [f])) for f in clip[2:half]]
        assert on_first == [takeover] + [1] * (half - 3)
        on_second = [await sent.of(push(second, info.stream_id, [f])) for f in clip[half:]]
        assert on_second == [takeover] + [1] * (len(clip) - half - 1)
    finally:
        await first.aclose()
        await second.aclose()
