"""A job's results as documents: the document ``POST /v1/pose3d`` returns, and NDJSON (one frame per line, streamed as frames complete, resumable with ``after``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Final

from fastapi import Request

from model.joints import H36M_JOINT_NAMES
from service.api.fields import random_weight_warnings
from service.api.schemas import ModelRef, PoseResponse
from service.errors import Pose3DError, Unavailable
from service.gateway.encoding import document_chunks
from service.gateway.problem import problem_of
from service.jobs.store import JobRecord, JobResultsLost, JobState, JobStore, UnknownJob, job_tag

NDJSON: Final = "application/x-ndjson"
PAGE: Final = 256
"""Frames read from the store per round trip."""


def wants_ndjson(request: Request) -> bool:
    return NDJSON in request.headers.get("accept", "")


def checked_job_id(job_id: str) -> str:
    """``job_id`` when it has the shape of an id POST /v1/jobs gives; UnknownJob (404) otherwise."""
    if job_tag(job_id) is None:
        raise UnknownJob("no such job (ids come from POST /v1/jobs)")
    return job_id


def _lost(job_id: str, position: int, done: int) -> JobResultsLost:
    return JobResultsLost(
        f"job {job_id}: frames {position} to {done - 1} of its {done} stored frames are gone from the job store"
    )


async def all_frames(store: JobStore, job_id: str, stop: int) -> list[bytes]:
    """The first ``stop`` stored frames; JobResultsLost (410) when the store no longer holds one of them."""
    frames: list[bytes] = []
    while len(frames) < stop:
        page = await store.read_frames(job_id, len(frames), min(stop, len(frames) + PAGE))
        if not page:
            raise _lost(job_id, len(frames), stop)
        frames.extend(page)
    return frames


async def document(store: JobStore, rec: JobRecord) -> list[bytes]:
    """The ``POST /v1/pose3d`` document of a finished job in pieces (the stored frames spliced in, not re-encoded)."""
    frames = await all_frames(store, rec.job_id, rec.frames_done)
    elapsed = (rec.finished_s or 0.0) - (rec.started_s or 0.0)
    model = ModelRef(**rec.model)
    head = PoseResponse(
        request_id=rec.request_id, model=model, joint_names=list(H36M_JOINT_NAMES), box_source=rec.box_source,
        frames=[], timings_ms={"total": round(elapsed * 1000.0, 3)}, warnings=random_weight_warnings(model),
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


async def pages(
    store: JobStore, job_id: str, after: int | None, poll_s: float, stopping: asyncio.Event | None = None
) -> AsyncGenerator[list[bytes]]:
    """Stored frames in pages from the first one past ``after``, as they are stored, until the job has ended and
    every stored frame is read (REST NDJSON and gRPC ``WatchJob``). Frames are stored once and never removed before
    their record, so one the record counts but the store lacks is lost: JobResultsLost, not a wait for ever. Once
    ``stopping`` is set (the gateway stops) a wait for more frames ends with Unavailable: the client streams again
    from the frames it has (``after``), on another gateway."""
    stopping = stopping or asyncio.Event()  # never set: a plain poll
    rec = await store.get(job_id)
    position = await first_position_after(store, job_id, rec.frames_done, after)
    while True:
        rec = await store.get(job_id)
        page = await store.read_frames(job_id, position, min(rec.frames_done, position + PAGE))
        if page:
            position += len(page)
            yield page
        elif position < rec.frames_done:
            raise _lost(job_id, position, rec.frames_done)
        elif rec.state.terminal:
            return
        else:
            await _wait_for_more(job_id, stopping, poll_s)


async def _wait_for_more(job_id: str, stopping: asyncio.Event, poll_s: float) -> None:
    """Wait ``poll_s`` for more frames; Unavailable as soon as ``stopping`` is set (the gateway stops)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(poll_s):
            await stopping.wait()
    if stopping.is_set():
        raise Unavailable(
            f"the gateway is stopping: stream job {job_id}'s results again with ?after=", retry_after_s=1.0
        )


async def ndjson(store: JobStore, job_id: str, frames: AsyncIterator[list[bytes]]) -> AsyncIterator[bytes]:
    """``frames`` (:func:`pages` of ``job_id``) as NDJSON lines; a job that fails or is cancelled, or whose stored
    frames are lost, ends them with ``{"error": <problem>}``, as does a store failure while they stream (503: resume
    with ``after``) or the revocation of the caller's key (401)."""
    try:
        async for page in frames:
            yield b"\n".join(page) + b"\n"
    except Pose3DError as exc:  # frames lost (410) or the store failed (503) mid-stream: a last line, not a cut
        yield json.dumps({"error": problem_of(exc)}).encode() + b"\n"
        return
    rec = await store.get(job_id)
    if rec.state is not JobState.DONE:
        problem = rec.error or {"type": "urn:pose3d:problem:cancelled", "title": "Job cancelled",
                                "status": 409, "detail": f"job {job_id} was cancelled"}  # fmt: skip
        yield json.dumps({"error": problem}).encode() + b"\n"
