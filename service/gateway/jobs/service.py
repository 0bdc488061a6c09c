"""The jobs of one gateway process: the store (Redis when ``redis_url`` is set, else memory), the runner, and
submission (validated as ``POST /v1/pose3d`` validates, then staged in the store)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import Request

from service.api.json_offload import parse_keypoints
from service.api.media import Media, probe_clip
from service.api.models import box_source_for, keypoints_model, resolve_model
from service.api.schemas import ModelRef
from service.api.validation import parse_model_name
from service.config import GatewaySettings, InputKind
from service.engine.types import BoxSource, EngineClient
from service.errors import InvalidInput, UnsupportedMediaType
from service.gateway.deps import GatewayState, engine_of, state_of
from service.gateway.jobs.runner import JobRunner
from service.gateway.jobs.sources import CLIP_FIELDS, clip_options
from service.gateway.problem import request_id_of
from service.jobs.memory import MemoryJobStore
from service.jobs.store import JobRecord, JobStore, new_job_id
from service.security.door import caller, job_limits, stamped

log = logging.getLogger("pose3d.jobs")


@dataclass
class Jobs:
    store: JobStore
    runner: JobRunner


def jobs_of(request: Request) -> Jobs:
    jobs: Jobs = request.app.state.jobs
    return jobs


def make_store(state: GatewayState) -> JobStore:
    settings = state.settings
    limits = job_limits(settings.security.quotas)
    if settings.redis_url:
        from service.jobs.redis import RedisJobStore

        return RedisJobStore(settings.redis_url, settings.jobs.ttl_s, limits=limits)
    return MemoryJobStore(settings.jobs.ttl_s, limits=limits)


def make_jobs(state: GatewayState) -> Jobs:
    """The app's jobs (``app.state.jobs``): its store and a runner on the engine the app serves (not started)."""
    store = make_store(state)
    return Jobs(store, JobRunner(store, state.settings, lambda: state.engine))


@asynccontextmanager
async def jobs_running(jobs: Jobs) -> AsyncIterator[Jobs]:
    """The runner runs for the app's lifetime; running jobs are handed over (leases freed) at exit."""
    jobs.runner.start()
    try:
        yield jobs
    finally:
        await jobs.runner.aclose()
        await jobs.store.aclose()


async def keypoints_job(settings: GatewaySettings, engine: EngineClient, raw: bytes, request_id: str) -> JobRecord:
    """A keypoints job from a JSON body (validated off the event loop, as ``POST /v1/pose3d`` validates it)."""
    body, frames = await parse_keypoints(raw, settings)
    info = await keypoints_model(engine, settings, body.model)
    return JobRecord(
        job_id=new_job_id(caller()), kind="keypoints", request_id=request_id, created_s=time.time(),
        params={"model": info.name}, model=ModelRef.of(info).model_dump(), box_source=BoxSource.KEYPOINTS.value,
        frames_total=len(frames),
    )  # fmt: skip


async def clip_job(
    settings: GatewaySettings, engine: EngineClient, data: bytes, fields: dict[str, str], request_id: str
) -> JobRecord:
    """A clip job from the clip's bytes and the text fields of ``POST /v1/pose3d`` (validated, probed)."""
    media = Media.of(data, "the clip").kind
    if media.is_image:
        raise UnsupportedMediaType("a job takes a clip (MP4, MOV, WebM, AVI) or 2D keypoints; POST /v1/pose3d an image")
    unknown = sorted(set(fields) - CLIP_FIELDS)
    if unknown:
        raise InvalidInput(f"unknown job fields {unknown}; known: {', '.join(sorted(CLIP_FIELDS))}")
    info = await resolve_model(engine, parse_model_name(fields.get("model")) or settings.default_model(InputKind.CLIP))
    options, every_nth = clip_options(fields, settings, info.name)
    count = (await asyncio.to_thread(probe_clip, data, media, settings.limits, every_nth)).frame_count
    return JobRecord(
        job_id=new_job_id(caller()), kind="clip", request_id=request_id, created_s=time.time(),
        params={"model": info.name, "fields": fields, "media": media.value}, model=ModelRef.of(info).model_dump(),
        box_source=box_source_for(options, settings).value, frames_total=None if count is None else -(-count // every_nth),
    )  # fmt: skip


async def create_job(jobs: Jobs, record: JobRecord, staged: bytes) -> JobRecord:
    """Store a new job owned by the caller (its key's job quotas permitting) and wake the runner."""
    record = stamped(record)
    await jobs.store.create(record, staged)
    jobs.runner.wake()
    log.info("job %s queued (%s, model %s, %s frames)", record.job_id, record.kind, record.params["model"],
             record.frames_total)  # fmt: skip
    return record


async def submit_keypoints(request: Request) -> JobRecord:
    """Validate and stage a keypoints job from a ``POST /v1/jobs/keypoints`` JSON body."""
    raw = await request.body()
    record = await keypoints_job(state_of(request).settings, engine_of(request), raw, request_id_of(request))
    return await create_job(jobs_of(request), record, raw)


async def submit_clip(request: Request, data: bytes, fields: dict[str, str]) -> JobRecord:
    """Validate and stage a clip job from the file and text fields of a ``POST /v1/jobs`` form."""
    record = await clip_job(state_of(request).settings, engine_of(request), data, fields, request_id_of(request))
    return await create_job(jobs_of(request), record, data)
