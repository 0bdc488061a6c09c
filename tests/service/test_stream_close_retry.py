"""A close retried after its reply was lost gets the same tail, not 404 (docs/streams-and-state.md).

A close flushes the stream's tail, lifts it and deletes the stream, then answers. When its worker died after the
delete and before the reply, the gateway's (or the client's) retry found no stream: 404, and the tail — the last
frames' poses — was lost. Now the delete keeps the close's answer under the stream id for ``CLOSED_TTL_S`` (in the
same step), and a close that finds no stream answers with it. The lost reply is played by calling the close twice
(the first answer dropped); with Redis the retry goes to a second engine (another worker) on the same store.
"""

from __future__ import annotations

import pytest

from service.engine.framebuffer import MemoryFrameBuffer
from service.engine.framebuffer.base import CLOSED_TTL_S
from service.engine.inprocess import build_engine
from service.engine.work import push
from service.errors import UnknownStream
from service.metrics import Metrics
from tests.service.test_engine_support import assert_same_poses, keypoint_clip, options, tiny_settings
from tests.unit.test_framebuffer import BufferFactory, make_buffer, meta  # noqa: F401  (its fixture)


async def test_a_deleted_streams_answer_is_kept_briefly(make_buffer: BufferFactory) -> None:  # noqa: F811
    buf = make_buffer()
    m = meta()
    await buf.create(m)
    assert await buf.closed_answer(m.stream_id) is None
    assert await buf.delete(m.stream_id, b"the tail")
    assert await buf.closed_answer(m.stream_id) == b"the tail"
    with pytest.raises(UnknownStream):  # the stream itself is gone: its id may be opened again
        await buf.state(m.stream_id)
    await buf.create(m)
    assert await buf.closed_answer(m.stream_id) is None  # the new stream's close is another close
    assert await buf.delete(m.stream_id)
    assert await buf.closed_answer(m.stream_id) is None  # a delete without an answer keeps none


async def test_a_kept_answer_expires() -> None:
    now = [0.0]
    buf = MemoryFrameBuffer(clock=lambda: now[0])
    m = meta()
    await buf.create(m)
    await buf.delete(m.stream_id, b"the tail")
    now[0] += CLOSED_TTL_S - 1.0
    assert await buf.closed_answer(m.stream_id) == b"the tail"
    now[0] += 1.0
    assert await buf.closed_answer(m.stream_id) is None


@pytest.mark.parametrize("store", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def test_a_close_retried_after_its_reply_was_lost_gets_the_same_tail(
    store: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("redis_server").url if store == "redis" else ""
    first = await build_engine(tiny_settings(url), Metrics())
    second = await build_engine(tiny_settings(url), Metrics()) if url else first  # another worker on the store
    try:
        info = await first.open_stream(options("pstmo"))  # centred: the last frames' poses come with the close
        for frame in keypoint_clip(12, seed=2):
            await push(first, info.stream_id, [frame])
        tail = await first.close_stream(info.stream_id)  # its reply lost (the worker died before sending it)
        assert [r.frame_index for r in tail] == list(range(4, 12))
        retried = await second.close_stream(info.stream_id)
        assert_same_poses(retried, tail, atol=0.0)
        with pytest.raises(UnknownStream):  # closed: no push or look-up finds it
            await second.get_stream(info.stream_id)
    finally:
        await first.aclose()
        if second is not first:
            await second.aclose()
