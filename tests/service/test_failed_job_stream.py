"""A job that fails for good frees its engine stream at once: before, the stream stayed open (a slot of the
engine's ``max_streams``, its frames in the frame buffer) until its TTL (``engine.stream_ttl_s``, 300 s). The
in-process engine (tiny random models) and the in-memory job store."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from service.engine.inprocess import build_engine
from service.engine.types import EngineClient
from service.errors import UnknownStream
from service.gateway.jobs.runner import JobRunner
from service.jobs.memory import MemoryJobStore
from service.jobs.store import JobRecord, JobState, KeyJobLimits, new_job_id
from service.metrics import Metrics
from tests.service.rest_support import tiny_settings

POSE = [[320.0 + 4 * j, 180.0 + 10 * j, 0.9] for j in range(17)]
BODY = json.dumps({"keypoints_2d": [POSE] * 12, "image_size": [640, 480], "model": "pstmo-9"}).encode()


@pytest.fixture
async def engine() -> AsyncIterator[EngineClient]:
    e: EngineClient = await build_engine(tiny_settings(), Metrics())
    yield e
    await e.aclose()


async def test_a_job_failed_for_its_key_quota_closes_its_stream(engine: EngineClient) -> None:
    """Its results pass the key's stored bytes (security.quotas.max_job_bytes): 429 job-quota-exceeded, for good."""
    store = MemoryJobStore(60.0, limits=KeyJobLimits(max_bytes=len(BODY) + 64))
    job_id = new_job_id("")
    record = JobRecord(job_id=job_id, kind="keypoints", request_id="r1", created_s=1.0, params={"model": "pstmo-9"},
                       frames_total=12, key="k1")  # fmt: skip
    await store.create(record, BODY)
    runner = JobRunner(store, tiny_settings(), lambda: engine)
    try:
        await runner.sweep()
        await asyncio.gather(*runner._running.values())
    finally:
        await runner.aclose()
    failed = await store.get(job_id)
    assert failed.state is JobState.FAILED, failed
    assert failed.error is not None
    assert "job-quota-exceeded" in str(failed.error["type"])
    with pytest.raises(UnknownStream):
        await engine.get_stream(f"job-{job_id}")
