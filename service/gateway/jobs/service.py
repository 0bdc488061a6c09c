"""The jobs of one gateway process: the store (Redis when ``redis_url`` is set, else memory), the runner, and
submission (validated as ``POST /v1/pose3d`` validates, then staged in the store)."""

from __future__ import annotations

import asyncio
import io
import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request

from service.engine.types import BoxSource
from service.errors import UnsupportedMediaType
from service.gateway.deps import GatewayState, box_source_for, engine_of, keypoints_model, resolve_model, state_of
from service.gateway.inputs import BodyKind, body_kind, form_text, form_upload, read_form
from service.gateway.jobs.runner import JobRunner
from service.gateway.jobs.sources import CLIP_FIELDS, clip_options, parse_keypoints_body
from service.gateway.media import ClipReader
from service.gateway.problem import request_id_of
from service.gateway.schemas import ModelRef
from service.gateway.validation import parse_model_name
from service.jobs.memory import MemoryJobStore
from service.jobs.store import JobRecord, JobStore

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
    if settings.redis_url:
        from service.jobs.redis import RedisJobStore

        return RedisJobStore(settings.redis_url, settings.jobs.ttl_s)
    return MemoryJobStore(settings.jobs.ttl_s)


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


async def _keypoints_job(request: Request, state: GatewayState) -> tuple[JobRecord, bytes]:
    settings = state.settings
    raw = await request.body()
    body, frames = await asyncio.to_thread(parse_keypoints_body, raw, settings)
    info = await keypoints_model(engine_of(request), settings, body.model)
    record = JobRecord(
        job_id=secrets.token_urlsafe(18), kind="keypoints", request_id=request_id_of(request), created_s=time.time(),
        params={"model": info.name}, model=ModelRef.of(info).model_dump(), box_source=BoxSource.KEYPOINTS.value,
        frames_total=len(frames),
    )  # fmt: skip
    return record, raw


async def _clip_job(request: Request, state: GatewayState) -> tuple[JobRecord, bytes]:
    settings = state.settings
    form = await read_form(request)
    upload = await form_upload(form)
    if upload.kind.is_image:
        raise UnsupportedMediaType("a job takes a clip (MP4, MOV, WebM, AVI) or 2D keypoints; POST /v1/pose3d an image")
    fields = {name: value for name in sorted(CLIP_FIELDS) if (value := form_text(form, name)) is not None}
    info = await resolve_model(engine_of(request), parse_model_name(fields.get("model")) or settings.default_clip_model)
    options, every_nth = clip_options(fields, settings, info.name)
    staged = await upload.file.read()
    reader = await asyncio.to_thread(ClipReader, io.BytesIO(staged), upload.kind, settings.limits, every_nth)
    count = reader.info.frame_count
    await asyncio.to_thread(reader.close)
    record = JobRecord(
        job_id=secrets.token_urlsafe(18), kind="clip", request_id=request_id_of(request), created_s=time.time(),
        params={"model": info.name, "fields": fields, "media": upload.kind.value}, model=ModelRef.of(info).model_dump(),
        box_source=box_source_for(options, settings).value, frames_total=None if count is None else -(-count // every_nth),
    )  # fmt: skip
    return record, staged


async def submit(request: Request) -> JobRecord:
    """Validate and stage a job from a ``POST /v1/jobs`` request; the runner takes it from the store."""
    state = state_of(request)
    kind = body_kind(request)
    engine_of(request)  # 503 before reading a body the engine could not take
    if kind is BodyKind.JSON:
        record, staged = await _keypoints_job(request, state)
    else:
        record, staged = await _clip_job(request, state)
    jobs = jobs_of(request)
    await jobs.store.create(record, staged)
    jobs.runner.wake()
    log.info("job %s queued (%s, model %s, %s frames)", record.job_id, record.kind, record.params["model"],
             record.frames_total)  # fmt: skip
    return record
