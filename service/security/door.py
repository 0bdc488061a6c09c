"""The one door every request, stream frame and job passes: identity → ownership → quota → admission
(docs/ownership-and-quotas.md). Transport-neutral: plain ids, the caller's key id in ``guard.principal``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import TypeVar

from service.config import QuotaSettings
from service.errors import Unauthenticated
from service.jobs.store import JobRecord, JobStore, KeyJobLimits, UnknownJob
from service.security.guard import ANONYMOUS, Security, may_use, principal

T = TypeVar("T")


def caller() -> str:
    """The key id of the caller being served (ANONYMOUS when auth is off)."""
    return principal.get()


def job_limits(quotas: QuotaSettings) -> KeyJobLimits:
    """The per-key job bounds of ``security.quotas``."""
    return KeyJobLimits(max_open=quotas.max_open_jobs, max_stored=quotas.max_stored_jobs,
                        max_bytes=quotas.max_job_bytes)  # fmt: skip


def stamped(record: JobRecord) -> JobRecord:
    """A new job, owned by the caller."""
    return record.with_(key=caller())


async def owned_job(store: JobStore, job_id: str) -> JobRecord:
    """The caller's job ``job_id``; :class:`UnknownJob` (404) when it does not exist or is another key's."""
    record = await store.get(job_id)
    if not may_use(record.key):
        raise UnknownJob(f"job {job_id!r} does not exist or has expired")
    return record


async def own_job_ids(store: JobStore, limit: int) -> list[str]:
    """The caller's newest jobs (only its own), newest first."""
    return await store.job_ids(limit, caller())


async def admit_frame(security: Security | None) -> None:
    """Spend one token of the caller's bucket for a stream frame (any transport); QuotaExceeded when spent."""
    if security is not None:
        await security.admit(caller())


async def revoked(security: Security | None, key_id: str) -> Unauthenticated:
    """Wait until ``key_id`` is revoked (never, for the anonymous caller); the error to close the session with."""
    if security is None or key_id == ANONYMOUS:
        await asyncio.Event().wait()
    assert security is not None
    while security.still_valid(key_id):  # noqa: ASYNC110 — polling: the key file changes, no event says so
        await asyncio.sleep(security.revocation_check_s)
    return Unauthenticated("the API key was revoked")


async def until_revoked(security: Security | None, key_id: str, messages: AsyncGenerator[T]) -> AsyncGenerator[T]:
    """``messages`` while ``key_id`` stands; :class:`Unauthenticated` once it is revoked, as an open stream's session
    ends (a job's watch or NDJSON results; the job itself runs on)."""
    watch = asyncio.create_task(revoked(security, key_id))
    step: asyncio.Future[T | None] | None = None
    try:
        while True:
            step = asyncio.ensure_future(anext(messages, None))
            await asyncio.wait({step, watch}, return_when=asyncio.FIRST_COMPLETED)
            if not step.done():
                raise watch.result()
            if (msg := step.result()) is None:
                return
            yield msg
    finally:
        pending = [task for task in (step, watch) if task is not None]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await messages.aclose()
