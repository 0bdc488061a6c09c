"""A posted clip travels to the engine as its encoded bytes; the engine decodes it while it runs it.

:func:`run_clip` checks the clip from its container header only (:func:`~service.api.media.probe_clip`: frame
size, duration and frame count against the limits; no frame decoded here) and hands the engine an
:class:`~service.engine.types.EncodedClip`, which it decodes a few frames ahead of the batches it runs (memory stays
flat whatever the clip's length), checking the limits again (headers can lie). The engine runs a clip as a private
stream: the results are those of the clip streamed frame by frame (``POST /v1/streams/...``).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Final

from service.api.media import Media, clip_limits, probe_clip
from service.config import LimitSettings
from service.engine.types import EncodedClip, EngineClient, EstimateOptions, FrameResult, Work
from service.engine.work import collect
from service.errors import Unavailable, UnknownStream

LOST_CLIP_STATE: Final = "the frame buffer lost this clip's state while it ran (was Redis restarted?); send it again"


@dataclass
class ClipOutcome:
    """Results in source order; ``frame_index`` is the source frame index (before ``every_nth``)."""

    frames: list[FrameResult] = field(default_factory=list)
    decode_ms: float = 0.0
    engine_ms: float = 0.0
    frames_processed: int = 0


async def encoded_clip(upload: Media, limits: LimitSettings, every_nth: int) -> EncodedClip:
    """The upload's bytes, checked from the container header (413 past the limits, 422 unreadable)."""
    await asyncio.to_thread(probe_clip, upload.data, upload.kind, limits, every_nth)
    return EncodedClip(upload.data, upload.kind.value, clip_limits(limits), every_nth)


async def run_clip(
    engine: EngineClient,
    upload: Media,
    options: EstimateOptions,
    limits: LimitSettings,
    every_nth: int,
    deadline: float,
) -> ClipOutcome:
    """Run ``upload`` (a clip) through the engine as encoded bytes; results in source order
    (``frame_index`` = source frame index). ``decode_ms`` is the engine's decoding time, ``engine_ms`` the
    wall time of the engine call (decoding overlaps it)."""
    clip = await encoded_clip(upload, limits, every_nth)
    work = Work("clip-" + secrets.token_urlsafe(18), clip, options, deadline)
    del clip
    started = time.perf_counter()
    try:
        result = await collect(engine, work)
    except UnknownStream:  # the clip's private stream vanished (the frame buffer's Redis restarted): retryable
        raise Unavailable(LOST_CLIP_STATE, retry_after_s=1.0) from None
    return ClipOutcome(
        frames=sorted(result.frames, key=lambda r: r.frame_index),
        decode_ms=result.timings_ms.get("decode", 0.0),
        engine_ms=(time.perf_counter() - started) * 1000.0,
        frames_processed=len(result.frames),
    )
