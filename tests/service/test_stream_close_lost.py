"""A close answered 410 ``stream-frames-lost`` frees what the stream held (docs/streams-and-state.md).

The frame buffer's Redis lost a stream's frames (evicted): its close cannot flush the tail and answers 410 ("open a
new stream"). It kept both the stream (closed, in the buffer) and the key's open-stream slot until the stream's
TTL, so a key at ``MAX_STREAMS`` could not open the new stream the answer asks for. Now the close that answers 410
forgets the stream and releases its slot. The engine is the in-process one over a real Redis, behind the
ownership layer the gateway wraps every engine in (the caller's key is set as a transport would set it).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from service.config import QuotaSettings
from service.engine.inprocess import build_engine
from service.engine.types import EngineClient, Work
from service.engine.work import push
from service.errors import StreamFramesLost, UnknownStream
from service.metrics import Metrics
from service.security.guard import Security, principal
from service.security.owned_engine import OwnedEngine
from tests.conftest import RedisServer
from tests.service.security_support import Clock, make_keys, secured
from tests.service.test_engine_support import keypoint_clip, options, tiny_settings
from tests.service.test_stream_frames_lost import evict_frames

pytestmark = pytest.mark.redis


async def close_by(how: str, engine: EngineClient, stream_id: str) -> None:
    """Close ``stream_id`` as REST's DELETE does (``close_stream``) or as a stream's last push does (``submit``
    with ``close``: gRPC's half-close, a WebSocket's ``close``)."""
    if how == "close_stream":
        await engine.close_stream(stream_id)
        return
    async with contextlib.aclosing(engine.submit(Work("r", [], stream=stream_id, close=True))) as steps:
        async for _ in steps:
            pass


@pytest.mark.parametrize("how", ["close_stream", "submit"])
async def test_a_close_answered_410_forgets_the_stream_and_frees_its_slot(
    how: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    engine = await build_engine(tiny_settings(redis_server.url), Metrics())
    keys = make_keys(tmp_path)
    settings = secured(keys, QuotaSettings(rate_per_s=0.0, max_streams=1))
    owned = OwnedEngine(engine, Security(settings, Metrics(), clock=Clock()))
    caller = principal.set(keys.alice_id)
    try:
        info = await owned.open_stream(options("pstmo"), "lost-close-1")  # the key's one slot
        for frame in keypoint_clip(4, seed=3):  # centred over 9 frames: nothing emitted yet, all 4 in the tail
            assert await push(owned, info.stream_id, [frame]) == []
        await evict_frames(redis_server.url, info.stream_id)
        with pytest.raises(StreamFramesLost):
            await close_by(how, owned, info.stream_id)
        with pytest.raises(UnknownStream):  # forgotten, not kept closed until its TTL
            await engine.pipeline.buffer.state(info.stream_id)
        opened = await owned.open_stream(options("pstmo"), "lost-close-2")  # the slot is free for the new stream
        assert opened.stream_id == "lost-close-2"
        await owned.close_stream(opened.stream_id)
    finally:
        principal.reset(caller)
        await engine.aclose()
