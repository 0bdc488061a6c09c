"""A posted clip travels to the engine as its encoded bytes: checked here from its container header only (no frame
decoded), decoded by the engine a few frames ahead of its batches (checking the limits again: headers can lie), and
run as a private stream, so the results are those of the clip streamed frame by frame.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final

from service.api.media import Media, clip_limits, probe_clip
from service.config import LimitSettings
from service.engine.types import EncodedClip, EngineClient, EstimateOptions, FrameResult, Work
from service.engine.work import collect
from service.errors import StreamFramesLost, Unavailable, UnknownStream

LOST_STATE: Final = (
    "the frame buffer lost this {}'s state while it ran (was Redis restarted, or short of memory?); send it again"
)


@contextmanager
def retryable_if_lost(what: str) -> Iterator[None]:
    """A private stream that vanished (UnknownStream: the frame buffer's Redis restarted) or lost frames
    (StreamFramesLost: Redis evicted them) → retryable Unavailable."""
    try:
        yield
    except (UnknownStream, StreamFramesLost):
        raise Unavailable(LOST_STATE.format(what), retry_after_s=1.0) from None


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
    work = Work("clip-" + secrets.token_urlsafe(18), await encoded_clip(upload, limits, every_nth), options, deadline)
    started = time.perf_counter()
    with retryable_if_lost("clip"):
        result = await collect(engine, work)
    return ClipOutcome(
        frames=sorted(result.frames, key=lambda r: r.frame_index),
        decode_ms=result.timings_ms.get("decode", 0.0),
        engine_ms=(time.perf_counter() - started) * 1000.0,
        frames_processed=len(result.frames),
    )
