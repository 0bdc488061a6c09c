"""Jobs when the store fails them, on a real Redis and the in-process engine (tiny random models): what the store
lost or refused is answered (a failed job, a 503), never a job left queued for ever or holding its key's quota."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator

import pytest

from service.engine.inprocess import build_engine
from service.engine.types import EngineClient
from service.errors import Unavailable
from service.gateway.jobs import results
from service.gateway.jobs.runner import MAX_ATTEMPTS, JobRunner
from service.jobs.redis import RedisJobStore
from service.jobs.store import JobRecord, JobState, KeyJobLimits, UnknownJob, new_job_id
from service.metrics import Metrics
from tests.conftest import RedisServer
from tests.service.job_runs import BODY, submitted
from tests.service.rest_support import tiny_settings


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RedisJobStore]:
    s = RedisJobStore(redis_server.url, ttl_s=60.0, prefix="t" + secrets.token_hex(4))
    yield s
    await s.aclose()


@pytest.fixture
async def runner(store: RedisJobStore) -> AsyncIterator[JobRunner]:
    settings = tiny_settings()
    engine: EngineClient = await build_engine(settings, Metrics())
    r = JobRunner(store, settings, lambda: engine)
    yield r
    await r.aclose()
    await engine.aclose()


async def run_once(runner: JobRunner) -> None:
    """One sweep of the runner and the runs it started, to their end."""
    await runner.sweep()
    await asyncio.gather(*runner._running.values())


async def test_a_job_runs_to_done(store: RedisJobStore, runner: JobRunner) -> None:
    job_id = await submitted(store)
    await run_once(runner)
    record = await store.get(job_id)
    assert record.state is JobState.DONE, record
    assert record.frames_done == 12


async def test_a_job_whose_input_was_evicted_fails_with_410(store: RedisJobStore, runner: JobRunner) -> None:
    """Before, each run ended quietly on UnknownJob: the job stayed queued, was claimed again after every lease
    (its attempts counting up for ever), and its client polled for ever."""
    job_id = await submitted(store)
    await store._redis.delete(store._key(job_id, "input"))  # what Redis's eviction does to the staged input
    await run_once(runner)
    record = await store.get(job_id)
    assert record.state is JobState.FAILED, record
    assert record.error is not None
    assert record.error["type"] == "urn:pose3d:problem:job-input-lost"
    assert record.error["status"] == 410
    assert job_id not in await store.active_ids()  # no gateway claims it again


async def test_a_submission_the_store_failed_to_stage_holds_no_quota(redis_server: RedisServer) -> None:
    """A Redis error after the job's record is written (here RPUSH refused, as an OOM under ``noeviction`` or a lost
    connection refuses it) answers 503, and leaves nothing: before, the record stayed, listed as queued but never
    run, holding one of the key's open jobs for ``jobs.ttl_s`` — a few such 503s and the key got 429 for a day."""
    prefix = "t" + secrets.token_hex(4)
    user = "nopush" + secrets.token_hex(4)
    admin = RedisJobStore(redis_server.url, ttl_s=60.0, prefix=prefix, limits=KeyJobLimits(max_open=1))
    await admin._redis.execute_command("ACL", "SETUSER", user, "on", ">pw", "~*", "&*", "+@all", "-rpush")
    failing = RedisJobStore(redis_server.url.replace("redis://", f"redis://{user}:pw@"), ttl_s=60.0, prefix=prefix,
                            limits=KeyJobLimits(max_open=1))  # fmt: skip
    try:
        job_id = new_job_id("k1")
        record = JobRecord(job_id=job_id, kind="keypoints", request_id="r1", created_s=1.0, key="k1")
        with pytest.raises(Unavailable):
            await failing.create(record, BODY)
        assert await admin.job_ids(10, "k1") == []
        with pytest.raises(UnknownJob):
            await admin.get(job_id)
        await admin.create(record.with_(job_id=new_job_id("k1")), BODY)  # the key's one open job is free
    finally:
        await admin._redis.execute_command("ACL", "DELUSER", user)
        await failing.aclose()
        await admin.aclose()


async def test_a_store_failure_while_streaming_ends_ndjson_with_a_problem_line(redis_server: RedisServer) -> None:
    """A Redis error while a job's NDJSON results stream (here HGETALL refused mid-stream) ends the stream with
    ``{"error": <503 problem>}``; before, the exception escaped the response after it had started: the gateway logged
    "response already started", cut the connection mid-chunk, and ``pose3d estimate`` died on httpx's
    RemoteProtocolError instead of saying what failed (its rerun resumes with ``after``)."""
    prefix = "t" + secrets.token_hex(4)
    user = "nohgetall" + secrets.token_hex(4)
    admin = RedisJobStore(redis_server.url, ttl_s=60.0, prefix=prefix)
    await admin._redis.execute_command("ACL", "SETUSER", user, "on", ">pw", "~*", "&*", "+@all")
    reader = RedisJobStore(redis_server.url.replace("redis://", f"redis://{user}:pw@"), ttl_s=60.0, prefix=prefix)
    try:
        job_id = new_job_id("")
        await admin.create(JobRecord(job_id=job_id, kind="keypoints", request_id="r1", created_s=1.0), BODY)
        frames = [json.dumps({"frame_index": i, "people": []}).encode() for i in range(3)]
        await admin.put_frames(job_id, 0, frames)  # a running job: more frames to come
        lines = results.ndjson(reader, job_id, results.pages(reader, job_id, None, 1.0))
        assert await anext(lines) == b"\n".join(frames) + b"\n"
        await admin._redis.execute_command("ACL", "SETUSER", user, "-hgetall")  # the store fails from here on
        error = json.loads(await anext(lines))["error"]
        assert error["status"] == 503
        assert error["type"] == "urn:pose3d:problem:unavailable"
        assert [line async for line in lines] == []
    finally:
        await admin._redis.execute_command("ACL", "DELUSER", user)
        await reader.aclose()
        await admin.aclose()


async def test_a_job_whose_runs_keep_dying_is_failed_not_run_for_ever(store: RedisJobStore, runner: JobRunner) -> None:
    """A job whose gateway died ``MAX_ATTEMPTS`` times (each run's lease left to lapse, as a SIGKILL or an OOM kill
    leaves it) fails instead of being taken over again: before, only retryable engine errors counted against
    MAX_ATTEMPTS, so a job that kills its gateway went round every gateway for ever."""
    job_id = await submitted(store)
    for n in range(MAX_ATTEMPTS):
        assert await store.claim(job_id, f"dead-{n}", now_s=10.0 * n, lease_s=1.0) is not None  # lapsed long ago
    await run_once(runner)
    record = await store.get(job_id)
    assert record.state is JobState.FAILED, record
    assert record.error is not None
    assert f"{MAX_ATTEMPTS} runs" in record.error["detail"]
    assert record.frames_done == 0  # not run again
    assert job_id not in await store.active_ids()
