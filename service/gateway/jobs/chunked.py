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

from service.config import GatewaySettings
from service.engine.types import EngineClient, EstimateOptions, FrameResult, KeypointFrame
from service.errors import Pose3DError


def chunk_limit(settings: GatewaySettings) -> int:
    """Frames a keypoints request may hand the engine at once (half its queue, so others still fit)."""
    return max(1, settings.engine.max_queue // 2)


async def estimate_in_chunks(
    engine: EngineClient, options: EstimateOptions, frames: list[KeypointFrame], chunk: int, deadline: float
) -> list[FrameResult]:
    """Every frame's result, in order, pushing ``chunk`` frames (positions 0, 1, ...) per engine call."""
    sid = "kp-" + secrets.token_urlsafe(18)
    await engine.open_stream(options, stream_id=sid)
    results: list[FrameResult] = []
    closed = False
    try:
        for start in range(0, len(frames), chunk):
            results += await engine.push_frames(sid, frames[start : start + chunk], deadline=deadline)
        closed = True
        results += await engine.close_stream(sid)
    finally:
        if not closed:
            with contextlib.suppress(Pose3DError):
                await asyncio.shield(engine.close_stream(sid))
    return sorted(results, key=lambda r: r.frame_index)
