"""JobStore contract, in memory and on a real Redis: leases, write-once frames, cancellation, staged input."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest

from service.errors import PayloadTooLarge
from service.jobs.memory import MemoryJobStore
from service.jobs.store import (
    INPUT_CHUNK_BYTES,
    JobQuotaExceeded,
    JobRecord,
    JobState,
    JobStore,
    KeyJobLimits,
    UnknownJob,
    job_tag,
    key_tag,
    new_job_id,
)
from tests.conftest import RedisServer

LIMITS = KeyJobLimits(max_open=2, max_stored=3, max_bytes=100)
JOB = new_job_id("")


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[JobStore]:
    if request.param == "memory":
        yield MemoryJobStore(ttl_s=60.0, limits=LIMITS)
        return
    from service.jobs.redis import RedisJobStore

    redis: RedisServer = request.getfixturevalue("redis_server")
    s = RedisJobStore(redis.url, ttl_s=60.0, prefix="t" + secrets.token_hex(4), limits=LIMITS)
    yield s
    await s.aclose()


def record(job_id: str = JOB) -> JobRecord:
    return JobRecord(job_id=job_id, kind="clip", request_id="r1", created_s=100.0, params={"model": "m"})


async def test_create_get_and_staged_input_in_pieces(store: JobStore) -> None:
    staged = bytes(range(256)) * (INPUT_CHUNK_BYTES // 128 + 3)  # more than two pieces
    await store.create(record(), staged)
    got = await store.get(JOB)
    assert got == record().with_(input_bytes=len(staged))
    assert await store.read_input(got.job_id) == staged
    assert await store.active_ids() == [got.job_id]
    with pytest.raises(UnknownJob):
        await store.get(new_job_id(""))
    with pytest.raises(UnknownJob):
        await store.get("job-missing-missing")  # not an id new_job_id gives


async def test_one_owner_at_a_time_until_its_lease_lapses(store: JobStore) -> None:
    await store.create(record(), b"x")
    first = await store.claim(JOB, "a", now_s=1000.0, lease_s=10.0)
    assert first is not None
    assert first.owner == "a"
    assert first.attempts == 1
    assert await store.claim(JOB, "b", now_s=1005.0, lease_s=10.0) is None
    assert await store.update(JOB, owner="b", state=JobState.RUNNING) is None
    taken = await store.claim(JOB, "b", now_s=1011.0, lease_s=10.0)
    assert taken is not None
    assert taken.attempts == 2
    assert await store.update(JOB, owner="a", lease_until=2000.0) is None  # a lost it


async def test_frames_are_written_once_and_done_counts_the_contiguous_prefix(store: JobStore) -> None:
    await store.create(record(), b"x")
    assert await store.put_frames(JOB, 2, [b"c", b"d"]) == 0
    assert await store.put_frames(JOB, 0, [b"a", b"b"]) == 4
    assert await store.put_frames(JOB, 1, [b"B", b"C"]) == 4  # a replay changes nothing
    assert await store.read_frames(JOB, 0, 10) == [b"a", b"b", b"c", b"d"]
    assert await store.read_frames(JOB, 3, 4) == [b"d"]
    assert (await store.get(JOB)).frames_done == 4


async def test_cancel_is_final_and_frees_the_input(store: JobStore) -> None:
    await store.create(record(), b"x")
    cancelled = await store.cancel(JOB, now_s=5.0)
    assert cancelled.state is JobState.CANCELLED
    assert await store.update(JOB, state=JobState.RUNNING) is None  # never revived
    assert await store.claim(JOB, "a", now_s=0.0, lease_s=1.0) is None
    with pytest.raises(UnknownJob):
        await store.read_input(JOB)
    assert await store.active_ids() == []
    assert await store.job_ids(10, "") == [JOB]


def kid(n: int, key: str) -> str:
    """The id of ``key``'s n-th job in these tests (the shape :func:`new_job_id` gives)."""
    return f"{key_tag(key)}-job{n:013d}"


def keyed(n: int, key: str) -> JobRecord:
    return record(kid(n, key)).with_(key=key, created_s=100.0 + n)


async def test_each_key_lists_only_its_own_jobs_newest_first(store: JobStore) -> None:
    for n, key in enumerate(["alice", "bob", "alice"]):
        await store.create(keyed(n, key), b"x")
    assert await store.job_ids(10, "alice") == [kid(2, "alice"), kid(0, "alice")]
    assert await store.job_ids(10, "bob") == [kid(1, "bob")]
    assert await store.job_ids(10, "carol") == []
    assert (await store.get(kid(1, "bob"))).key == "bob"


async def test_open_and_stored_job_limits_per_key(store: JobStore) -> None:
    await store.create(keyed(0, "alice"), b"x")
    await store.create(keyed(1, "alice"), b"x")
    with pytest.raises(JobQuotaExceeded, match="2 open jobs") as refused:
        await store.create(keyed(2, "alice"), b"x")
    assert refused.value.status == 429
    assert refused.value.retry_after_s
    await store.create(keyed(3, "bob"), b"x")  # per key
    await store.cancel(kid(0, "alice"), now_s=1.0)  # an ended job frees its open slot ...
    await store.create(keyed(4, "alice"), b"x")
    await store.cancel(kid(1, "alice"), now_s=1.0)
    with pytest.raises(JobQuotaExceeded, match="stores 3 jobs"):  # ... but stays stored until it expires
        await store.create(keyed(5, "alice"), b"x")
    with pytest.raises(UnknownJob):
        await store.get(kid(5, "alice"))


async def test_an_input_larger_than_the_byte_limit_is_413_not_a_retryable_429(store: JobStore) -> None:
    """An input that alone passes the key's byte limit can never be stored: before, it was the 429 of a full quota
    with Retry-After: 1, which a client may retry for ever."""
    with pytest.raises(PayloadTooLarge, match="limit of 100") as refused:
        await store.create(keyed(0, "alice"), b"x" * 101)
    assert refused.value.status == 413
    assert refused.value.retry_after_s is None
    assert await store.job_ids(10, "alice") == []


async def test_a_full_stored_job_count_says_when_its_first_job_expires(store: JobStore) -> None:
    """Stored jobs leave the count only by expiring (``ttl_s`` = 60 s here): the refusal's Retry-After is the time
    until the first of them expires, not the 1 s of a full open-job count (which a client retried for a day)."""
    for n in range(3):
        await store.create(keyed(n, "alice"), b"x")
        await store.cancel(kid(n, "alice"), now_s=1.0)
    with pytest.raises(JobQuotaExceeded, match="stores 3 jobs") as refused:
        await store.create(keyed(3, "alice"), b"x")
    assert refused.value.retry_after_s is not None
    assert 30.0 < refused.value.retry_after_s <= 60.0


async def test_stored_bytes_limit_covers_input_and_results(store: JobStore) -> None:
    await store.create(keyed(1, "alice"), b"x" * 40)
    assert await store.put_frames(kid(1, "alice"), 0, [b"r" * 30]) == 1
    with pytest.raises(JobQuotaExceeded):  # 40 input + 30 results + 31 > 100: nothing of it is stored
        await store.put_frames(kid(1, "alice"), 1, [b"r" * 31])
    assert (await store.get(kid(1, "alice"))).frames_done == 1
    assert await store.put_frames(kid(1, "alice"), 1, [b"r" * 30]) == 2  # exactly 100
    await store.cancel(kid(1, "alice"), now_s=1.0)  # its staged input is dropped: 60 bytes remain
    assert (await store.get(kid(1, "alice"))).stored_bytes == 60
    await store.create(keyed(2, "alice"), b"x" * 40)
    await store.create(keyed(3, ""), b"x" * 1000)  # the anonymous caller (auth off) has no bounds


def test_a_job_id_carries_its_owners_slot_tag() -> None:
    ids = [new_job_id("alice") for _ in range(3)]
    assert len(set(ids)) == 3
    assert {job_tag(i) for i in ids} == {key_tag("alice")}
    assert key_tag("alice") != key_tag("bob")
    assert key_tag("alice") == "2bd806"  # stable: every gateway, every version
    assert all(len(i) == 31 for i in ids)
    for old_or_bad in ("A" * 24, "job-aaaaaaaaaaaaaaaa", ids[0] + "\n", ids[0][:6] + "_" + ids[0][7:], ""):
        assert job_tag(old_or_bad) is None, old_or_bad


async def test_an_id_of_another_key_or_of_no_key_is_refused(store: JobStore) -> None:
    from service.jobs.redis import RedisJobStore

    if isinstance(store, RedisJobStore):  # the store that places jobs by their id's tag
        with pytest.raises(ValueError, match="new_job_id"):
            await store.create(record(kid(0, "bob")).with_(key="alice"), b"x")
    for old in ("A" * 24, "job-aaaaaaaaaaaaaaaa"):
        with pytest.raises(UnknownJob):
            await store.get(old)
        with pytest.raises(UnknownJob):
            await store.put_frames(old, 0, [b"r"])


async def test_a_keys_job_index_expires_with_its_last_job(redis_server: RedisServer) -> None:
    """Every key of a job expires ``ttl_s`` after its last change, the index of its API key's jobs included: before,
    the index never expired, so each key that ever submitted a job kept a sorted set of dead ids for ever."""
    from service.jobs.redis import RedisJobStore

    store = RedisJobStore(redis_server.url, ttl_s=60.0, prefix="t" + secrets.token_hex(4), limits=LIMITS)
    try:
        index = store._index("alice")

        async def index_outlives_job() -> bool:  # renewed to the job's 60 s (not the 1 s set below, nor none)
            return bool(await store._redis.pttl(index) > 30_000)

        await store.create(keyed(1, "alice"), b"x")
        assert await index_outlives_job()
        await store._redis.pexpire(index, 1_000)  # the job changes later than the index's last renewal
        assert await store.claim(kid(1, "alice"), "gw", now_s=1.0, lease_s=10.0) is not None
        assert await index_outlives_job()
        await store._redis.pexpire(index, 1_000)
        assert await store.put_frames(kid(1, "alice"), 0, [b"r"]) == 1
        assert await index_outlives_job()
        await store._redis.pexpire(index, 1_000)
        assert await store.update(kid(1, "alice"), state=JobState.DONE) is not None
        assert await index_outlives_job()
        assert await store.job_ids(10, "alice") == [kid(1, "alice")]
    finally:
        await store.aclose()
