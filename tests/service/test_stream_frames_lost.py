"""A stream whose stored frames Redis lost (evicted under ``maxmemory``, the meta hash kept) answers 410
``stream-frames-lost`` for the push whose windows need them: the frames they complete were left out of a 200
answer without a word (and windows were built from the frames that were left)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis import Redis

from service.engine.clips import ClipDecoder
from service.engine.framebuffer.redis import RedisFrameBuffer, stream_keys
from service.engine.inprocess import build_engine
from service.engine.types import WindowMode
from service.engine.windows import WindowSpec
from service.engine.work import push
from service.errors import StreamFramesLost
from service.metrics import Metrics
from tests.conftest import RedisServer
from tests.service.media_samples import encode_clip
from tests.service.test_engine_support import keypoint_clip, options, tiny_settings
from tests.service.test_redis_restart import (  # noqa: F401  (its fixtures: a gateway over a worker over Redis)
    FRAMES,
    RESTART_BEFORE,
    Deployed,
    RestartableRedis,
    assert_retryable,
    deployed,
    redis,
)
from tests.unit.test_framebuffer import make_record, meta

pytestmark = pytest.mark.redis


async def evict_frames(url: str, stream_id: str) -> None:
    """What Redis's eviction does to a stream's frames hash (its meta hash stays)."""
    client = aioredis.Redis.from_url(url)
    try:
        assert await client.delete(stream_keys(stream_id)[1]) == 1
    finally:
        await client.aclose()


async def test_an_append_whose_windows_lost_their_frames_is_refused(redis_server: RedisServer) -> None:
    buf, window = RedisFrameBuffer(redis_server.url, ttl_s=60), WindowSpec(5, 2)  # 4 frames of lag each side
    m = meta()
    try:
        await buf.create(m)
        for i in range(4):
            assert not (await buf.append(m.stream_id, make_record(i), window, WindowMode.CENTRED)).targets
        await evict_frames(redis_server.url, m.stream_id)
        with pytest.raises(StreamFramesLost, match="lost"):
            await buf.append(m.stream_id, make_record(4), window, WindowMode.CENTRED)  # completes frame 0
        with pytest.raises(StreamFramesLost):  # its retry replays the same windows
            await buf.append(m.stream_id, make_record(4), window, WindowMode.CENTRED)
        with pytest.raises(StreamFramesLost):  # nor is the tail flushed without them
            await buf.flush(m.stream_id, window, WindowMode.CENTRED)
    finally:
        await buf.aclose()


async def test_a_tail_whose_frames_were_lost_is_refused_and_one_with_gaps_is_not(redis_server: RedisServer) -> None:
    buf, window = RedisFrameBuffer(redis_server.url, ttl_s=60), WindowSpec(5, 2)
    gaps, lost = meta(), meta()
    try:
        for m in (gaps, lost):
            await buf.create(m)
            for i in (0, 1, 3):  # frame 2 never came
                await buf.append(m.stream_id, make_record(i), window, WindowMode.CENTRED)
        assert list((await buf.flush(gaps.stream_id, window, WindowMode.CENTRED)).targets) == [0, 1, 2, 3]
        await evict_frames(redis_server.url, lost.stream_id)
        with pytest.raises(StreamFramesLost):  # frames 0 and 1 came and are gone: the tail would leave them out
            await buf.flush(lost.stream_id, window, WindowMode.CENTRED)
    finally:
        await buf.aclose()


async def test_a_push_into_a_stream_that_lost_its_frames_is_not_answered_short(redis_server: RedisServer) -> None:
    engine = await build_engine(tiny_settings(redis_server.url), Metrics())
    try:
        clip = keypoint_clip(12, seed=5)
        info = await engine.open_stream(options("pstmo"))  # centred: a frame's result waits for its future frames
        answered = [r.frame_index for frame in clip[:4] for r in await push(engine, info.stream_id, [frame])]
        await evict_frames(redis_server.url, info.stream_id)

        async def push_the_rest() -> None:
            for frame in clip[4:]:
                answered.extend(r.frame_index for r in await push(engine, info.stream_id, [frame]))

        with pytest.raises(StreamFramesLost):  # once a push completes frame 0, whose pose cannot be made any longer
            await push_the_rest()
        assert answered == []  # and no later frame was answered before it (frames 0-3 were left out, with 200s)
    finally:
        await engine.aclose()


def evict_all_frames(url: str) -> None:
    """Eviction of every stream's frames hash (blocking: called on a thread)."""
    with Redis.from_url(url) as store:
        for key in store.scan_iter(match="pose3d:*:frames"):
            store.delete(key)


async def test_a_clip_whose_private_stream_lost_its_frames_is_a_retryable_503(
    deployed: Deployed,  # noqa: F811  (the fixture imported above)
    redis: RestartableRedis,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A posted clip runs as a private stream on the worker: its frames evicted between two chunks is the
    service's loss, not a stream of the client's — 503 with Retry-After (as when Redis restarts), not 410 naming
    ``clip-…``, and never a 200 without the lost frames."""
    original = ClipDecoder.decoded

    def evicting(self: ClipDecoder) -> AsyncIterator[Any]:
        async def frames() -> AsyncIterator[Any]:
            count = 0
            async for frame in original(self):
                if count == RESTART_BEFORE:
                    await asyncio.to_thread(evict_all_frames, redis.url)
                count += 1
                yield frame

        return frames()

    monkeypatch.setattr(ClipDecoder, "decoded", evicting)
    files = {"file": ("c.mp4", encode_clip(frames=FRAMES), "video/mp4")}
    assert_retryable(await deployed.http.post("/v1/pose3d", files=files))
