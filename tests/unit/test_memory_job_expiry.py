"""The in-memory job store (the embedded service) expires a job ``ttl_s`` after its last change, as documented and as
the Redis store does: reading a job (a client polling its status or its results) does not keep it. Before, every
read renewed it, so a finished job someone kept polling held its results in the gateway's memory for ever."""

from __future__ import annotations

import pytest

from service.jobs.memory import MemoryJobStore
from service.jobs.store import JobRecord, JobState, UnknownJob, new_job_id


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_reads_do_not_keep_a_job_past_its_ttl() -> None:
    clock = Clock()
    store = MemoryJobStore(ttl_s=100.0, clock=clock)
    job_id = new_job_id("")
    await store.create(JobRecord(job_id=job_id, kind="keypoints", request_id="r1", created_s=0.0), b"x")
    await store.put_frames(job_id, 0, [b"{}"])
    assert await store.update(job_id, state=JobState.DONE) is not None  # its last change, at 0
    for now in (40.0, 80.0, 99.0):  # polled all along
        clock.now = now
        assert (await store.get(job_id)).state is JobState.DONE
        assert await store.read_frames(job_id, 0, 1) == [b"{}"]
        assert await store.job_ids(10, "") == [job_id]
    clock.now = 100.0
    with pytest.raises(UnknownJob):
        await store.get(job_id)
    assert await store.job_ids(10, "") == []


async def test_a_change_renews_it() -> None:
    clock = Clock()
    store = MemoryJobStore(ttl_s=100.0, clock=clock)
    job_id = new_job_id("")
    await store.create(JobRecord(job_id=job_id, kind="keypoints", request_id="r1", created_s=0.0), b"x")
    clock.now = 90.0
    await store.put_frames(job_id, 0, [b"{}"])
    clock.now = 150.0
    assert (await store.get(job_id)).frames_done == 1
    assert await store.claim(job_id, "me", now_s=150.0, lease_s=10.0) is not None
    clock.now = 249.0
    assert await store.read_input(job_id) == b"x"
