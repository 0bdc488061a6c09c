"""Frames a Redis stream received out of order, past a missing one, and then lost (Redis evicted its frames hash
under ``maxmemory``, the meta hash kept) answer 410 ``stream-frames-lost``: the push that fills the gap emitted only
itself and the stream stalled behind the lost frames (later frames were never emitted, and 4096 frames on were
refused as out of range), and the close flushed them as gaps — frames the client sent were left out of 200 answers
without a word. The memory buffer, which cannot lose frames, emits them."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from service.engine.framebuffer import MemoryFrameBuffer
from service.engine.framebuffer.redis import RedisFrameBuffer, stream_keys
from service.engine.types import WindowMode
from service.engine.windows import WindowSpec
from service.errors import StreamFramesLost
from tests.conftest import RedisServer
from tests.service.test_stream_frames_lost import evict_frames
from tests.unit.test_framebuffer import make_record, meta

pytestmark = pytest.mark.redis

SINGLE, CAUSAL = WindowSpec(1), WindowMode.CAUSAL  # a single-frame model: its windows need no earlier frame


async def test_frames_received_past_a_gap_and_lost_are_refused_not_skipped(redis_server: RedisServer) -> None:
    memory, redis = MemoryFrameBuffer(), RedisFrameBuffer(redis_server.url, ttl_s=60)
    m = meta(CAUSAL)
    try:
        for buf in (memory, redis):
            await buf.create(m)
            for i in (0, 1, 2, 3, 4, 6, 7, 8, 9):  # frame 5 comes last
                await buf.append(m.stream_id, make_record(i), SINGLE, CAUSAL)
        assert (await memory.append(m.stream_id, make_record(5), SINGLE, CAUSAL)).targets == range(5, 10)
        await evict_frames(redis_server.url, m.stream_id)
        with pytest.raises(StreamFramesLost, match="4 stored frame"):  # was: targets 5..5, frames 6..9 never emitted
            await redis.append(m.stream_id, make_record(5), SINGLE, CAUSAL)
        with pytest.raises(StreamFramesLost):  # was: a tail of 6..9 without their frames (skipped as gaps)
            await redis.flush(m.stream_id, SINGLE, CAUSAL)
    finally:
        await redis.aclose()


async def test_a_retried_frame_whose_answer_was_lost_with_the_frames_is_refused(redis_server: RedisServer) -> None:
    """The retry of an emitted frame (its first answer never reached the client) found no stored frame and was
    stored again as new: a 200 with no results, where the memory buffer replays the frame's emission."""
    buf, m = RedisFrameBuffer(redis_server.url, ttl_s=60), meta(CAUSAL)
    try:
        await buf.create(m)
        for i in range(3):
            await buf.append(m.stream_id, make_record(i), SINGLE, CAUSAL)
        await evict_frames(redis_server.url, m.stream_id)
        with pytest.raises(StreamFramesLost):
            await buf.append(m.stream_id, make_record(2), SINGLE, CAUSAL)
    finally:
        await buf.aclose()


async def test_frames_no_window_needs_any_more_are_not_missed(redis_server: RedisServer) -> None:
    """Only frames a window or a replay still needs count: a single-frame stream in order whose kept frames (the
    replay margin) were evicted answers its next frame as before."""
    buf, m = RedisFrameBuffer(redis_server.url, ttl_s=60), meta(CAUSAL)
    try:
        await buf.create(m)
        for i in range(20):
            await buf.append(m.stream_id, make_record(i), SINGLE, CAUSAL)
        await evict_frames(redis_server.url, m.stream_id)
        emission = await buf.append(m.stream_id, make_record(20), SINGLE, CAUSAL)
        assert (emission.targets, sorted(emission.records)) == (range(20, 21), [20])
        assert (await buf.flush(m.stream_id, SINGLE, CAUSAL)).targets == range(21, 21)
    finally:
        await buf.aclose()


async def test_a_retried_frame_whose_emission_record_was_lost_is_refused(redis_server: RedisServer) -> None:
    """The emits hash evicted alone (frames kept): the retry of a frame (its first answer never reached the client)
    replayed nothing — a 200 without the results its first push had made, where the memory buffer replays them."""
    memory, redis, m = MemoryFrameBuffer(), RedisFrameBuffer(redis_server.url, ttl_s=60), meta(CAUSAL)
    try:
        for buf in (memory, redis):
            await buf.create(m)
            for i in range(5):
                await buf.append(m.stream_id, make_record(i), SINGLE, CAUSAL)
        assert (await memory.append(m.stream_id, make_record(4), SINGLE, CAUSAL)).targets == range(4, 5)
        client = aioredis.Redis.from_url(redis_server.url)
        try:
            assert await client.delete(stream_keys(m.stream_id)[2]) == 1
        finally:
            await client.aclose()
        with pytest.raises(StreamFramesLost, match="frame 4"):
            await redis.append(m.stream_id, make_record(4), SINGLE, CAUSAL)
    finally:
        await redis.aclose()


async def test_a_tracker_state_lost_is_refused_not_started_again(redis_server: RedisServer) -> None:
    """The tracker key evicted alone: another worker read 'no tracker state' — what a stream has before its first
    tracked frame — and tracked from nothing, handing out track ids 0, 1, ... again to whoever it saw next, so the
    windows of a track id mixed two people's frames."""
    first, other, m = RedisFrameBuffer(redis_server.url, ttl_s=60), RedisFrameBuffer(redis_server.url, ttl_s=60), meta()
    try:
        await first.create(m)
        assert (await other.tracker(m.stream_id)).tracker is None  # not tracked yet: no state, rightly
        for i in range(3):
            view = await first.tracker(m.stream_id)
            await first.append(m.stream_id, make_record(i), SINGLE, CAUSAL, tracker=b"state %d" % i, seen=view.token)
        client = aioredis.Redis.from_url(redis_server.url)
        try:
            assert await client.delete(stream_keys(m.stream_id)[3]) == 1
        finally:
            await client.aclose()
        with pytest.raises(StreamFramesLost, match="tracker state"):
            await other.tracker(m.stream_id, fresh=True)
        with pytest.raises(StreamFramesLost, match="tracker state"):  # a stale append's answer brings no state
            await other.append(m.stream_id, make_record(3), SINGLE, CAUSAL, tracker=b"x", seen="stale")
    finally:
        await first.aclose()
        await other.aclose()
