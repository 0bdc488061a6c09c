"""Stream state in a real Redis: a stream moves between two engine instances, even when the first one stops."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from service.engine.inprocess import build_engine
from service.engine.types import EstimateOptions, EstimateRequest, Frame, FrameResult, WindowMode
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
        reference = (await first.estimate(EstimateRequest("r", list(frames), opts))).frames
        info = await first.open_stream(opts)
        got: list[FrameResult] = []
        last_on_first: list[FrameResult] = []
        for i, frame in enumerate(frames[:switch_at]):
            engine = first if i % 2 == 0 else second
            out = await engine.push_frame(info.stream_id, frame)
            got.extend(out)
            if engine is first:
                last_on_first, last_index = out, i
        replay = await second.push_frame(info.stream_id, frames[last_index])  # the gateway's retry elsewhere
        assert [f.frame_index for f in replay] == [f.frame_index for f in last_on_first]
        assert_same_poses(last_on_first, replay)
        await first.aclose()  # stopped mid-stream
        for frame in frames[switch_at:]:
            got.extend(await second.push_frame(info.stream_id, frame))
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
        reference = (await first.estimate(EstimateRequest("r", list(clip), options("pstmo")))).frames
        await first.open_stream(options("pstmo", WindowMode.CAUSAL), stream_id="cam-1")
        assert [f.frame_index for f in await first.push_frame("cam-1", clip[0])] == [0]
        await second.close_stream("cam-1")
        await second.open_stream(options("pstmo"), stream_id="cam-1")
        assert await first.push_frame("cam-1", clip[0]) == []  # centred: frame 0 waits for its future frames
        for frame in clip[1:]:
            assert await second.push_frame("cam-1", frame) == []
        assert_same_poses(reference, await first.close_stream("cam-1"))
    finally:
        await first.aclose()
        await second.aclose()
