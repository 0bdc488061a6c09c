"""Earlier ways of running a posted clip, kept as references to measure and test the gateway's path against.

The gateway now sends a clip encoded (:func:`service.api.clips.run_clip`: the engine decodes it). These
decode the clip on the caller's side instead, as the gateway did before:

- :func:`run_clip_decoded_here`: decoded on a thread here, the frames handed to ``engine.estimate_clip`` as an
  async source (over gRPC: raw ``(H, W, 3) uint8`` frames in ``PushFrames`` chunks);
- :func:`run_clip_frame_by_frame`: one frame decoded, pushed and answered at a time into an engine stream (no
  two frames of a clip share a batch).

Both take the arguments of :func:`~service.api.clips.run_clip` and give a
:class:`~service.api.clips.ClipOutcome` (results in source order, ``frame_index`` = source index).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time

from service.api.clips import ClipOutcome, encoded_clip
from service.api.media import Media
from service.config import LimitSettings
from service.engine.clips import decoded_clip
from service.engine.types import (
    EncodedClip,
    EngineClient,
    EstimateOptions,
    FrameResult,
    ImageFrame,
    Work,
)
from service.engine.work import collect, push
from service.errors import Pose3DError


async def run_clip_decoded_here(
    engine: EngineClient, upload: Media, options: EstimateOptions, limits: LimitSettings, every_nth: int,
    deadline: float,
) -> ClipOutcome:  # fmt: skip
    """The clip decoded here (a bounded number of frames ahead), its frames streamed into ``estimate_clip``."""
    clip = await encoded_clip(upload, limits, every_nth)
    started = time.perf_counter()
    async with decoded_clip(clip, None) as decoder:
        request = Work("clip-" + secrets.token_urlsafe(18), decoder.frames(), options, deadline)
        result = await collect(engine, request)
    return ClipOutcome(
        frames=sorted(result.frames, key=lambda r: r.frame_index),
        decode_ms=decoder.decode_ms,
        engine_ms=(time.perf_counter() - started) * 1000.0,
        frames_processed=decoder.frames_decoded,
    )


def _renumbered(results: list[FrameResult], source_index: list[int]) -> list[FrameResult]:
    return [FrameResult(source_index[r.frame_index], r.timestamp_s, r.people) for r in results]


async def _push_decoded(
    engine: EngineClient, clip: EncodedClip, stream_id: str, deadline: float, outcome: ClipOutcome
) -> list[int]:
    """Decode ``clip`` here and push each frame (engine indices 0, 1, ...) alone; returns the source indices."""
    source_index: list[int] = []
    async with decoded_clip(clip, None, ahead=1) as decoder:
        async for decoded in decoder.decoded():
            source_index.append(decoded.index)
            frame = ImageFrame(image=decoded.image, frame_index=len(source_index) - 1, timestamp_s=decoded.timestamp_s)
            del decoded
            started = time.perf_counter()
            completed = await push(engine, stream_id, [frame], deadline)
            outcome.engine_ms += (time.perf_counter() - started) * 1000.0
            outcome.frames.extend(_renumbered(completed, source_index))
    outcome.decode_ms = decoder.decode_ms
    return source_index


async def run_clip_frame_by_frame(
    engine: EngineClient, upload: Media, options: EstimateOptions, limits: LimitSettings, every_nth: int,
    deadline: float,
) -> ClipOutcome:  # fmt: skip
    """Each decoded frame pushed into a fresh engine stream and answered before the next; then the tail. The
    stream is closed whatever happens. Slow: a clip's frames never share a detector batch."""
    clip = await encoded_clip(upload, limits, every_nth)
    outcome = ClipOutcome()
    stream_id = "clip-" + secrets.token_urlsafe(18)
    await engine.open_stream(options, stream_id=stream_id)
    stream_open = True
    try:
        source_index = await _push_decoded(engine, clip, stream_id, deadline, outcome)
        started = time.perf_counter()
        stream_open = False
        tail = await engine.close_stream(stream_id)
        outcome.engine_ms += (time.perf_counter() - started) * 1000.0
        outcome.frames.extend(_renumbered(tail, source_index))
    finally:
        if stream_open:
            with contextlib.suppress(Pose3DError):
                await asyncio.shield(engine.close_stream(stream_id))
    outcome.frames_processed = len(source_index)
    outcome.frames.sort(key=lambda r: r.frame_index)
    return outcome
