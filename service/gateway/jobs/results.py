"""A job as documents: its status (:class:`JobStatus`), its results as the document ``POST /v1/pose3d`` returns,
and its results as NDJSON (one frame per line, streamed as frames complete, resumable with ``after``)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any, Final

from pydantic import BaseModel, Field

from model.joints import H36M_JOINT_NAMES
from service.api.schemas import ModelRef, PoseResponse
from service.gateway.encoding import document_chunks
from service.jobs.store import JobRecord, JobState, JobStore, UnknownJob, job_tag

NDJSON: Final = "application/x-ndjson"
PAGE: Final = 256
"""Frames read from the store per round trip."""


def checked_job_id(job_id: str) -> str:
    """``job_id`` when it has the shape of an id POST /v1/jobs gives; UnknownJob (404) otherwise."""
    if job_tag(job_id) is None:
        raise UnknownJob("no such job (ids come from POST /v1/jobs)")
    return job_id


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


def _warnings(rec: JobRecord) -> list[str]:
    if rec.model.get("random_weights"):
        name = rec.model.get("name")
        return [f"model {name!r} serves RANDOM weights (no checkpoint configured): its poses are meaningless"]
    return []


async def all_frames(store: JobStore, job_id: str, stop: int) -> list[bytes]:
    frames: list[bytes] = []
    while len(frames) < stop:
        page = await store.read_frames(job_id, len(frames), min(stop, len(frames) + PAGE))
        if not page:
            break
        frames.extend(page)
    return frames


async def document(store: JobStore, rec: JobRecord) -> list[bytes]:
    """The ``POST /v1/pose3d`` document of a finished job in pieces (frames spliced in as stored, not
    re-encoded; :func:`~service.gateway.encoding.document_chunks`)."""
    frames = await all_frames(store, rec.job_id, rec.frames_done)
    elapsed = (rec.finished_s or 0.0) - (rec.started_s or 0.0)
    head = PoseResponse(
        request_id=rec.request_id, model=ModelRef(**rec.model), joint_names=list(H36M_JOINT_NAMES),
        box_source=rec.box_source, frames=[], timings_ms={"total": round(elapsed * 1000.0, 3)},
        warnings=_warnings(rec),
    )  # fmt: skip
    return document_chunks(head, frames)


async def first_position_after(store: JobStore, job_id: str, done: int, after: int | None) -> int:
    """The first stored position whose ``frame_index`` exceeds ``after`` (positions are in frame order):
    a binary search over the ``done`` stored positions."""
    if after is None:
        return 0
    lo, hi = 0, done
    while lo < hi:
        mid = (lo + hi) // 2
        page = await store.read_frames(job_id, mid, mid + 1)
        if page and int(json.loads(page[0])["frame_index"]) <= after:
            lo = mid + 1
        else:
            hi = mid
    return lo


async def ndjson(store: JobStore, job_id: str, after: int | None, poll_s: float) -> AsyncIterator[bytes]:
    """Frames as NDJSON lines from the first one past ``after``, as they are stored, until the job ends.
    A job that fails or is cancelled ends its stream with one line ``{"error": <problem>}``."""
    rec = await store.get(job_id)
    position = await first_position_after(store, job_id, rec.frames_done, after)
    while True:
        rec = await store.get(job_id)
        page = await store.read_frames(job_id, position, min(rec.frames_done, position + PAGE))
        if page:
            position += len(page)
            yield b"\n".join(page) + b"\n"
            continue
        if rec.state.terminal and position >= rec.frames_done:
            if rec.state is not JobState.DONE:
                problem = rec.error or {"type": "urn:pose3d:problem:cancelled", "title": "Job cancelled",
                                        "status": 409, "detail": f"job {job_id} was cancelled"}  # fmt: skip
                yield json.dumps({"error": problem}).encode() + b"\n"
            return
        await asyncio.sleep(poll_s)
