"""``POST /v1/pose3d``: one image, one clip (streamed through the engine as decoded), or 2D keypoints."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from fastapi import APIRouter, Request, Response

from service.engine.types import EstimateOptions
from service.gateway.deps import (
    GatewayState,
    deadline_scope,
    engine_of,
    state_of,
)
from service.gateway.encoding import PoseAnswer, release
from service.gateway.estimate import EstimateContext, estimate_keypoints, estimate_media
from service.gateway.inputs import (
    BodyKind,
    body_kind,
    form_text,
    form_upload,
    read_form,
)
from service.gateway.jobs.json_offload import parse_keypoints
from service.gateway.jobs.streamed import streamed_estimate, wants_ndjson
from service.gateway.openapi_body import OPENAPI_BODY
from service.gateway.outputs import OUTPUT_PARAMETERS, deliver, output_request
from service.gateway.problem import request_id_of
from service.gateway.schemas import PROBLEM_RESPONSES, PoseResponse
from service.gateway.validation import (
    parse_bool,
    parse_boxes,
    parse_int,
    parse_mode,
    parse_model_name,
)
from service.gateway.world_inputs import world_from_form

router = APIRouter(tags=["pose"])


def _context(request: Request, state: GatewayState, deadline: float) -> EstimateContext:
    return EstimateContext(engine_of(request), state.settings, state.metrics, request_id_of(request), deadline)


async def _keypoints(request: Request, state: GatewayState, deadline: float) -> PoseAnswer:
    ctx = _context(request, state, deadline)
    body, frames = await parse_keypoints(await request.body(), state.settings)  # large bodies: off the loop
    camera, smoothing = body.world()
    options = EstimateOptions(flip_test=body.flip_test, mode=body.mode, camera=camera, smoothing=smoothing)
    done = await estimate_keypoints(ctx, body.model, options, lambda: frames)
    await asyncio.to_thread(release, frames)  # 20 000 input frames are freed on a thread, not on the loop
    return PoseAnswer(ctx.request_id, done.model, done.box_source, done.frames, done.timings_ms, camera)


async def _media(request: Request, state: GatewayState, deadline: float) -> PoseAnswer:
    ctx = _context(request, state, deadline)
    limits = state.settings.limits
    form = await read_form(request)
    upload = await form_upload(form)
    options = EstimateOptions(
        model=parse_model_name(form_text(form, "model")),
        boxes=parse_boxes(form_text(form, "boxes"), limits),
        flip_test=parse_bool("flip_test", form_text(form, "flip_test")),
        max_people=parse_int("max_people", form_text(form, "max_people"), 1, limits.max_people),
        mode=parse_mode(form_text(form, "mode")),
    )
    every_nth = parse_int("every_nth", form_text(form, "every_nth"), 1, limits.max_every_nth) or 1
    camera, smoothing = world_from_form(form)
    options = replace(options, camera=camera, smoothing=smoothing)
    done = await estimate_media(ctx, upload, options, every_nth)
    return PoseAnswer(ctx.request_id, done.model, done.box_source, done.frames, done.timings_ms, camera)


@router.post(
    "/v1/pose3d",
    response_model=PoseResponse,
    responses=PROBLEM_RESPONSES,
    openapi_extra={**OPENAPI_BODY, "parameters": OUTPUT_PARAMETERS},
    summary="3D poses of the people in an image, a clip, or given 2D keypoints",
)
async def estimate_pose(request: Request) -> Response:
    """Send ``multipart/form-data`` with ``file`` (an image or a clip, recognised by its content) and
    optional ``model``, ``boxes``, ``flip_test``, ``max_people``, ``mode``, ``every_nth``, camera intrinsics
    (``fx, fy, cx, cy`` or ``fov_deg``) and ``smoothing`` (+ ``smoothing_params``); or ``application/json`` 2D
    keypoints (with the same camera/smoothing fields). Joints are Human3.6M-17; ``keypoints_3d`` in metres, camera
    frame, root-relative; ``keypoints_3d_camera`` the same placed at each person's solved root translation. Errors are ``application/problem+json``.
    ``?format=`` / ``?render=``: see outputs.py; ``Accept: application/x-ndjson``: each frame as it completes."""
    if wants_ndjson(request):  # each frame as it completes, under a progress deadline
        return await streamed_estimate(request)
    state = state_of(request)
    wanted = output_request(request)
    started = time.perf_counter()
    kind = body_kind(request)
    engine_of(request)  # 503 before reading a body the engine could not take
    async with deadline_scope(request) as deadline:
        if kind is BodyKind.JSON:
            answer = await _keypoints(request, state, deadline)
        else:
            answer = await _media(request, state, deadline)
    answer.timings_ms["total"] = (time.perf_counter() - started) * 1000.0
    return await deliver(request, answer, wanted)  # encoded off the event loop
