"""Both FrameBuffer implementations against the same behaviour (Redis: a real redis-server)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import numpy as np
import pytest
import redis.asyncio as aioredis

from service.engine.framebuffer import (
    AppendStatus,
    FrameBuffer,
    FrameRecord,
    MemoryFrameBuffer,
    StreamMeta,
    decode_record,
    encode_record,
)
from service.engine.framebuffer.base import MAX_FRAMES_AHEAD, REPLAY_MARGIN
from service.engine.framebuffer.redis import RedisFrameBuffer, stream_keys
from service.engine.types import WindowMode
from service.engine.windows import WindowSpec
from service.errors import Conflict, InvalidInput, Overloaded, Unavailable, UnknownStream
from tests.conftest import RedisServer, free_port


def make_record(index: int, people: int = 1, token_views: int = 0, dim: int = 0, seed: int = 0) -> FrameRecord:
    rng = np.random.default_rng(abs(seed + index))
    f = np.float32
    return FrameRecord(
        frame_index=index,
        timestamp_s=None if index % 2 else index / 30.0,
        image_size=(640, 480),
        track_ids=np.arange(people, dtype=np.int32) + 1,
        boxes=rng.random((people, 4), dtype=f) * 100,
        box_scores=rng.random(people, dtype=f),
        keypoints_px=rng.random((people, 17, 2), dtype=f) * 500,
        keypoints_norm=rng.random((people, 17, 2), dtype=f),
        scores=rng.random((people, 17), dtype=f),
        tokens=rng.random((people, token_views, 17, dim), dtype=f),
    )


def assert_same_record(a: FrameRecord, b: FrameRecord) -> None:
    assert (a.frame_index, a.timestamp_s, a.image_size) == (b.frame_index, b.timestamp_s, b.image_size)
    for name in ("track_ids", "boxes", "box_scores", "keypoints_px", "keypoints_norm", "scores", "tokens"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


@pytest.mark.parametrize(("people", "views", "dim"), [(0, 0, 0), (1, 0, 0), (3, 2, 8), (2, 1, 5)])
def test_codec_round_trip(people: int, views: int, dim: int) -> None:
    rec = make_record(7, people, views, dim)
    data = encode_record(rec)
    assert len(data) == 41 + 4 * people * (1 + 4 + 1 + 34 + 34 + 17 + views * 17 * dim)
    assert_same_record(decode_record(data), rec)
    with pytest.raises(ValueError, match="bytes"):
        decode_record(data[:-1] if len(data) > 41 else data + b"x")
    with pytest.raises(ValueError, match="not a frame record"):
        decode_record(b"JUNK" + data[4:])


@pytest.mark.parametrize("boxes", [None, (), ((1, 2, 30, 40),), [[1.5, 2.0, 30.0, 40.0], [5, 6, 7, 8]]])
def test_stream_meta_equals_its_stored_copy(boxes: object) -> None:
    """A meta read back from Redis (JSON) equals the one the stream was opened with: the engine compares them to
    notice a stream re-created under the same id. Zero client boxes stay zero boxes (not "no boxes given")."""
    m = StreamMeta("s", "pstmo", WindowMode.CAUSAL, True, 3, boxes)  # type: ignore[arg-type]
    back = StreamMeta.from_json(m.to_json())
    assert back == m
    assert (back.boxes is None) == (boxes is None)


BufferFactory = Callable[[], FrameBuffer]


@pytest.fixture(params=["memory", "redis"])
async def make_buffer(request: pytest.FixtureRequest) -> AsyncIterator[BufferFactory]:
    made: list[FrameBuffer] = []

    def factory() -> FrameBuffer:
        if request.param == "memory":
            buf: FrameBuffer = made[0] if made else MemoryFrameBuffer()
        else:
            server: RedisServer = request.getfixturevalue("redis_server")
            buf = RedisFrameBuffer(server.url, ttl_s=60)
        made.append(buf)
        return buf

    yield factory
    for buf in made:
        await buf.aclose()


def meta(mode: WindowMode = WindowMode.CENTRED) -> StreamMeta:
    return StreamMeta(f"s-{uuid.uuid4().hex}", "pstmo", mode, flip_test=False, boxes=((0.0, 0.0, 10.0, 10.0),))


async def test_create_state_and_errors(make_buffer: BufferFactory) -> None:
    buf = make_buffer()
    m = meta()
    state = await buf.create(m)
    assert state.meta == m
    assert (await buf.state(m.stream_id)).meta == m
    assert (await buf.create(m)).meta == m  # a retried open with the same metadata is idempotent
    with pytest.raises(Conflict, match="other options"):
        await buf.create(replace(m, flip_test=True))
    with pytest.raises(UnknownStream):
        await buf.state("nope")
    with pytest.raises(UnknownStream):
        await buf.append("nope", make_record(0), WindowSpec(3), WindowMode.CENTRED)
    assert await buf.ping()
    assert await buf.delete(m.stream_id)
    assert not await buf.delete(m.stream_id)


async def test_centred_emission_in_order_and_out_of_order(make_buffer: BufferFactory) -> None:
    buf, window = make_buffer(), WindowSpec(5, 2)  # lag 4 each side
    m = meta()
    await buf.create(m)
    emitted: list[int] = []
    for i in [0, 1, 2, 4, 3, 5, 6, 7, 8, 9]:  # 4 before 3
        em = await buf.append(m.stream_id, make_record(i, 2, 1, 3), window, WindowMode.CENTRED)
        assert em.status is AppendStatus.ADDED
        emitted.extend(em.targets)
        if len(em.targets):
            needed = range(max(0, em.targets[0] - 4), min(em.newest, em.targets[-1] + 4) + 1)
            assert sorted(em.records) == list(needed)
            assert_same_record(em.records[needed[0]], make_record(needed[0], 2, 1, 3))
        if i == 4:
            assert len(em.targets) == 0  # frame 3 is missing
        if i == 3:
            assert list(em.targets) == [0]
    assert emitted == list(range(6))
    state = await buf.state(m.stream_id)
    assert (state.frames_received, state.next_emit, state.contiguous_high) == (10, 6, 9)
    tail = await buf.flush(m.stream_id, window, WindowMode.CENTRED)
    assert list(tail.targets) == [6, 7, 8, 9]
    assert tail.newest == 9
    assert sorted(tail.records) == list(range(2, 10))
    again = await buf.flush(m.stream_id, window, WindowMode.CENTRED)
    assert list(again.targets) == [6, 7, 8, 9]
    with pytest.raises(Conflict, match="closed"):
        await buf.append(m.stream_id, make_record(10), window, WindowMode.CENTRED)


async def test_causal_emits_at_once(make_buffer: BufferFactory) -> None:
    buf, window = make_buffer(), WindowSpec(9, 1)
    m = meta(WindowMode.CAUSAL)
    await buf.create(m)
    for i in range(6):
        em = await buf.append(m.stream_id, make_record(i), window, WindowMode.CAUSAL)
        assert list(em.targets) == [i]
        assert sorted(em.records) == list(range(max(0, i - 4), i + 1))


async def test_retry_is_idempotent_and_replays_the_original_emission(make_buffer: BufferFactory) -> None:
    buf, window = make_buffer(), WindowSpec(3, 1)
    m = meta()
    await buf.create(m)
    for i in range(5):
        await buf.append(m.stream_id, make_record(i), window, WindowMode.CENTRED, tracker=f"t{i}".encode())
    view = await buf.tracker(m.stream_id, fresh=True)
    assert (view.meta, view.tracker) == (m, b"t4")
    retry = await buf.append(
        m.stream_id, make_record(3, seed=99), window, WindowMode.CENTRED, tracker=b"x", seen=view.token
    )
    assert retry.status is AppendStatus.DUPLICATE
    assert list(retry.targets) == [2]  # what frame 3 completed the first time
    assert_same_record(retry.records[3], make_record(3))  # first write wins
    after = await buf.tracker(m.stream_id, fresh=True)
    assert after == view  # a duplicate stores no tracker state
    assert (await buf.state(m.stream_id)).frames_received == 5


async def test_a_stale_tracker_token_is_a_conflict_and_stores_nothing(make_buffer: BufferFactory) -> None:
    buf, window = make_buffer(), WindowSpec(1)
    m = meta()
    await buf.create(m)
    opened = await buf.tracker(m.stream_id)
    assert (opened.meta, opened.tracker) == (m, None)
    first = await buf.append(m.stream_id, make_record(0), window, WindowMode.CENTRED, b"a", seen=opened.token)
    assert first.status is AppendStatus.ADDED
    moved = await buf.tracker(m.stream_id)  # this process's copy follows its own write (no round trip on Redis)
    assert (moved.tracker, moved == await buf.tracker(m.stream_id, fresh=True)) == (b"a", True)
    assert moved.token != opened.token
    em = await buf.append(m.stream_id, make_record(1), window, WindowMode.CENTRED, b"b", seen=opened.token)
    assert em.status is AppendStatus.CONFLICT
    state = await buf.state(m.stream_id)
    assert (state.frames_received, state.contiguous_high) == (1, 0)  # frame 1 was not stored
    untracked = await buf.append(m.stream_id, make_record(1), window, WindowMode.CENTRED, seen=moved.token)
    assert untracked.status is AppendStatus.ADDED
    assert await buf.tracker(m.stream_id) == moved  # a frame without tracker state keeps the token


@pytest.mark.redis
async def test_another_writer_makes_the_copy_stale_and_the_conflict_refreshes_it(redis_server: RedisServer) -> None:
    """Two workers on one Redis: each tracks from its own copy; after the other one wrote, the append answers
    CONFLICT with the stored state, so the retry needs no read. A stream opened again under the same id (other
    options) is told apart by its token even where the copy's counters would match."""
    one, two = RedisFrameBuffer(redis_server.url), RedisFrameBuffer(redis_server.url)
    m, window = meta(), WindowSpec(1)
    await one.create(m)
    seen_by_two = await two.tracker(m.stream_id)
    await one.append(
        m.stream_id, make_record(0), window, WindowMode.CENTRED, b"one", (await one.tracker(m.stream_id)).token
    )
    stale = await two.append(m.stream_id, make_record(1), window, WindowMode.CENTRED, b"two", seen_by_two.token)
    assert stale.status is AppendStatus.CONFLICT
    refreshed = await two.tracker(m.stream_id)
    assert refreshed == await one.tracker(m.stream_id)
    assert refreshed.tracker == b"one"
    ok = await two.append(m.stream_id, make_record(1), window, WindowMode.CENTRED, b"two", refreshed.token)
    assert ok.status is AppendStatus.ADDED
    await two.flush(m.stream_id, window, WindowMode.CENTRED)
    await two.delete(m.stream_id)
    again = replace(m, flip_test=True)
    await two.create(again)
    old_copy = await one.tracker(m.stream_id)  # one still holds the first stream's state
    assert old_copy.meta == m
    reopened = await one.append(m.stream_id, make_record(0), window, WindowMode.CENTRED, b"x", old_copy.token)
    assert reopened.status is AppendStatus.CONFLICT
    assert (await one.tracker(m.stream_id)).meta == again
    await one.aclose()
    await two.aclose()


async def test_frame_index_out_of_range_is_refused(make_buffer: BufferFactory) -> None:
    buf, window = make_buffer(), WindowSpec(1)
    m = meta()
    await buf.create(m)
    for index in (-1, MAX_FRAMES_AHEAD + 1):
        with pytest.raises(InvalidInput, match="out of range"):
            await buf.append(m.stream_id, make_record(index), window, WindowMode.CENTRED)
    assert (await buf.append(m.stream_id, make_record(MAX_FRAMES_AHEAD), window, WindowMode.CENTRED)).status is (
        AppendStatus.ADDED
    )


async def test_long_stream_keeps_only_what_windows_need(make_buffer: BufferFactory) -> None:
    buf, window = make_buffer(), WindowSpec(9, 1)
    m = meta()
    await buf.create(m)
    for i in range(200):
        await buf.append(m.stream_id, make_record(i), window, WindowMode.CENTRED)
    if isinstance(buf, MemoryFrameBuffer):
        held = len(buf._streams[m.stream_id].frames)
    else:
        assert isinstance(buf, RedisFrameBuffer)
        held = await buf._redis.hlen(stream_keys(m.stream_id)[1])
    assert held <= window.frames + REPLAY_MARGIN + 1
    # a retry of a long-gone frame changes nothing and answers nothing
    old = await buf.append(m.stream_id, make_record(3), window, WindowMode.CENTRED)
    assert old.status is AppendStatus.DUPLICATE
    assert len(old.targets) == 0


async def test_a_frame_that_completes_many_targets_can_be_retried(make_buffer: BufferFactory) -> None:
    """Frame 0 arrives last and completes every target at once. If lifting them fails (deadline, overload), the
    client retries frame 0 and must get the same emission back: its frames must not have been trimmed by the
    very append that emitted them."""
    buf, window = make_buffer(), WindowSpec(3, 1)
    m = meta()
    await buf.create(m)
    for i in range(1, 3 * REPLAY_MARGIN):
        assert len((await buf.append(m.stream_id, make_record(i), window, WindowMode.CENTRED)).targets) == 0
    first = await buf.append(m.stream_id, make_record(0), window, WindowMode.CENTRED)
    assert list(first.targets) == list(range(3 * REPLAY_MARGIN - 1))
    retry = await buf.append(m.stream_id, make_record(0), window, WindowMode.CENTRED)
    assert retry.status is AppendStatus.DUPLICATE
    assert retry.targets == first.targets
    assert sorted(retry.records) == sorted(first.records)
    # the next append trims as usual
    await buf.append(m.stream_id, make_record(3 * REPLAY_MARGIN), window, WindowMode.CENTRED)
    assert len((await buf.append(m.stream_id, make_record(0), window, WindowMode.CENTRED)).targets) == 0


async def test_memory_buffer_bound_and_ttl() -> None:
    now = [0.0]
    buf = MemoryFrameBuffer(max_streams=2, ttl_s=10.0, clock=lambda: now[0])
    a, b, c = meta(), meta(), meta()
    await buf.create(a)
    await buf.create(b)
    with pytest.raises(Overloaded):
        await buf.create(c)
    now[0] = 5.0
    await buf.state(a.stream_id)  # touch a
    now[0] = 12.0  # b idle for 12 s > ttl
    await buf.create(c)
    assert await buf.count() == 2
    with pytest.raises(UnknownStream):
        await buf.state(b.stream_id)


@pytest.mark.redis
async def test_redis_streams_expire_and_are_shared_between_instances(redis_server: RedisServer) -> None:
    # ttl long enough that a busy machine reaches the checks before it passes; expiry is then polled for
    first, second = RedisFrameBuffer(redis_server.url, ttl_s=3.0), RedisFrameBuffer(redis_server.url, ttl_s=3.0)
    m = meta()
    await first.create(m)
    window = WindowSpec(3)
    await first.append(m.stream_id, make_record(0), window, WindowMode.CENTRED)
    em = await second.append(m.stream_id, make_record(1), window, WindowMode.CENTRED)
    assert list(em.targets) == [0]
    client = aioredis.Redis.from_url(redis_server.url)
    ttls = [await client.pttl(k) for k in stream_keys(m.stream_id)[:3]]
    assert all(0 < t <= 3000 for t in ttls)
    assert await first.count() >= 1
    for _ in range(600):  # expires after 3 s of idleness; polled for at most ~60 s
        if await client.exists(*stream_keys(m.stream_id)) == 0:
            break
        await asyncio.sleep(0.1)
    with pytest.raises(UnknownStream):
        await second.state(m.stream_id)
    assert await client.exists(*stream_keys(m.stream_id)) == 0
    await client.aclose()
    await first.aclose()
    await second.aclose()


async def test_redis_down_is_unavailable() -> None:
    buf = RedisFrameBuffer(f"redis://127.0.0.1:{free_port()}/0")
    assert not await buf.ping()
    with pytest.raises(Unavailable):
        await buf.create(meta())
    await buf.aclose()
