"""``RedisFrameBuffer.count`` (``pose3d_active_streams`` on /readyz) counts streams only: the job store shares the
frame buffer's Redis and its job records are ``pose3d:job:{…}:<id>:meta`` keys too."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from service.engine.framebuffer import StreamMeta
from service.engine.framebuffer.redis import RedisFrameBuffer
from service.engine.types import WindowMode
from service.jobs.redis import RedisJobStore
from service.jobs.store import JobRecord, new_job_id
from tests.conftest import RedisServer

pytestmark = pytest.mark.redis


async def test_jobs_in_the_same_redis_are_not_counted_as_streams(redis_server: RedisServer) -> None:
    url = redis_server.url.rsplit("/", 1)[0] + "/9"  # a database of its own: no other test's streams
    admin = aioredis.Redis.from_url(url)
    await admin.flushdb()
    buffer, jobs = RedisFrameBuffer(url), RedisJobStore(url, ttl_s=60.0)  # the job store's default prefix
    try:
        await buffer.create(StreamMeta("s1", "pstmo", WindowMode.CAUSAL, flip_test=False))
        for _ in range(3):
            job = JobRecord(job_id=new_job_id(""), kind="clip", request_id="r", created_s=1.0, params={})
            await jobs.create(job, b"input")
        assert await buffer.count() == 1
    finally:
        await admin.flushdb()
        await admin.aclose()
        await buffer.aclose()
        await jobs.aclose()
