"""The jobs of one gateway process: the store (Redis when ``redis_url`` is set, else memory), the runner, and
submission (validated as ``POST /v1/pose3d`` validates, then staged in the store)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request

from service.config import GatewaySettings, InputKind
from service.engine.types import BoxSource, EngineClient
from service.errors import InvalidInput, UnsupportedMediaType
from service.gateway.deps import GatewayState, box_source_for, engine_of, keypoints_model, resolve_model, state_of
from service.gateway.inputs import BodyKind, body_kind, form_text, form_upload, read_form
from service.gateway.jobs.json_offload import parse_keypoints
from service.gateway.jobs.runner import JobRunner
from service.gateway.jobs.sources import CLIP_FIELDS, clip_options
from service.gateway.media import SNIFF_BYTES, probe_clip, sniff_media
from service.gateway.problem import request_id_of
from service.gateway.schemas import ModelRef
from service.gateway.validation import parse_model_name
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


@asynccontextmanager
async def jobs_lifespan(app: FastAPI, state: GatewayState) -> AsyncIterator[Jobs]:
    """Jobs for the app's lifetime: ``app.state.jobs``; running jobs are handed over (leases freed) at exit."""
    store = make_store(state)
    runner = JobRunner(store, state.settings, lambda: state.engine)
    jobs = Jobs(store, runner)
    app.state.jobs = jobs
    runner.start()
    try:
        yield jobs
    finally:
        await runner.aclose()
        await store.aclose()


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
    media = sniff_media(data[:SNIFF_BYTES])
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


async def submit(request: Request) -> JobRecord:
    """Validate and stage a job from a ``POST /v1/jobs`` request; the runner takes it from the store."""
    state = state_of(request)
    kind = body_kind(request)
    engine = engine_of(request)  # 503 before reading a body the engine could not take
    rid = request_id_of(request)
    if kind is BodyKind.JSON:
        raw = await request.body()
        return await create_job(jobs_of(request), await keypoints_job(state.settings, engine, raw, rid), raw)
    form = await read_form(request)
    upload = await form_upload(form)
    fields = {name: value for name in sorted(CLIP_FIELDS) if (value := form_text(form, name)) is not None}
    data = await upload.file.read()
    return await create_job(jobs_of(request), await clip_job(state.settings, engine, data, fields, rid), data)
