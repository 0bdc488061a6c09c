"""A posted clip runs through the engine while it is decoded, its frames sharing the engine's batches.

:func:`run_clip` decodes the clip with PyAV on its own thread into a bounded queue (at most
:data:`DECODE_AHEAD` decoded frames waiting) and hands the engine an async source of frames
(:meth:`~service.engine.types.EngineClient.estimate_clip`); the engine pulls frames a bounded number ahead
(one detector batch's worth), so the frames of one clip are detected together in batches while memory
stays flat whatever the clip's length. The results are those a client gets by streaming the clip itself
(``POST /v1/streams/...``): the engine runs a clip as a private stream.

:func:`run_clip_frame_by_frame` is the earlier path (one frame decoded, pushed and answered at a time into
an engine stream; no two frames of a clip share a batch), kept for comparison (``python -m bench.clip``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Final

from service.config import LimitSettings
from service.engine.types import ClipRequest, EngineClient, EstimateOptions, Frame, FrameResult, ImageFrame
from service.errors import Pose3DError, Unavailable, UnknownStream
from service.gateway.inputs import Upload
from service.gateway.media import ClipReader, DecodedFrame
from service.metrics import Metrics

DECODE_AHEAD: Final = 2
"""Decoded frames the gateway keeps ready beyond those the engine has taken (the engine bounds the rest)."""

LOST_CLIP_STATE: Final = "the frame buffer lost this clip's state while it ran (was Redis restarted?); send it again"

log = logging.getLogger("pose3d.gateway")


@dataclass
class ClipOutcome:
    """Results in source order; ``frame_index`` is the source frame index (before ``every_nth``)."""

    frames: list[FrameResult] = field(default_factory=list)
    decode_ms: float = 0.0
    engine_ms: float = 0.0
    frames_processed: int = 0


@dataclass(frozen=True)
class ClipReading:
    """How a posted clip is read: within ``limits``, every ``every_nth`` frame kept, decode times to ``metrics``."""

    limits: LimitSettings
    every_nth: int
    metrics: Metrics

    async def open(self, upload: Upload) -> ClipReader:
        """The upload's reader (its header probed on a worker thread)."""
        return await asyncio.to_thread(ClipReader, upload.file.file, upload.kind, self.limits, self.every_nth)


def _renumbered(results: list[FrameResult], source_index: list[int]) -> list[FrameResult]:
    return [FrameResult(source_index[r.frame_index], r.timestamp_s, r.people) for r in results]


async def _next_frame(frames: Iterator[DecodedFrame]) -> DecodedFrame | None:
    """The next decoded frame, decoded on a worker thread (``None`` at the end)."""
    return await asyncio.to_thread(next, frames, None)


async def run_clip_frame_by_frame(
    engine: EngineClient, upload: Upload, options: EstimateOptions, reading: ClipReading, deadline: float
) -> ClipOutcome:
    """Decode ``upload`` frame by frame and push each frame (engine indices 0, 1, 2, ...) into a
    fresh engine stream, then flush its tail. The stream is closed whatever happens. Slow: one frame
    at a time, so a clip's frames never share a detector batch; kept to measure :func:`run_clip` against."""
    outcome = ClipOutcome()
    reader = await reading.open(upload)
    metrics = reading.metrics
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


_Decoded = tuple[DecodedFrame | None, float] | Exception
"""What the decoding thread hands over: a frame (``None`` at the end) and the seconds it took, or an error."""


class _DecodeAhead:
    """Decodes ``reader`` on its own thread into an asyncio queue, at most ``ahead`` frames ahead of the
    consumer (frames waiting in the queue plus the one being decoded). :meth:`aclose` stops the thread,
    waits for it and closes the reader; call it whatever happens."""

    def __init__(self, reader: ClipReader, ahead: int, metrics: Metrics) -> None:
        self._reader = reader
        self._metrics = metrics
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[_Decoded] = asyncio.Queue()
        self._room = threading.Semaphore(ahead)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._decode, name="pose3d-clip-decode", daemon=True)
        self.decode_ms = 0.0
        self.frames_decoded = 0
        self._thread.start()

    def _decode(self) -> None:
        """On the thread: decode a frame whenever the queue has room, until the end, an error, or stop."""
        frames: Iterator[DecodedFrame] = self._reader.frames()
        try:
            while True:
                self._room.acquire()
                if self._stopped.is_set():
                    return
                started = time.perf_counter()
                decoded = next(frames, None)
                self._hand_over((decoded, time.perf_counter() - started))
                if decoded is None:
                    return
                del decoded
        except Exception as exc:  # handed to the consumer, which raises it
            self._hand_over(exc)

    def _hand_over(self, item: _Decoded) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting any more
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    async def frames(self) -> AsyncIterator[DecodedFrame]:
        """The decoded frames in order (raises the decoder's error, e.g. DecodeFailed)."""
        while True:
            item = await self._queue.get()
            self._room.release()
            if isinstance(item, Exception):
                raise item
            decoded, seconds = item
            if decoded is None:
                return
            self.decode_ms += seconds * 1000.0
            self.frames_decoded += 1
            self._metrics.stage_duration.labels("decode").observe(seconds)
            yield decoded

    async def aclose(self) -> None:
        self._stopped.set()
        self._room.release()  # wakes the thread if it waits for room
        await asyncio.to_thread(self._thread.join)
        await asyncio.to_thread(self._reader.close)


async def run_clip(
    engine: EngineClient, upload: Upload, options: EstimateOptions, reading: ClipReading, deadline: float
) -> ClipOutcome:
    """Decode ``upload`` on a thread while the engine runs it (``engine.estimate_clip``), the engine taking
    frames as it has room; results in source order (``frame_index`` = source frame index). ``decode_ms`` is
    the decoding thread's time, ``engine_ms`` the wall time of the engine call (decoding overlaps it)."""
    decoder = _DecodeAhead(await reading.open(upload), DECODE_AHEAD, reading.metrics)

    async def frames() -> AsyncIterator[Frame]:
        async for decoded in decoder.frames():
            yield ImageFrame(image=decoded.image, frame_index=decoded.index, timestamp_s=decoded.timestamp_s)

    request = ClipRequest("clip-" + secrets.token_urlsafe(18), frames(), options, deadline)
    started = time.perf_counter()
    try:
        result = await engine.estimate_clip(request)
    except UnknownStream:  # the clip's private stream vanished (the frame buffer's Redis restarted): retryable
        raise Unavailable(LOST_CLIP_STATE, retry_after_s=1.0) from None
    finally:
        await decoder.aclose()
    outcome = ClipOutcome(
        frames=sorted(result.frames, key=lambda r: r.frame_index),
        decode_ms=decoder.decode_ms,
        engine_ms=(time.perf_counter() - started) * 1000.0,
        frames_processed=decoder.frames_decoded,
    )
    return outcome
