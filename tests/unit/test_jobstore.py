"""JobStore contract, in memory and on a real Redis: leases, write-once frames, cancellation, staged input."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest

from service.jobs.memory import MemoryJobStore
from service.jobs.store import INPUT_CHUNK_BYTES, JobRecord, JobState, JobStore, UnknownJob
from tests.conftest import RedisServer


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


def record(job_id: str = "job-aaaaaaaaaaaaaaaa") -> JobRecord:
    return JobRecord(job_id=job_id, kind="clip", request_id="r1", created_s=100.0, params={"model": "m"})


async def test_create_get_and_staged_input_in_pieces(store: JobStore) -> None:
    staged = bytes(range(256)) * (INPUT_CHUNK_BYTES // 128 + 3)  # more than two pieces
    await store.create(record(), staged)
    got = await store.get("job-aaaaaaaaaaaaaaaa")
    assert got == record()
    assert await store.read_input(got.job_id) == staged
    assert await store.active_ids() == [got.job_id]
    with pytest.raises(UnknownJob):
        await store.get("job-missing-missing")


async def test_one_owner_at_a_time_until_its_lease_lapses(store: JobStore) -> None:
    await store.create(record(), b"x")
    first = await store.claim("job-aaaaaaaaaaaaaaaa", "a", now_s=1000.0, lease_s=10.0)
    assert first is not None
    assert first.owner == "a"
    assert first.attempts == 1
    assert await store.claim("job-aaaaaaaaaaaaaaaa", "b", now_s=1005.0, lease_s=10.0) is None
    assert await store.update("job-aaaaaaaaaaaaaaaa", owner="b", state=JobState.RUNNING) is None
    taken = await store.claim("job-aaaaaaaaaaaaaaaa", "b", now_s=1011.0, lease_s=10.0)
    assert taken is not None
    assert taken.attempts == 2
    assert await store.update("job-aaaaaaaaaaaaaaaa", owner="a", lease_until=2000.0) is None  # a lost it


async def test_frames_are_written_once_and_done_counts_the_contiguous_prefix(store: JobStore) -> None:
    await store.create(record(), b"x")
    assert await store.put_frames("job-aaaaaaaaaaaaaaaa", 2, [b"c", b"d"]) == 0
    assert await store.put_frames("job-aaaaaaaaaaaaaaaa", 0, [b"a", b"b"]) == 4
    assert await store.put_frames("job-aaaaaaaaaaaaaaaa", 1, [b"B", b"C"]) == 4  # a replay changes nothing
    assert await store.read_frames("job-aaaaaaaaaaaaaaaa", 0, 10) == [b"a", b"b", b"c", b"d"]
    assert await store.read_frames("job-aaaaaaaaaaaaaaaa", 3, 4) == [b"d"]
    assert (await store.get("job-aaaaaaaaaaaaaaaa")).frames_done == 4


async def test_cancel_is_final_and_frees_the_input(store: JobStore) -> None:
    await store.create(record(), b"x")
    cancelled = await store.cancel("job-aaaaaaaaaaaaaaaa", now_s=5.0)
    assert cancelled.state is JobState.CANCELLED
    assert await store.update("job-aaaaaaaaaaaaaaaa", state=JobState.RUNNING) is None  # never revived
    assert await store.claim("job-aaaaaaaaaaaaaaaa", "a", now_s=0.0, lease_s=1.0) is None
    with pytest.raises(UnknownJob):
        await store.read_input("job-aaaaaaaaaaaaaaaa")
    assert await store.active_ids() == []
    assert await store.job_ids(10) == ["job-aaaaaaaaaaaaaaaa"]
