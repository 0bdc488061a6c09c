"""``POST /v1/pose3d`` with ``Accept: application/x-ndjson``: each frame's result as one JSON line as it completes.

The input runs through a private engine stream in small chunks, as a job does, under a **progress** deadline
(docs/jobs.md). The first line is awaited before the response starts, so an error before any result is a normal
problem+json status; an error after it ends the stream with one line ``{"error": <problem>}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Final

from fastapi import Request
from fastapi.responses import StreamingResponse

from service.api.json_offload import parse_keypoints
from service.api.media import Media
from service.api.models import keypoints_model, resolve_model
from service.api.validation import parse_model_name
from service.config import InputKind
from service.engine.types import EngineClient, Work
from service.engine.work import in_private_stream
from service.errors import DeadlineExceeded, Pose3DError, UnsupportedMediaType
from service.gateway.deps import TIMEOUT_HEADER, engine_of, request_timeout, state_of
from service.gateway.encoding import frames_json
from service.gateway.jobs.results import NDJSON
from service.gateway.jobs.sources import JobSource, clip_source
from service.gateway.problem import problem_of
from service.security.owned_engine import unowned

CHUNK_FRAMES: Final = 8


async def keypoints_source(request: Request) -> JobSource:
    """The frames of a JSON keypoints body (parsed off the event loop)."""
    settings, engine = state_of(request).settings, engine_of(request)
    body, frames = await parse_keypoints(await request.body(), settings)
    info = await keypoints_model(engine, settings, body.model)
    return JobSource(body.options(info.name), len(frames), keypoints=frames)


async def media_source(request: Request, data: bytes, fields: dict[str, str]) -> JobSource:
    """The clip of a form (its ``file`` and text ``fields``); an image is refused (415)."""
    settings, engine = state_of(request).settings, engine_of(request)
    media = Media.of(data)
    if media.kind.is_image:
        raise UnsupportedMediaType("NDJSON results are for clips and keypoint sequences; an image has one frame")
    info = await resolve_model(engine, parse_model_name(fields.get("model")) or settings.default_model(InputKind.CLIP))
    return await clip_source(fields, info.name, data, media.kind, settings.limits)


async def _lines(engine: EngineClient, source: JobSource, timeout_s: float) -> AsyncGenerator[bytes]:
    """Result lines as frames complete, from a private engine stream; raises DeadlineExceeded when no frame
    completes for ``timeout_s``."""
    last_progress = time.monotonic()
    frames = source.keypoints if source.clip is None else source.clip
    work = Work("ndjson", frames, source.options, chunk_frames=CHUNK_FRAMES, chunk_timeout_s=timeout_s)
    async with contextlib.aclosing(in_private_stream(unowned(engine), work, "ndjson")) as steps:
        while True:
            left = last_progress + timeout_s - time.monotonic()
            try:
                async with asyncio.timeout(max(0.001, left)):
                    step = await anext(steps, None)
            except (TimeoutError, DeadlineExceeded):
                raise DeadlineExceeded(
                    f"no frame completed within {timeout_s:g} s (the progress deadline: header {TIMEOUT_HEADER}, at "
                    "most the setting engine.request_timeout_s / POSE3D_ENGINE__REQUEST_TIMEOUT_S); for long clips use "
                    "POST /v1/jobs"
                ) from None
            if step is None:
                return
            if step.results:
                last_progress = time.monotonic()
                yield b"".join(doc + b"\n" for doc in await frames_json(step.results))


async def _with_error_line(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    try:
        async for line in rest:
            yield line
    except Pose3DError as exc:
        yield json.dumps({"error": problem_of(exc)}).encode() + b"\n"


async def streamed_estimate(request: Request, source_of: Callable[[], Awaitable[JobSource]]) -> StreamingResponse:
    """Answer ``POST /v1/pose3d`` (or ``/v1/pose3d/keypoints``) as NDJSON (see the module docstring)."""
    engine = engine_of(request)
    timeout_s = request_timeout(request, state_of(request).settings)
    source = await source_of()
    lines = _lines(engine, source, timeout_s)
    try:
        first = await anext(lines, b"")
    except BaseException:
        await lines.aclose()
        raise
    return StreamingResponse(_with_error_line(first, lines), media_type=NDJSON)
