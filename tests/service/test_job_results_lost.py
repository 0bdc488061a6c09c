"""A job whose record counts frames the store no longer holds (Redis evicted them): its results answer 410
``job-results-lost`` at once — the document is never returned short, and NDJSON / WatchJob never wait for ever.
In memory and on a real Redis; the route's answer on a live gateway is in tests/service/test_jobs.py."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator

import pytest

from service.gateway.jobs import results
from service.jobs.memory import MemoryJobStore
from service.jobs.store import JobRecord, JobResultsLost, JobState, JobStore, new_job_id
from tests.conftest import RedisServer

JOB = new_job_id("")
FRAMES = [json.dumps({"frame_index": i, "people": []}).encode() for i in range(5)]


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[JobStore]:
    if request.param == "memory":
        yield MemoryJobStore(ttl_s=60.0)
        return
    from service.jobs.redis import RedisJobStore

    redis: RedisServer = request.getfixturevalue("redis_server")
    s = RedisJobStore(redis.url, ttl_s=60.0, prefix="t" + secrets.token_hex(4))
    yield s
    await s.aclose()


async def finished_job_frames(store: JobStore) -> None:
    record = JobRecord(job_id=JOB, kind="keypoints", request_id="r1", created_s=1.0, params={"model": "m"})
    await store.create(record, b"x")
    assert await store.put_frames(JOB, 0, FRAMES) == len(FRAMES)


async def finished_job(store: JobStore) -> JobRecord:
    await finished_job_frames(store)
    done = await store.update(JOB, state=JobState.DONE)
    assert done is not None
    return done


async def evict_frame(store: JobStore, position: int) -> None:
    """What Redis's eviction (or a frames key expiring before its record) does to one stored frame."""
    if isinstance(store, MemoryJobStore):
        del store._entry(JOB).frames[position]
    else:
        await store._redis.hdel(store._key(JOB, "frames"), str(position))  # type: ignore[attr-defined]


@pytest.fixture
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(*_: object) -> None:
        raise AssertionError("the reader waited for frames that cannot come")

    monkeypatch.setattr(results, "_wait_for_more", refuse)


async def test_every_frame_present_reads_whole(store: JobStore, no_waiting: None) -> None:
    await finished_job(store)
    assert await results.all_frames(store, JOB, len(FRAMES)) == FRAMES
    assert [frame async for page in results.pages(store, JOB, None, 1.0) for frame in page] == FRAMES


async def test_a_lost_frame_fails_the_document_instead_of_shortening_it(store: JobStore) -> None:
    record = await finished_job(store)
    await evict_frame(store, 2)
    with pytest.raises(JobResultsLost, match="frames 2 to 4 of its 5"):
        await results.document(store, record)


async def test_a_lost_frame_ends_pages_and_ndjson_at_once(store: JobStore, no_waiting: None) -> None:
    await finished_job(store)
    await evict_frame(store, 3)
    got: list[bytes] = []

    async def read_all() -> None:
        async for page in results.pages(store, JOB, None, 1.0):
            got.extend(page)

    with pytest.raises(JobResultsLost):
        await read_all()
    assert got == FRAMES[:3]
    chunks = [chunk async for chunk in results.ndjson(store, JOB, results.pages(store, JOB, 0, 1.0))]
    lines = [json.loads(line) for chunk in chunks for line in chunk.splitlines()]
    assert [line["frame_index"] for line in lines[:-1]] == [1, 2]
    error = lines[-1]["error"]
    assert error["type"] == "urn:pose3d:problem:job-results-lost"
    assert error["status"] == 410
    assert JobResultsLost.grpc_code == "DATA_LOSS"  # what WatchJob aborts with (the one mapping of the error tree)


async def test_a_jobs_last_change_renews_its_frames_with_its_record(redis_server: RedisServer) -> None:
    """Before, the record's last change (its end) renewed the record's expiry but not the frames': they expired
    first, and the job answered 410 for the time between its last frame and its end."""
    from service.jobs.redis import RedisJobStore

    prefix = "t" + secrets.token_hex(4)
    writer = RedisJobStore(redis_server.url, ttl_s=60.0, prefix=prefix)
    ender = RedisJobStore(redis_server.url, ttl_s=3600.0, prefix=prefix)  # the same job, a longer expiry
    try:
        await finished_job_frames(writer)
        await ender.update(JOB, state=JobState.DONE)
        meta_ms = await ender._redis.pttl(ender._key(JOB, "meta"))
        frames_ms = await ender._redis.pttl(ender._key(JOB, "frames"))
    finally:
        await writer.aclose()
        await ender.aclose()
    assert meta_ms > 60_000
    assert frames_ms > 60_000
