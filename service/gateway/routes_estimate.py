"""``POST /v1/pose3d`` (an image or a clip, ``multipart/form-data``) and ``POST /v1/pose3d/keypoints`` (2D keypoints,
JSON). FastAPI declares and documents both bodies; each endpoint turns its transport's input into plain values and
calls the application layer (:mod:`service.api.estimate`). JSON posted to ``/v1/pose3d`` (the API before the split)
is answered by the keypoints route, unchanged."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, Response, UploadFile

from service.api.estimate import EstimateContext, Estimated, estimate_keypoints, estimate_media
from service.api.fields import media_options
from service.api.json_offload import parse_keypoints
from service.api.media import Media
from service.api.schemas import PROBLEM_RESPONSES, KeypointsRequest, MediaFields, PoseResponse
from service.gateway.deps import deadline_scope, engine_of, state_of
from service.gateway.encoding import PoseAnswer, release
from service.gateway.inputs import add_split_route
from service.gateway.jobs.results import wants_ndjson
from service.gateway.jobs.sources import JobSource
from service.gateway.jobs.streamed import keypoints_source, media_source, streamed_estimate
from service.gateway.outputs import OUTPUT_PARAMETERS, deliver, output_request
from service.gateway.problem import request_id_of
from service.geometry.camera import CameraSpec

router = APIRouter(tags=["pose"])

_NOTES = """Joints are Human3.6M-17; ``keypoints_3d`` in metres, camera frame, root-relative; ``keypoints_3d_camera`` the
same placed at each person's solved root translation. Errors are ``application/problem+json``. ``?format=`` /
``?render=``: an export or a render instead of the JSON document; ``Accept: application/x-ndjson``: each frame as it
completes."""

Outcome = tuple[Estimated, CameraSpec | None]  # an estimate and the camera asked for (for its warnings)


async def _answer(
    request: Request, run: Callable[[EstimateContext], Awaitable[Outcome]], source: Callable[[], Awaitable[JobSource]]
) -> Response:
    """Run the estimate and deliver its answer (encoded off the event loop, an export or a render stopped at its next
    frame when it overruns) under the request's deadline; with
    ``Accept: application/x-ndjson`` each frame of ``source`` as it completes, under a progress deadline."""
    wanted = output_request(request)
    if wants_ndjson(request):
        return await streamed_estimate(request, source)
    started = time.perf_counter()
    async with deadline_scope(request) as deadline:
        ctx = EstimateContext(engine_of(request), state_of(request).settings, request_id_of(request), deadline)
        done, camera = await run(ctx)
        timings = {**done.timings_ms, "total": (time.perf_counter() - started) * 1000.0}
        answer = PoseAnswer(ctx.request_id, done.model, done.box_source, done.frames, timings, camera)
        return await deliver(request, answer, wanted)


async def estimate_pose_keypoints(request: Request, body: KeypointsRequest) -> Response:
    """``body`` documents the request; it is read and validated by the application layer, off the event loop."""

    async def run(ctx: EstimateContext) -> Outcome:
        body, frames = await parse_keypoints(await request.body(), ctx.settings)  # large bodies: off the loop
        options = body.options()
        done = await estimate_keypoints(ctx, body.model, options, lambda: frames)
        await asyncio.to_thread(release, frames)  # 20 000 input frames are freed on a thread, not on the loop
        return done, options.camera

    return await _answer(request, run, lambda: keypoints_source(request))


async def estimate_pose(
    request: Request,
    file: Annotated[UploadFile, File(description="JPEG/PNG/WebP image or MP4/MOV/WebM/AVI clip")],
    fields: Annotated[MediaFields, Form()],
) -> Response:
    async def run(ctx: EstimateContext) -> Outcome:
        options, every_nth = media_options(fields.model_dump(), ctx.settings.limits)
        return await estimate_media(ctx, Media.of(await file.read()), options, every_nth), options.camera

    async def source() -> JobSource:
        return await media_source(request, await file.read(), fields.model_dump(exclude_none=True))

    return await _answer(request, run, source)


add_split_route(
    router,
    "/v1/pose3d",
    (estimate_pose, estimate_pose_keypoints),
    (
        {
            "summary": "3D poses of the people in an image or a clip",
            "description": "An image (JPEG, PNG, WebP) or a clip (MP4, MOV, WebM, AVI), recognised by its content, "
            "with optional text fields. " + _NOTES + " Deprecated alias: a JSON body here is answered as by POST "
            "/v1/pose3d/keypoints.",
        },
        {
            "summary": "3D poses lifted from given 2D keypoints (one person per frame)",
            "description": "2D keypoints of one frame or a sequence, with optional camera and smoothing fields. "
            + _NOTES,
        },
    ),
    response_model=PoseResponse,
    responses=PROBLEM_RESPONSES,
    openapi_extra={"parameters": OUTPUT_PARAMETERS},
)
