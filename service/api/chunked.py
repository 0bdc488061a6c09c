"""A keypoint sequence longer than the engine's queue runs through a private engine stream in bounded chunks.

A private request enqueues every window at once, so a sequence longer than ``engine.max_queue`` was refused with
a 429 that no retry could satisfy (5 000 frames against a queue of 1 024). Past :func:`chunk_limit` frames,
``POST /v1/pose3d`` pushes the frames into a private engine stream a chunk at a time (the same results as a clip
streamed frame by frame; :func:`~service.engine.work.in_private_stream`); the request's deadline still applies.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Final

from service.config import GatewaySettings
from service.engine.types import EngineClient, EstimateOptions, Frame, FrameResult, Work
from service.engine.work import in_private_stream
from service.errors import Unavailable, UnknownStream

LOST_STATE: Final = "the frame buffer lost this request's state while it ran (was Redis restarted?); send it again"


def chunk_limit(settings: GatewaySettings) -> int:
    """Frames a keypoints request may hand the engine at once (half its queue, so others still fit)."""
    return max(1, settings.engine.max_queue // 2)


async def estimate_in_chunks(
    engine: EngineClient, options: EstimateOptions, frames: Sequence[Frame], chunk: int, deadline: float
) -> list[FrameResult]:
    """Every frame's result, in order, pushing ``chunk`` frames (positions 0, 1, ...) per engine call.
    If the private stream vanishes meanwhile (the frame buffer's Redis restarted), the request is refused with
    a retryable Unavailable (503 + Retry-After), never with the stream's internal id."""
    work = Work("kp", frames, options, deadline, chunk_frames=chunk)
    try:
        async with contextlib.aclosing(in_private_stream(engine, work, "kp")) as steps:
            results = [result async for step in steps for result in step.results]
    except UnknownStream:
        raise Unavailable(LOST_STATE, retry_after_s=1.0) from None
    return sorted(results, key=lambda r: r.frame_index)
