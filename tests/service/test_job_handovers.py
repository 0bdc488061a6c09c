"""A job handed over by gateways that stop gracefully (rolling restarts) is not failed for it: a handover is no
failed run. A run whose gateway died (its lease left to lapse) still counts (test_job_store_failures.py). Real Redis
and the in-process engine (tiny random models)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator

import pytest

from service.config import JobSettings
from service.engine.framebuffer.redis import stream_keys
from service.engine.inprocess import build_engine
from service.engine.types import EngineClient, Progress, StreamInfo, Work
from service.errors import Overloaded
from service.gateway.jobs.runner import MAX_ATTEMPTS, JobRunner
from service.jobs.redis import RedisJobStore
from service.jobs.store import JobState
from service.metrics import Metrics
from tests.conftest import RedisServer
from tests.service.job_runs import run_sweep, submitted
from tests.service.rest_support import tiny_settings


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RedisJobStore]:
    s = RedisJobStore(redis_server.url, ttl_s=60.0, prefix="t" + secrets.token_hex(4))
    yield s
    await s.aclose()


@pytest.fixture
async def engine() -> AsyncIterator[EngineClient]:
    e: EngineClient = await build_engine(tiny_settings(), Metrics())
    yield e
    await e.aclose()


async def restart_mid_run(store: RedisJobStore, engine: EngineClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """One gateway's life: it claims the job, its run reaches the engine (held there), and the gateway stops
    gracefully (``aclose``, as at SIGTERM): the job is handed over."""
    reached = asyncio.Event()

    async def held(stream_id: str) -> StreamInfo:
        reached.set()
        await asyncio.Event().wait()  # until the gateway's stop cancels the run
        raise AssertionError("unreachable")

    with monkeypatch.context() as patch:
        patch.setattr(engine, "get_stream", held)
        runner = JobRunner(store, tiny_settings(), lambda: engine)
        await runner.sweep()
        (run,) = runner._running.values()
        reaching = asyncio.create_task(reached.wait())
        await asyncio.wait([run, reaching], return_when=asyncio.FIRST_COMPLETED)  # a run that ends is not held
        reaching.cancel()
        await runner.aclose()


async def test_a_job_through_more_rolling_restarts_than_max_attempts_still_runs(
    store: RedisJobStore, engine: EngineClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, every graceful handover counted as a failed attempt: after MAX_ATTEMPTS rolling restarts of its
    gateways the next run failed the job with 500 'given up after 20 runs', though no run had failed."""
    job_id = await submitted(store)
    for _ in range(MAX_ATTEMPTS + 1):
        await restart_mid_run(store, engine, monkeypatch)
        record = await store.get(job_id)
        assert record.state is JobState.RUNNING, record
        assert record.lease_until == 0.0  # handed over at once
    await run_sweep(store, engine)
    record = await store.get(job_id)
    assert record.state is JobState.DONE, record
    assert record.frames_done == 12
    assert record.attempts == MAX_ATTEMPTS + 2  # every run is still shown


async def test_a_job_claimed_just_before_its_gateway_stops_is_handed_over(
    store: RedisJobStore, engine: EngineClient
) -> None:
    """A gateway that stops between claiming a job and starting its run (the run's task cancelled before its first
    step, so none of its own handling runs) still hands the job over: before, its lease was kept until it lapsed
    (``jobs.lease_s``), and the claim counted as a failed run."""
    job_id = await submitted(store)
    runner = JobRunner(store, tiny_settings(), lambda: engine)
    await runner.sweep()
    assert runner._running, "the job was not claimed"
    await runner.aclose()
    record = await store.get(job_id)
    assert record.lease_until == 0.0, record
    assert record.counted_attempts == 0, record


class Pushes:
    """Records each engine call of a job (its stream and first frame); the ``hold``-th waits until cancelled."""

    def __init__(self, engine: EngineClient, hold: int | None = None) -> None:
        self.real = engine.submit
        self.calls: list[tuple[str | None, int]] = []
        self.hold = hold
        self.reached = asyncio.Event()

    def __call__(self, work: Work) -> AsyncGenerator[Progress]:
        assert isinstance(work.frames, list)
        self.calls.append((work.stream, work.frames[0].frame_index))
        return self._held() if len(self.calls) == self.hold else self.real(work)

    async def _held(self) -> AsyncGenerator[Progress]:
        self.reached.set()
        await asyncio.Event().wait()
        yield Progress([])


async def test_a_job_resumes_its_new_stream_after_a_handover(
    store: RedisJobStore, engine: EngineClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job whose first stream was lost runs in a new one (``job-<id>-g<n>``); after a graceful handover the next
    run resumes that stream where the stored results end. Before, each run looked only for the first stream, so
    every handover opened yet another stream and pushed the whole clip again from frame 0."""
    settings = tiny_settings(jobs=JobSettings(keypoint_chunk_frames=4))
    job_id = await submitted(store, 40)
    assert await store.claim(job_id, "died-at-once", now_s=0.0, lease_s=1.0) is not None  # no stream opened

    first = Pushes(engine, hold=6)
    with monkeypatch.context() as patch:
        patch.setattr(engine, "submit", first)
        runner = JobRunner(store, settings, lambda: engine)
        await runner.sweep()
        (run,) = runner._running.values()
        reaching = asyncio.create_task(first.reached.wait())
        await asyncio.wait([run, reaching], return_when=asyncio.FIRST_COMPLETED)
        reaching.cancel()
        await runner.aclose()  # a rolling restart
    stream = first.calls[0][0]
    assert stream == f"job-{job_id}-g2"
    stored = (await store.get(job_id)).frames_done
    assert stored > 0

    second = Pushes(engine)
    with monkeypatch.context() as patch:
        patch.setattr(engine, "submit", second)
        await run_sweep(store, engine, settings)
    done = await store.get(job_id)
    assert done.state is JobState.DONE, done
    assert done.frames_done == 40
    assert second.calls[0] == (stream, stored), second.calls  # the same stream, from the first frame not stored


async def test_a_refused_run_waits_at_least_the_refusals_retry_after(
    store: RedisJobStore, engine: EngineClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run the engine refuses (503/429 with Retry-After: models loading, over capacity) is tried again no sooner
    than the refusal says. Before, the job's own backoff (1 s after the first run) ignored it: the job asked again
    too early, and each early try spent one of its MAX_ATTEMPTS runs."""

    async def refused(work: Work) -> AsyncGenerator[Progress]:
        raise Overloaded("the engine is over capacity", retry_after_s=20.0)
        yield Progress([])

    monkeypatch.setattr(engine, "submit", refused)
    job_id = await submitted(store)
    before = time.time()
    await run_sweep(store, engine)
    record = await store.get(job_id)
    assert record.state is JobState.RUNNING, record
    assert record.lease_until >= before + 20.0, record.lease_until - before


async def test_a_job_whose_stream_lost_its_frames_runs_again_in_a_new_stream(
    store: RedisJobStore, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job whose engine stream lost its stored frames (Redis eviction; the stream's meta kept) runs again in a new
    stream from frame 0 and keeps the frames it has: its input is staged. Before, the engine's 410 stream-frames-lost
    failed the job for good, naming its internal stream."""
    settings = tiny_settings(jobs=JobSettings(keypoint_chunk_frames=4), redis_url=redis_server.url)
    engine: EngineClient = await build_engine(settings, Metrics())
    real = engine.submit
    pushes: list[tuple[str | None, int]] = []

    async def evicted_first(work: Work) -> AsyncGenerator[Progress]:
        assert work.stream is not None
        await store._redis.delete(stream_keys(work.stream)[1])  # what Redis's eviction does to the stream's frames
        async for step in real(work):
            yield step

    def submit(work: Work) -> AsyncGenerator[Progress]:
        assert isinstance(work.frames, list)
        pushes.append((work.stream, work.frames[0].frame_index))
        return evicted_first(work) if len(pushes) == 4 else real(work)

    monkeypatch.setattr(engine, "submit", submit)
    job_id = await submitted(store, 40)
    runner = JobRunner(store, settings, lambda: engine)
    try:
        for _ in range(3):  # the run that meets the loss, then the one that runs again
            await runner.sweep()
            await asyncio.gather(*runner._running.values())
            if (await store.get(job_id)).state.terminal:
                break
            await store.update(job_id, lease_until=0.0)  # its retry's backoff, not waited for
    finally:
        await runner.aclose()
        await engine.aclose()
    done = await store.get(job_id)
    assert done.state is JobState.DONE, done
    assert done.frames_done == 40
    assert pushes[-1][0] != pushes[0][0]  # finished in a new stream
