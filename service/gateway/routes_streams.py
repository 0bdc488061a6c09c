"""REST streams for clients without gRPC: open, push frames (image or 2D keypoints), inspect, close.

Stream state lives in the engine's frame buffer (in memory or Redis), never in the gateway; ids are
``secrets.token_urlsafe`` (unguessable); idle streams expire after ``engine.stream_ttl_s``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Body, File, Form, Path, Request, Response, UploadFile
from fastapi.responses import JSONResponse

from model.joints import H36M_JOINT_NAMES
from service.api import streams
from service.api.fields import random_weight_warnings, world_warnings
from service.api.media import Media, checked_image
from service.api.models import resolve_model
from service.api.schemas import (
    MAX_FRAME_INDEX,
    PROBLEM_RESPONSES,
    ModelRef,
    StreamFrameKeypoints,
    StreamFrames,
    StreamOpened,
    StreamOpenRequest,
    StreamStatus,
)
from service.api.schemas import Frame as FrameOut
from service.api.validation import parse_bool, parse_float, parse_int, stream_keypoint_frame
from service.engine.stream_ids import known_stream_id
from service.engine.types import Frame, FrameResult, ImageFrame, ModelInfo, Work
from service.engine.work import collect
from service.errors import BadRequest
from service.gateway.deps import deadline_scope, engine_of, state_of
from service.gateway.inputs import add_split_route, capped_route, read_json
from service.gateway.problem import request_id_of

router = APIRouter(tags=["streams"])

StreamId = Annotated[str, Path(description="id returned by POST /v1/streams", max_length=128)]
DETECT_PEOPLE = (
    "true | false: run the person detector on this frame even where pose-guided boxes would skip it (someone came "
    "in, the scene cut)"
)


def _checked_id(stream_id: str) -> str:
    return known_stream_id(stream_id, "POST /v1/streams")


def _frames_response(
    request: Request, stream_id: str, info: ModelInfo, results: list[FrameResult], started: float
) -> StreamFrames:
    return StreamFrames(
        stream_id=stream_id,
        request_id=request_id_of(request),
        model=ModelRef.of(info),
        joint_names=list(H36M_JOINT_NAMES),
        frames=[FrameOut.of(r) for r in sorted(results, key=lambda r: r.frame_index)],
        timings_ms={"total": round((time.perf_counter() - started) * 1000.0, 3)},
        warnings=random_weight_warnings(info) + world_warnings(None, results),
    )


async def open_stream(request: Request, body: Annotated[StreamOpenRequest | None, Body()] = None) -> StreamOpened:
    """Open a stream for a model (default: the default clip model) and window ``mode``."""
    async with deadline_scope(request):
        return await streams.open_stream(engine_of(request), body or StreamOpenRequest(), state_of(request).settings)


router.add_api_route(
    "/v1/streams", open_stream, methods=["POST"], response_model=StreamOpened, status_code=201,
    responses=PROBLEM_RESPONSES, route_class_override=capped_route("the stream's open body"),
)  # fmt: skip


async def _pushed(request: Request, stream_id: str, frame_of: Callable[[], Awaitable[Frame]]) -> StreamFrames:
    """One frame (read by ``frame_of`` once the stream id and engine are known good) and the frames it completes."""
    started = time.perf_counter()
    engine = engine_of(request)
    _checked_id(stream_id)
    async with deadline_scope(request) as deadline:
        frame = await frame_of()
        pushed = await collect(engine, Work(stream_id, [frame], deadline=deadline, stream=stream_id))
        return _frames_response(request, stream_id, pushed.model, pushed.frames, started)


async def push_keypoints_frame(request: Request, body: StreamFrameKeypoints, stream_id: StreamId) -> Response:
    """One person's 2D keypoints as the next frame, and the frames it completes (see ``POST .../frames``);
    ``body`` documents the request, read and validated by the endpoint."""

    async def frame() -> Frame:
        checked = await read_json(request, StreamFrameKeypoints, "stream frame")
        return stream_keypoint_frame(checked, state_of(request).settings.limits)

    return JSONResponse((await _pushed(request, stream_id, frame)).model_dump(mode="json"))


async def push_frame(
    request: Request,
    stream_id: StreamId,
    file: Annotated[UploadFile, File(description="JPEG/PNG/WebP frame")],
    frame_index: Annotated[str, Form(description=f"integer in [0, {MAX_FRAME_INDEX}]")],
    timestamp_s: Annotated[str | None, Form(description="number: seconds")] = None,
    detect_people: Annotated[str | None, Form(description=DETECT_PEOPLE)] = None,
) -> StreamFrames:
    """Add one frame and get the frames it completes: none yet in ``centred`` mode until the window's future has
    arrived, the frame itself in ``causal``. Text fields as in ``POST /v1/pose3d`` (malformed: 400, unacceptable:
    422). A JSON body here is answered as by ``POST .../frames/keypoints``."""

    async def frame() -> Frame:
        index = parse_int("frame_index", frame_index, 0, MAX_FRAME_INDEX)
        if index is None:
            raise BadRequest("form field 'frame_index' is required")
        timestamp, detect = parse_float("timestamp_s", timestamp_s), parse_bool("detect_people", detect_people)
        image = checked_image(Media.of(await file.read()).data, state_of(request).settings.limits)
        return ImageFrame(image.data, index, timestamp, detect or False)

    return await _pushed(request, stream_id, frame)


add_split_route(
    router,
    "/v1/streams/{stream_id}/frames",
    (push_frame, push_keypoints_frame),
    response_model=StreamFrames,
    responses=PROBLEM_RESPONSES,
)


@router.get("/v1/streams/{stream_id}", response_model=StreamStatus, responses=PROBLEM_RESPONSES)
async def get_stream(request: Request, stream_id: StreamId) -> StreamStatus:
    """Frames received and emitted so far."""
    engine = engine_of(request)
    async with deadline_scope(request):
        stream = await engine.get_stream(_checked_id(stream_id))
        info = await resolve_model(engine, stream.model)
    return StreamStatus(
        stream_id=stream.stream_id,
        model=ModelRef.of(info),
        mode=stream.mode,
        frames_received=stream.frames_received,
        frames_emitted=stream.frames_emitted,
        warnings=random_weight_warnings(info),
    )


@router.delete("/v1/streams/{stream_id}", response_model=StreamFrames, responses=PROBLEM_RESPONSES)
async def close_stream(request: Request, stream_id: StreamId) -> StreamFrames:
    """Flush the tail (windows padded with the last frame) and forget the stream."""
    started = time.perf_counter()
    engine = engine_of(request)
    async with deadline_scope(request):
        stream = await engine.get_stream(_checked_id(stream_id))
        info = await resolve_model(engine, stream.model)
        tail = await engine.close_stream(stream_id)
        return _frames_response(request, stream_id, info, tail, started)
