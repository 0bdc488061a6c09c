"""One road: every use of the engine is ``submit`` plus an adapter, and closing a submit early releases what it holds.

- cancelling (``aclose``) a private run mid-clip closes its private stream, in this process and over the worker
  link (the worker's frame buffer holds no stream afterwards);
- a private run, the same frames submitted into a named stream in chunks, and the same frames through a private
  stream over the worker link give the same results (clip == stream by construction).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from service.engine.inprocess import InProcessEngine, build_engine
from service.engine.types import Frame, Work
from service.engine.work import collect, in_private_stream
from service.metrics import Metrics
from service.rpc.remote_engine import RemoteEngineClient
from tests.service.test_engine_support import assert_same_poses, keypoint_clip, options, tiny_settings
from tests.service.worker_support import serve_worker

FRAMES = 24


@pytest.fixture
async def engine() -> AsyncIterator[InProcessEngine]:
    eng = await build_engine(tiny_settings(), Metrics())
    yield eng
    await eng.aclose()


async def source(frames: list[Frame]) -> AsyncIterator[Frame]:
    for frame in frames:
        yield frame


async def test_cancelling_a_submit_mid_clip_closes_its_private_stream(engine: InProcessEngine) -> None:
    frames: list[Frame] = list(keypoint_clip(FRAMES))
    work = Work("cancelled", source(frames), options("pstmo"), chunk_frames=4)
    steps = in_private_stream(engine, work, "kp")
    first = await anext(steps)
    assert first.summary is None  # mid-clip: more to come
    assert await engine.pipeline.buffer.count() == 1  # its private stream is open
    await steps.aclose()
    assert await engine.pipeline.buffer.count() == 0  # closed by the cancellation, not left to expire


async def test_cancelling_a_remote_submit_mid_clip_closes_the_workers_private_stream(engine: InProcessEngine) -> None:
    server, _, address = await serve_worker(engine)
    remote = RemoteEngineClient([address], clip_chunk_frames=4)
    await remote.start()
    try:
        frames: list[Frame] = list(keypoint_clip(FRAMES))
        steps = remote.submit(Work("cancelled", source(frames), options("pstmo")))
        async with contextlib.aclosing(steps):
            await anext(steps)
            assert await engine.pipeline.buffer.count() == 1
        assert await engine.pipeline.buffer.count() == 0
    finally:
        await remote.aclose()
        await server.stop(0)


async def test_private_run_equals_named_stream_equals_remote_private_stream(engine: InProcessEngine) -> None:
    frames: list[Frame] = list(keypoint_clip(FRAMES))
    private = await collect(engine, Work("private", frames, options("pstmo")))
    sid = (await engine.open_stream(options("pstmo"), "named")).stream_id
    named = Work("named", frames, stream=sid, close=True, chunk_frames=5)
    steps = [step async for step in engine.submit(named)]
    assert [s.frames_decoded for s in steps] == [5, 10, 15, 20, 24, 24]  # the close: its tail, the summary
    assert steps[-1].summary is not None
    assert steps[-1].summary.model.name == "pstmo"
    assert_same_poses(private.frames, [r for s in steps for r in s.results])
    server, _, address = await serve_worker(engine)
    remote = RemoteEngineClient([address], clip_chunk_frames=3)
    await remote.start()
    try:
        over_link = await collect(remote, Work("remote", source(frames), options("pstmo")))
    finally:
        await remote.aclose()
        await server.stop(0)
    assert [f.frame_index for f in over_link.frames] == list(range(FRAMES))
    assert over_link.model.name == "pstmo"
    assert_same_poses(private.frames, over_link.frames)
    assert await engine.pipeline.buffer.count() == 0
