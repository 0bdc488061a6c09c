"""A posted clip runs through the engine as a private stream, one frame as it is decoded.

The decoder (PyAV, on a worker thread) and the engine work in step: at most one decoded frame is
waiting at any time, so memory does not grow with the clip's length; the stream's windows give the
same poses a client would get by streaming the clip itself (``POST /v1/streams/...``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from service.config import LimitSettings
from service.engine.types import EngineClient, EstimateOptions, FrameResult, ImageFrame
from service.errors import Pose3DError
from service.gateway.inputs import Upload
from service.gateway.media import ClipReader, DecodedFrame
from service.metrics import Metrics

log = logging.getLogger("pose3d.gateway")


@dataclass
class ClipOutcome:
    """Results in source order; ``frame_index`` is the source frame index (before ``every_nth``)."""

    frames: list[FrameResult] = field(default_factory=list)
    decode_ms: float = 0.0
    engine_ms: float = 0.0
    frames_processed: int = 0


def _renumbered(results: list[FrameResult], source_index: list[int]) -> list[FrameResult]:
    return [FrameResult(source_index[r.frame_index], r.timestamp_s, r.people) for r in results]


async def _next_frame(frames: Iterator[DecodedFrame]) -> DecodedFrame | None:
    """The next decoded frame, decoded on a worker thread (``None`` at the end)."""
    return await asyncio.to_thread(next, frames, None)


async def run_clip(
    engine: EngineClient,
    upload: Upload,
    options: EstimateOptions,
    limits: LimitSettings,
    metrics: Metrics,
    every_nth: int,
    deadline: float,
) -> ClipOutcome:
    """Decode ``upload`` frame by frame and push each frame (engine indices 0, 1, 2, ...) into a
    fresh engine stream, then flush its tail. The stream is closed whatever happens."""
    outcome = ClipOutcome()
    reader = await asyncio.to_thread(ClipReader, upload.file.file, upload.kind, limits, every_nth)
    stream_id = "clip-" + secrets.token_urlsafe(18)
    stream_open = False
    source_index: list[int] = []
    try:
        await engine.open_stream(options, stream_id=stream_id)
        stream_open = True
        frames = reader.frames()
        while True:
            started = time.perf_counter()
            decoded = await _next_frame(frames)
            seconds = time.perf_counter() - started
            if decoded is None:
                break
            outcome.decode_ms += seconds * 1000.0
            metrics.stage_duration.labels("decode").observe(seconds)
            engine_index = len(source_index)
            source_index.append(decoded.index)
            frame = ImageFrame(image=decoded.image, frame_index=engine_index, timestamp_s=decoded.timestamp_s)
            del decoded
            started = time.perf_counter()
            completed = await engine.push_frame(stream_id, frame, deadline=deadline)
            outcome.engine_ms += (time.perf_counter() - started) * 1000.0
            outcome.frames.extend(_renumbered(completed, source_index))
        started = time.perf_counter()
        stream_open = False
        tail = await engine.close_stream(stream_id)
        outcome.engine_ms += (time.perf_counter() - started) * 1000.0
        outcome.frames.extend(_renumbered(tail, source_index))
    finally:
        await asyncio.to_thread(reader.close)
        if stream_open:
            with contextlib.suppress(Pose3DError):
                await asyncio.shield(engine.close_stream(stream_id))
    outcome.frames_processed = len(source_index)
    outcome.frames.sort(key=lambda r: r.frame_index)
    return outcome
