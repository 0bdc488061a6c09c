"""A keypoint sequence longer than the engine's queue runs through a private engine stream in bounded chunks.

``engine.estimate`` enqueues every window of a request at once, so a sequence longer than ``engine.max_queue``
was refused with a 429 that no retry could satisfy (5 000 frames against a queue of 1 024). Past
:func:`chunk_limit` frames, ``POST /v1/pose3d`` pushes the frames into a fresh engine stream a chunk at a time
(the same results as a clip streamed frame by frame) and closes it; the request's deadline still applies.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Sequence
from typing import Final

from service.config import GatewaySettings
from service.engine.types import EngineClient, EstimateOptions, Frame, FrameResult
from service.errors import Pose3DError, Unavailable, UnknownStream

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
    sid = "kp-" + secrets.token_urlsafe(18)
    await engine.open_stream(options, stream_id=sid)
    results: list[FrameResult] = []
    closed = False
    try:
        for start in range(0, len(frames), chunk):
            results += await engine.push_frames(sid, frames[start : start + chunk], deadline=deadline)
        closed = True
        results += await engine.close_stream(sid)
    except UnknownStream:
        raise Unavailable(LOST_STATE, retry_after_s=1.0) from None
    finally:
        if not closed:
            with contextlib.suppress(Pose3DError):
                await asyncio.shield(engine.close_stream(sid))
    return sorted(results, key=lambda r: r.frame_index)
