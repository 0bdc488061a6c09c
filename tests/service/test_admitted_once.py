"""Work admitted is not refused for time further down (docs/jobs.md, "Overload"): a request fed to a stream in
chunks within one call — a long keypoint sequence, a posted clip run on a worker, a job's frames — is admitted by
time at its first chunk; the chunks after it are the same request, counted in the engine's backlog but never refused
for time. Each chunk was admitted anew against what was left of the request's deadline, so under load a request was
refused (503) after most of its frames had been computed, and its retry computed them all again.

No clock: the engine's backlog is a real :class:`~service.engine.admission.Backlog` whose rate is measured from
events at given instants, and another request's work is admitted into it between two chunks.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from service.engine.admission import Backlog
from service.engine.inprocess import InProcessEngine
from service.engine.types import KeypointFrame, Work
from service.errors import OverCapacity
from service.metrics import Metrics
from tests.service.test_engine_support import keypoint_clip, options, tiny_settings

FRAMES = 24


@pytest.fixture
async def engine() -> AsyncIterator[InProcessEngine]:
    served = InProcessEngine(tiny_settings(), Metrics())
    await served.start()
    yield served
    await served.aclose()


def measured_backlog() -> Backlog:
    """A backlog that has measured one real second per second of work."""
    backlog, now = Backlog(window_s=2.0), time.monotonic()
    backlog.admit(1.0, now - 2.0)
    backlog.finish(1.0, now - 1.0)
    assert backlog.seconds_per_work == pytest.approx(1.0)
    return backlog


async def test_a_request_admitted_at_its_first_chunk_runs_to_its_end(engine: InProcessEngine) -> None:
    backlog = engine.pipeline.backlog = measured_backlog()
    frames = keypoint_clip(FRAMES)

    async def source() -> AsyncIterator[KeypointFrame]:
        for frame in frames:
            if frame.frame_index == 8:  # two chunks in, another request brings 1000 s of work
                backlog.admit(1000.0, time.monotonic())
            yield frame

    sid = "kp-admitted-once"
    await engine.open_stream(options("pstmo"), sid)
    work = Work(sid, source(), options("pstmo"), time.monotonic() + 60.0, sid, close=True, chunk_frames=4)
    results = [r async for step in engine.submit(work) for r in step.results]
    assert sorted(r.frame_index for r in results) == list(range(FRAMES))


async def test_a_new_request_is_still_refused_at_its_first_chunk(engine: InProcessEngine) -> None:
    backlog = engine.pipeline.backlog = measured_backlog()
    backlog.admit(1000.0, time.monotonic())
    sid = "kp-refused"
    await engine.open_stream(options("pstmo"), sid)
    work = Work(sid, keypoint_clip(8), options("pstmo"), time.monotonic() + 60.0, sid, chunk_frames=4)
    with pytest.raises(OverCapacity):
        async for _ in engine.submit(work):
            pass
