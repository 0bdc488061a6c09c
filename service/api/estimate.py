"""The estimate use-case of REST ``POST /v1/pose3d`` (and ``/v1/pose3d/keypoints``) and gRPC ``Pose3D.Estimate``: pick
the model, check the media, run the engine; the transports render the :class:`Estimated` outcome."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from service.api.clips import retryable_if_lost, run_clip
from service.api.media import Media, checked_image
from service.api.models import box_source_for, keypoints_model, resolve_model
from service.api.validation import check_boxes_inside
from service.config import GatewaySettings, InputKind
from service.engine.types import BoxSource, EngineClient, EstimateOptions, EstimateResult, Frame, ImageFrame, Work
from service.engine.work import collect, in_private_stream
from service.security.owned_engine import unowned


@dataclass(frozen=True)
class EstimateContext:
    """What one estimate runs against: the engine, the gateway's settings, its id and deadline
    (event-loop seconds)."""

    engine: EngineClient
    settings: GatewaySettings
    request_id: str
    deadline: float


Estimated = EstimateResult
"""The outcome, transport-neutral: the model that answered, where boxes came from, per-frame results (source order)
and stage timings in milliseconds."""


async def estimate_media(ctx: EstimateContext, upload: Media, options: EstimateOptions, every_nth: int) -> Estimated:
    """An image or a clip, checked from its headers and sent encoded (the engine decodes it).
    ``options.model`` None = the configured default for the media kind."""
    settings = ctx.settings
    default = settings.default_model(InputKind.IMAGE if upload.kind.is_image else InputKind.CLIP)
    info = await resolve_model(ctx.engine, options.model or default)
    options = replace(options, model=info.name)
    if upload.kind.is_image:
        image = checked_image(upload.data, settings.limits)
        if options.boxes is not None:
            check_boxes_inside(options.boxes, image.width, image.height)
        return await collect(ctx.engine, Work(ctx.request_id, [ImageFrame(image=image.data)], options, ctx.deadline))
    outcome = await run_clip(ctx.engine, upload, options, settings.limits, every_nth, ctx.deadline)
    timings = {"decode": outcome.decode_ms, "engine": outcome.engine_ms}
    return Estimated(ctx.request_id, info, box_source_for(options, settings), outcome.frames, timings)


async def estimate_keypoints(
    ctx: EstimateContext, model: str | None, options: EstimateOptions, frames: Callable[[], Sequence[Frame]]
) -> Estimated:
    """Client 2D keypoints (one person per frame): ``model``, else the keypoints default; boxes do not apply.
    ``frames`` validates and builds the frames once the model is known (an unknown model is reported first); it
    runs on a worker thread (20 000 frames take a while). A private request enqueues every window at once, so a
    sequence longer than half the engine's queue (which no retry could fit) is pushed through a private engine
    stream a chunk at a time instead: the same results as a clip streamed frame by frame."""
    info = await keypoints_model(ctx.engine, ctx.settings, model)
    keypoint_frames = await asyncio.to_thread(frames)
    options = replace(options, model=info.name, boxes=None, max_people=None)
    if len(keypoint_frames) <= (chunk := max(1, ctx.settings.engine.max_queue // 2)):
        return await collect(ctx.engine, Work(ctx.request_id, list(keypoint_frames), options, ctx.deadline))
    started = time.perf_counter()
    work = Work("kp", keypoint_frames, options, ctx.deadline, chunk_frames=chunk)
    with retryable_if_lost("request"):
        async with contextlib.aclosing(in_private_stream(unowned(ctx.engine), work, "kp")) as steps:
            results = [result async for step in steps for result in step.results]
    results.sort(key=lambda r: r.frame_index)
    timings = {"engine": (time.perf_counter() - started) * 1000.0}
    return Estimated(ctx.request_id, info, BoxSource.KEYPOINTS, results, timings)
