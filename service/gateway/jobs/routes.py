"""``/v1/jobs``: submit long work, follow its progress, read (or stream) its results, cancel it."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, File, Form, Path, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse

from service.api.jobs import JobList, JobStatus, clip_job, keypoints_job
from service.api.schemas import PROBLEM_RESPONSES, KeypointsRequest, MediaFields
from service.errors import Conflict
from service.gateway.deps import engine_of, state_of
from service.gateway.encoding import pieces
from service.gateway.inputs import add_split_route
from service.gateway.jobs.results import NDJSON, checked_job_id, document, ndjson, pages, wants_ndjson
from service.gateway.jobs.runner import Jobs, cancel_owned, create_job
from service.gateway.problem import request_id_of
from service.jobs.store import JobRecord, JobState, UnknownJob
from service.security.door import caller, own_job_ids, owned_job, until_revoked

router = APIRouter(tags=["jobs"])

JobId = Annotated[str, Path(description="id returned by POST /v1/jobs", max_length=64)]


def jobs_of(request: Request) -> Jobs:
    jobs: Jobs = request.app.state.jobs
    return jobs


def _location(record: JobRecord) -> dict[str, str]:
    return {"Location": f"/v1/jobs/{record.job_id}"}


async def submit_keypoints_job(request: Request, body: KeypointsRequest) -> Response:
    """``body`` documents the request; it is read and validated off the event loop."""
    raw = await request.body()
    record = await keypoints_job(state_of(request).settings, engine_of(request), raw, request_id_of(request))
    record = await create_job(jobs_of(request), record, raw)
    return JSONResponse(JobStatus.of(record).model_dump(mode="json"), status_code=202, headers=_location(record))


async def submit_job(
    response: Response,
    request: Request,
    file: Annotated[UploadFile, File(description="MP4/MOV/WebM/AVI clip")],
    fields: Annotated[MediaFields, Form()],
) -> JobStatus:
    """The same inputs as ``POST /v1/pose3d`` (a clip); answers ``202`` at once with the job's status and
    ``Location: /v1/jobs/{id}``."""
    data, settings = await file.read(), state_of(request).settings
    text = fields.model_dump(exclude_none=True)
    record = await clip_job(settings, engine_of(request), data, text, request_id_of(request))
    record = await create_job(jobs_of(request), record, data)
    response.headers.update(_location(record))
    return JobStatus.of(record)


add_split_route(
    router,
    "/v1/jobs",
    (submit_job, submit_keypoints_job),
    (
        {
            "summary": "Submit a clip of any length as a job",
            "description": "Deprecated alias: a JSON body here is submitted as by POST /v1/jobs/keypoints.",
        },
        {"summary": "Submit a 2D keypoint sequence of any length as a job"},
    ),
    response_model=JobStatus,
    status_code=202,
    responses=PROBLEM_RESPONSES,
)


@router.get("/v1/jobs", response_model=JobList, responses=PROBLEM_RESPONSES, summary="The caller's newest jobs")
async def list_jobs(request: Request) -> JobList:
    """The jobs of the calling API key only, newest first."""
    jobs = jobs_of(request)
    out: list[JobStatus] = []
    now = time.time()
    for job_id in await own_job_ids(jobs.store, request.app.state.settings.jobs.max_listed):
        try:
            out.append(JobStatus.of(await jobs.store.get(job_id), now))
        except UnknownJob:
            continue
    return JobList(jobs=out)


@router.get("/v1/jobs/{job_id}", response_model=JobStatus, responses=PROBLEM_RESPONSES, summary="A job's progress")
async def get_job(request: Request, job_id: JobId) -> JobStatus:
    """State (queued, running, done, failed, cancelled), frames done / total, frames per second, ETA, error."""
    return JobStatus.of(await owned_job(jobs_of(request).store, checked_job_id(job_id)))


@router.get(
    "/v1/jobs/{job_id}/results",
    responses={**PROBLEM_RESPONSES, 200: {"content": {"application/json": {}, NDJSON: {}}}},
    summary="A job's results: the POST /v1/pose3d document, or NDJSON frames as they complete",
)
async def job_results(
    request: Request,
    job_id: JobId,
    after: Annotated[int | None, Query(ge=-1, description="NDJSON: only frames with frame_index > after")] = None,
) -> Response:
    """With ``Accept: application/x-ndjson``: one frame per line as frames complete, until the job ends
    (``?after=<frame_index>`` resumes after a frame already read; a failed or cancelled job ends the stream with
    ``{"error": <problem>}``). Otherwise the document ``POST /v1/pose3d`` returns, once the job is done (409 before)."""
    jobs = jobs_of(request)
    record = await owned_job(jobs.store, checked_job_id(job_id))
    if wants_ndjson(request):
        poll_s = request.app.state.settings.jobs.poll_interval_s
        security = getattr(request.app.state, "security", None)
        frames = until_revoked(security, caller(), pages(jobs.store, job_id, after, poll_s, request.app.state.stopping))
        return StreamingResponse(ndjson(jobs.store, job_id, frames), media_type=NDJSON)
    if record.state is not JobState.DONE:
        total = "?" if record.frames_total is None else record.frames_total
        raise Conflict(
            f"job {job_id} is {record.state.value} ({record.frames_done}/{total} frames): poll GET /v1/jobs/{job_id}, "
            f"or stream the frames so far with Accept: {NDJSON}"
        )
    return StreamingResponse(pieces(await document(jobs.store, record)), media_type="application/json")


@router.delete("/v1/jobs/{job_id}", response_model=JobStatus, responses=PROBLEM_RESPONSES, summary="Cancel a job")
async def cancel_job(request: Request, job_id: JobId) -> JobStatus:
    """Cancel the job (a finished job stays as it is); its staged input and engine stream are freed."""
    return JobStatus.of(await cancel_owned(jobs_of(request), job_id))
