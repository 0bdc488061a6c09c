"""Adapters over :meth:`EngineClient.submit`, the engine's one way in for frames, and the one private-stream
lifecycle (open → run → close, closed shielded whatever happens). They hold no state: every transport's request is
``submit`` plus one of these.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Sequence
from dataclasses import replace

from service.engine.stream_ids import new_stream_id
from service.engine.types import (
    EncodedClip,
    EngineClient,
    EstimateResult,
    Frame,
    FrameResult,
    Progress,
    Source,
    Summary,
    Work,
    ms_since,
)
from service.errors import InternalError, Pose3DError


async def collect(engine: EngineClient, work: Work) -> EstimateResult:
    """Every result of ``work`` (in the order the engine gave them) and its summary, as one answer."""
    frames: list[FrameResult] = []
    summary: Summary | None = None
    async with contextlib.aclosing(engine.submit(work)) as steps:
        async for step in steps:
            frames += step.results
            summary = step.summary or summary
    if summary is None:
        raise InternalError("the engine gave no summary of a private request")
    return EstimateResult(work.request_id, summary.model, summary.box_source, frames, summary.timings_ms)


async def push(
    engine: EngineClient, stream_id: str, frames: Sequence[Frame], deadline: float | None = None
) -> list[FrameResult]:
    """``frames`` into the open stream ``stream_id`` (at their own ``frame_index``): the results they complete
    (possibly none, possibly earlier frames)."""
    work = Work(stream_id, list(frames), deadline=deadline, stream=stream_id)
    async with contextlib.aclosing(engine.submit(work)) as steps:
        return [result async for step in steps for result in step.results]


async def close(engine: EngineClient, stream_id: str) -> list[FrameResult]:
    """Close ``stream_id`` now (shielded from the caller's cancellation); its tail, or nothing when it is gone."""
    with contextlib.suppress(Pose3DError):
        return await asyncio.shield(engine.close_stream(stream_id))
    return []


async def in_private_stream(engine: EngineClient, work: Work, prefix: str = "clip") -> AsyncGenerator[Progress]:
    """``work`` through a fresh engine stream of its own (``<prefix>-<random>``), opened here, fed in chunks and
    closed at the end (its tail in the last event, with the :class:`Summary`); closed too — shielded — when the
    work fails or the iterator is closed early. Results carry the frames' own ``frame_index`` (an encoded clip's
    source frame indices), as a private run in the engine gives them."""
    started = time.monotonic()
    sid = new_stream_id(f"{prefix}-")
    await engine.open_stream(work.options, stream_id=sid)
    own: list[tuple[int, float | None]] = []  # an async source's frames go in at positions 0, 1, 2, ...
    frames = work.frames
    if isinstance(frames, AsyncIterable):
        frames = _at_positions(frames, own)
    done = False
    try:
        async with contextlib.aclosing(engine.submit(replace(work, frames=frames, stream=sid, close=True))) as steps:
            async for step in steps:
                results = [_own_index(r, work.frames, own) for r in step.results]
                yield replace(step, results=results, summary=step.summary and _timed(step.summary, started))
        done = True
    finally:
        if not done:
            await close(engine, sid)


async def _at_positions(frames: AsyncIterable[Frame], own: list[tuple[int, float | None]]) -> AsyncIterator[Frame]:
    async for frame in frames:
        own.append((frame.frame_index, frame.timestamp_s))
        yield replace(frame, frame_index=len(own) - 1)


def _own_index(result: FrameResult, frames: Source, own: list[tuple[int, float | None]]) -> FrameResult:
    """A stream position's result under the index its frame came with."""
    if isinstance(frames, EncodedClip):
        return replace(result, frame_index=frames.source_index(result.frame_index))
    if own:
        index, timestamp = own[result.frame_index]
        return replace(result, frame_index=index, timestamp_s=timestamp)
    return result


def _timed(summary: Summary, started: float) -> Summary:
    return replace(summary, timings_ms={**summary.timings_ms, "total": ms_since(started)})
