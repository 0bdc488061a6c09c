"""The jobs of one gateway process: the store (Redis when ``redis_url`` is set, else memory), the runner, and
submission (the use cases in :mod:`service.api.jobs`, then staged in the store)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from service.gateway.deps import GatewayState
from service.gateway.jobs.results import checked_job_id
from service.gateway.jobs.runner import JobRunner
from service.jobs.memory import MemoryJobStore
from service.jobs.store import JobRecord, JobStore
from service.security.door import job_limits, owned_job, stamped

log = logging.getLogger("pose3d.jobs")


@dataclass
class Jobs:
    store: JobStore
    runner: JobRunner


def make_jobs(state: GatewayState) -> Jobs:
    """The app's jobs (``app.state.jobs``): its store and a runner on the engine the app serves (not started)."""
    settings = state.settings
    limits = job_limits(settings.security.quotas)
    store: JobStore
    if settings.redis_url:
        from service.jobs.redis import RedisJobStore

        store = RedisJobStore(settings.redis_url, settings.jobs.ttl_s, limits=limits)
    else:
        store = MemoryJobStore(settings.jobs.ttl_s, limits=limits)
    return Jobs(store, JobRunner(store, settings, lambda: state.engine))


@asynccontextmanager
async def jobs_running(jobs: Jobs) -> AsyncIterator[Jobs]:
    """The runner runs for the app's lifetime; running jobs are handed over (leases freed) at exit."""
    jobs.runner.start()
    try:
        yield jobs
    finally:
        await jobs.runner.aclose()
        await jobs.store.aclose()


async def create_job(jobs: Jobs, record: JobRecord, staged: bytes) -> JobRecord:
    """Store a new job owned by the caller (its key's job quotas permitting) and wake the runner."""
    record = stamped(record)
    await jobs.store.create(record, staged)
    jobs.runner.wake()
    log.info("job %s queued (%s, model %s, %s frames)", record.job_id, record.kind, record.params["model"],
             record.frames_total)  # fmt: skip
    return record


async def cancel_owned(jobs: Jobs, job_id: str) -> JobRecord:
    """Cancel the caller's job (a finished job stays as it is) and stop this process's run of it."""
    await owned_job(jobs.store, checked_job_id(job_id))
    record = await jobs.store.cancel(job_id, time.time())
    jobs.runner.cancel_local(job_id)
    return record
