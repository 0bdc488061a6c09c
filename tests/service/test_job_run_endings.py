"""How a gateway's job run ends: a job that fails for good frees its engine stream at once (before, the stream
stayed open — a slot of the engine's ``max_streams``, its frames in the frame buffer — until its TTL,
``engine.stream_ttl_s``, 300 s); a claim that lands as the gateway stops is handed back. The in-process engine
(tiny random models) and the in-memory job store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from service.engine.inprocess import build_engine
from service.engine.types import EngineClient, EstimateOptions
from service.errors import UnknownStream
from service.gateway.jobs.runner import MAX_ATTEMPTS, JobRunner
from service.jobs.memory import MemoryJobStore
from service.jobs.store import JobRecord, JobState, KeyJobLimits
from service.metrics import Metrics
from tests.service.job_runs import BODY, run_sweep, submitted
from tests.service.rest_support import tiny_settings


@pytest.fixture
async def engine() -> AsyncIterator[EngineClient]:
    e: EngineClient = await build_engine(tiny_settings(), Metrics())
    yield e
    await e.aclose()


async def test_a_job_failed_for_its_key_quota_closes_its_stream(engine: EngineClient) -> None:
    """Its results pass the key's stored bytes (security.quotas.max_job_bytes): 429 job-quota-exceeded, for good."""
    store = MemoryJobStore(60.0, limits=KeyJobLimits(max_bytes=len(BODY) + 64))
    job_id = await submitted(store, key="k1")
    await run_sweep(store, engine)
    failed = await store.get(job_id)
    assert failed.state is JobState.FAILED, failed
    assert failed.error is not None
    assert "job-quota-exceeded" in str(failed.error["type"])
    with pytest.raises(UnknownStream):
        await engine.get_stream(f"job-{job_id}")


async def test_a_claim_landing_as_the_gateway_stops_is_handed_over(
    engine: EngineClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway stops while a claim is in flight: the store took it (lease, one more attempt) but its reply
    comes after the sweep was cancelled. Before, no run knew of the job: it kept the lease for ``jobs.lease_s`` and
    the claim counted against MAX_ATTEMPTS; now the landed claim is handed back at once, as a running job is."""
    store = MemoryJobStore(60.0)
    job_id = await submitted(store)
    landed, reply, real_claim = asyncio.Event(), asyncio.Event(), store.claim

    async def claim_with_late_reply(*args: object, **kwargs: object) -> JobRecord | None:
        claimed = await real_claim(*args, **kwargs)  # type: ignore[arg-type]
        landed.set()
        await reply.wait()  # the reply still on its way back
        return claimed

    monkeypatch.setattr(store, "claim", claim_with_late_reply)
    runner = JobRunner(store, tiny_settings(), lambda: engine)
    runner.start()
    await landed.wait()
    asyncio.get_running_loop().call_soon(reply.set)  # arrives just after the stop cancelled the sweep
    await runner.aclose()
    after = await store.get(job_id)
    assert after.lease_until == 0.0, after
    assert after.counted_attempts == 0, after


async def test_a_job_given_up_after_max_attempts_closes_the_stream_its_runs_left(engine: EngineClient) -> None:
    """Its gateway died on every run (leases lapsed): the run that gives it up never reaches its stream, which
    the earlier runs left open — closed now as the job fails, not at its TTL."""
    store = MemoryJobStore(60.0)
    job_id = await submitted(store, attempts=MAX_ATTEMPTS)
    await engine.open_stream(EstimateOptions(model="pstmo-9"), stream_id=f"job-{job_id}")  # an earlier run's
    await run_sweep(store, engine)
    failed = await store.get(job_id)
    assert failed.state is JobState.FAILED, failed
    with pytest.raises(UnknownStream):
        await engine.get_stream(f"job-{job_id}")
