"""Jobs in the application layer: submission from plain inputs (a keypoints body's bytes, or a clip's bytes and its
text fields, validated as ``POST /v1/pose3d`` validates them; the owner is the calling key, ``service.security.door``)
and the schema of a job's status, :class:`JobStatus` (REST's document; gRPC's ``Job`` is derived from it)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pydantic import BaseModel, Field

from service.api.fields import MEDIA_FIELDS, media_options
from service.api.json_offload import parse_keypoints
from service.api.media import Media, probe_clip
from service.api.models import box_source_for, keypoints_model, resolve_model
from service.api.schemas import ModelRef
from service.api.validation import parse_model_name
from service.config import GatewaySettings, InputKind
from service.engine.types import BoxSource, EngineClient
from service.errors import InvalidInput, UnsupportedMediaType
from service.jobs.store import JobRecord, JobState, new_job_id
from service.security.door import caller


class JobStatus(BaseModel):
    """A job's progress. Times are Unix seconds; ``error`` is a problem document when the job failed."""

    job_id: str
    state: JobState
    kind: str = Field(description="clip | keypoints")
    model: str
    frames_done: int
    frames_total: int | None = Field(description="frames to process (a clip's header count until it is decoded)")
    frames_per_second: float | None = Field(description="processing rate of the current run")
    eta_s: float | None = Field(description="seconds until done at the current rate")
    created_s: float
    started_s: float | None
    finished_s: float | None
    attempts: int = Field(description="runs so far (a job resumed after a gateway died counts again)")
    error: dict[str, Any] | None = None
    links: dict[str, str]

    @classmethod
    def of(cls, rec: JobRecord, now_s: float | None = None) -> JobStatus:
        now = time.time() if now_s is None else now_s
        rate: float | None = None
        if rec.state is JobState.DONE and rec.started_s is not None and rec.finished_s is not None:
            rate = rec.frames_done / max(1e-6, rec.finished_s - rec.started_s)
        elif rec.state is JobState.RUNNING and rec.run_started_s is not None:
            elapsed = now - rec.run_started_s
            rate = (rec.frames_done - rec.run_start_done) / elapsed if elapsed > 0 else None
        eta: float | None = None
        if rec.state is JobState.DONE:
            eta = 0.0
        elif rate and rec.frames_total is not None:
            eta = max(0.0, rec.frames_total - rec.frames_done) / rate
        base = f"/v1/jobs/{rec.job_id}"
        return cls(
            job_id=rec.job_id, state=rec.state, kind=rec.kind, model=str(rec.model.get("name", "")),
            frames_done=rec.frames_done, frames_total=rec.frames_total,
            frames_per_second=None if rate is None else round(rate, 3), eta_s=None if eta is None else round(eta, 3),
            created_s=rec.created_s, started_s=rec.started_s, finished_s=rec.finished_s, attempts=rec.attempts,
            error=rec.error, links={"self": base, "results": base + "/results"},
        )  # fmt: skip


class JobList(BaseModel):
    jobs: list[JobStatus]


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
    if unknown := sorted(set(fields) - MEDIA_FIELDS):
        raise InvalidInput(f"unknown job fields {unknown}; known: {', '.join(sorted(MEDIA_FIELDS))}")
    info = await resolve_model(engine, parse_model_name(fields.get("model")) or settings.default_model(InputKind.CLIP))
    options, every_nth = media_options(fields, settings.limits)
    count = (await asyncio.to_thread(probe_clip, data, media, settings.limits, every_nth)).frame_count
    return JobRecord(
        job_id=new_job_id(caller()), kind="clip", request_id=request_id, created_s=time.time(),
        params={"model": info.name, "fields": fields, "media": media.value}, model=ModelRef.of(info).model_dump(),
        box_source=box_source_for(options, settings).value, frames_total=None if count is None else -(-count // every_nth),
    )  # fmt: skip
