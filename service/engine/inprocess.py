"""InProcessEngine: the EngineClient protocol served by the pipeline in this process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, TypeVar

import torch

from service.config import CommonSettings, InputKind
from service.engine.admission import Refusal
from service.engine.clips import async_frames, clip_frames, positioned
from service.engine.door import admit, probe
from service.engine.framebuffer import FrameBuffer, StreamMeta
from service.engine.lifters import ServedLifter
from service.engine.loader import Report, load_engine
from service.engine.pipeline import Pipeline
from service.engine.stream_ids import STREAM_ID_RULE, is_stream_id, new_stream_id
from service.engine.streams import FrameOptions, StreamReopened, StreamStep
from service.engine.types import (
    BoxSource,
    EstimateOptions,
    Frame,
    FrameResult,
    ImageFrame,
    KeypointFrame,
    ModelInfo,
    Progress,
    ReadyStatus,
    StreamInfo,
    Summary,
    Work,
    ms_since,
)
from service.engine.world import (
    decode_results,
    encode_results,
    place_clip,
    smooth_stream,
    smooths,
    world_from_json,
    world_to_json,
)
from service.errors import InvalidInput, StreamFramesLost, Unavailable, UnknownModel, UnknownStream
from service.metrics import Metrics

log = logging.getLogger(__name__)

META_CACHE_SIZE: Final = 10_000
_T = TypeVar("_T")


class InProcessEngine:
    """The engine in this process (an :class:`~service.engine.types.EngineClient`); ``buffer`` replaces the frame
    buffer the settings name (tests, benchmarks). ``await start()`` loads and warms up the models."""

    def __init__(self, settings: CommonSettings, metrics: Metrics, buffer: FrameBuffer | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self._buffer = buffer
        self._pipeline: Pipeline | None = None
        self._start_lock = asyncio.Lock()
        self._detail: dict[str, str] = {"engine": "loading"}
        self._report = Report(settings.device.value)
        self._metas: OrderedDict[str, StreamMeta] = OrderedDict()
        self._smoothing: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._world_thread = ThreadPoolExecutor(1, thread_name_prefix="pose3d-world")

    async def _in_world(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)`` on the engine's one world thread: placement and smoothing are numpy work that must not hold
        the event loop, and one thread feeds a stream's smoother in the order its pushes finished."""
        return await asyncio.get_running_loop().run_in_executor(self._world_thread, fn, *args)

    @property
    def pipeline(self) -> Pipeline:
        if self._pipeline is None:
            raise Unavailable("the engine is still loading its models")
        return self._pipeline

    async def start(self) -> None:
        """Load models, detector and frame buffer, warm up; idempotent. Raises Unavailable naming what failed."""
        async with self._start_lock:
            if self._pipeline is not None:
                return
            pipeline = await load_engine(self.settings, self.metrics, self._buffer, self._report)
            self._pipeline, self._buffer = pipeline, pipeline.buffer
            self._detail["engine"] = "started"
            self.metrics.worker_up.set(1)
            if not await pipeline.buffer.ping():
                log.warning(
                    "the frame buffer's Redis does not answer: streams and clips fail and /readyz reports not ready "
                    "until it does — check redis_url (POSE3D_REDIS_URL) or start redis-server"
                )

    def admission_probe(self, images: bool, timeout_s: float | None) -> Refusal | None:
        """:func:`door.probe`, once started."""
        return probe(self._pipeline, images, timeout_s) if self._pipeline is not None else None

    async def _count_streams(self, cheap_only: bool) -> None:
        """Set ``pose3d_active_streams`` from the frame buffer; a shared one (Redis: a SCAN) only when not
        ``cheap_only`` (``ready()``)."""
        if self._buffer is None or (cheap_only and self._buffer.shared):
            return
        self.metrics.active_streams.set(await self._buffer.count())

    async def ready(self) -> ReadyStatus:
        detail = {**self._detail, **self._report.detail}
        ok = self._pipeline is not None
        if self._buffer is not None:
            reachable = await self._buffer.ping()
            detail["frame_buffer"] = f"{self._buffer.kind} {'ok' if reachable else 'unreachable'}"
            ok = ok and reachable
            if reachable:
                await self._count_streams(cheap_only=False)
        if torch.cuda.is_available():
            for index in range(torch.cuda.device_count()):
                name = f"cuda:{index}"
                self.metrics.gpu_memory_allocated.labels(device=name).set(torch.cuda.memory_allocated(index))
                self.metrics.gpu_memory_reserved.labels(device=name).set(torch.cuda.memory_reserved(index))
        return ReadyStatus(ready=ok, detail=detail)

    async def aclose(self) -> None:
        if self._pipeline is not None:
            await self._pipeline.aclose()
            self._pipeline = None
        if self._buffer is not None:
            await self._buffer.aclose()
        self._world_thread.shutdown(wait=False, cancel_futures=True)
        self._detail["engine"] = "stopped"
        self.metrics.worker_up.set(0)

    async def models(self) -> list[ModelInfo]:
        return [lifter.info for lifter in self.pipeline.lifters.values()]

    async def components(self) -> list[ModelInfo]:
        return list(self._report.components.values())

    def _lifter(self, name: str | None, frames: list[Frame] | None = None) -> ServedLifter:
        """The lifter named ``name``, else the default model for ``frames`` (``None``: a clip being decoded)."""
        lifters = self.pipeline.lifters
        if name is None:
            kind = InputKind.IMAGE if frames is not None and len(frames) == 1 else InputKind.CLIP
            if frames and all(isinstance(f, KeypointFrame) for f in frames):
                kind = InputKind.KEYPOINTS
            name = self.settings.default_model(kind)
        if name not in lifters:
            raise UnknownModel(f"unknown model {name!r}; served: {', '.join(sorted(lifters)) or 'none'}")
        return lifters[name]

    def _deadline(self, deadline: float | None) -> float:
        return deadline if deadline is not None else time.monotonic() + self.settings.engine.request_timeout_s

    async def submit(self, work: Work) -> AsyncGenerator[Progress]:
        """:meth:`EngineClient.submit`: a private run in a clip stream, or frames pushed into a named stream."""
        if work.stream is None:
            yield await self._private(work)
            return
        async with contextlib.aclosing(self._into_stream(work, work.stream)) as steps:
            async for step in steps:
                yield step

    async def _private(self, work: Work) -> Progress:
        """``work`` as one pipeline clip step: frames at hand admitted as a whole, a clip being decoded (or an async
        source) by its first frame and pulled one detector batch ahead."""
        started = time.monotonic()
        frames = work.frames
        given = list(frames) if isinstance(frames, Sequence) else None
        if given is not None and not given:
            raise InvalidInput("a request needs at least one frame")
        lifter = self._lifter(work.options.model, given)
        opts = _frame_options(work.options, lifter)
        step = self.pipeline.clip_step(lifter, opts, work.options.mode, self._deadline(work.deadline))
        pipeline, decoder = self.pipeline, None
        if given is not None:
            ticket = admit(pipeline, lifter, step.options, _frame_counts(given), step.deadline)
            try:
                results, box_source = await pipeline.run_clip(given, step)
            finally:
                ticket.finish(self.metrics)
        else:
            admit(pipeline, lifter, step.options, (1, 0), step.deadline)
            async with clip_frames(frames, self.metrics) as (source, decoder):  # an EncodedClip decodes here
                results, box_source = await pipeline.run_clip(source, step, look_ahead=pipeline.streamed_look_ahead)
        results = await self._in_world(place_clip, results, work.options.camera, work.options.smoothing)
        ms = step.timings.as_ms() | {"total": ms_since(started)}
        decoded = len(step.client_index or ())
        if decoder is not None:
            ms["decode"] = round(ms.get("decode", 0.0) + decoder.decode_ms, 3)
        return Progress(results, decoded, Summary(lifter.info, box_source, ms))

    async def _into_stream(self, work: Work, stream_id: str) -> AsyncGenerator[Progress]:
        """``work``'s frames pushed into ``stream_id`` a chunk at a time, each chunk's results yielded; then a
        summary naming the stream's model (with the tail when ``work.close`` closes the stream). The work is admitted
        by time at its first chunk: the chunks after it are never refused for time."""
        started, frames = time.monotonic(), work.frames
        size = work.chunk_frames or (len(frames) if isinstance(frames, Sequence) else self.pipeline.streamed_look_ahead)
        box_source, taken, admitted = BoxSource.WHOLE_FRAME, 0, False
        async with positioned(frames, self.metrics, max(1, size)) as (chunks, decoder):
            async for chunk, taken in chunks:
                timeout = work.chunk_timeout_s
                deadline = work.deadline if timeout is None else time.monotonic() + timeout
                if chunk:
                    results, box_source = await self._push(stream_id, chunk, deadline, refuse=not admitted)
                    admitted = True
                else:
                    results = []
                yield Progress(results, taken)
        model = self._lifter((await self._meta(stream_id)).model).info
        tail = await self.close_stream(stream_id) if work.close else []
        ms = {"total": ms_since(started)}
        if decoder is not None:
            ms["decode"] = round(decoder.decode_ms, 3)
        yield Progress(tail, taken, Summary(model, box_source, ms))

    async def open_stream(self, options: EstimateOptions, stream_id: str | None = None) -> StreamInfo:
        lifter = self._lifter(options.model)
        sid = stream_id if stream_id is not None else new_stream_id()
        if not is_stream_id(sid):
            raise InvalidInput(STREAM_ID_RULE)
        opts = _frame_options(options, lifter)
        world = world_to_json(options.camera, options.smoothing)
        meta = StreamMeta(sid, lifter.name, options.mode, opts.flip_test, opts.max_people, opts.boxes, world)
        await self.pipeline.buffer.create(meta)
        self._remember(meta)
        await self._count_streams(cheap_only=True)
        return StreamInfo(sid, lifter.name, options.mode, 0, 0, options.smoothing.lag_frames)

    def _remember(self, meta: StreamMeta) -> None:
        self._metas[meta.stream_id] = meta
        self._metas.move_to_end(meta.stream_id)
        while len(self._metas) > META_CACHE_SIZE:
            self._metas.popitem(last=False)

    async def _meta(self, stream_id: str) -> StreamMeta:
        """A stream's metadata, cached after the first look-up (which may go stale when the stream is opened again
        elsewhere: appends check it, :class:`StreamReopened`)."""
        meta = self._metas.get(stream_id)
        if meta is None:
            meta = (await self.pipeline.buffer.tracker(stream_id)).meta
            self._remember(meta)
        return meta

    async def _on_stream(self, stream_id: str, step: Callable[[StreamMeta], Awaitable[_T]]) -> _T:
        """``step(meta)`` with the cached metadata, redone once with fresh metadata if the stream was reopened."""
        try:
            return await self._in_turn(await self._meta(stream_id), step)
        except StreamReopened:
            self._metas.pop(stream_id, None)
            return await self._in_turn(await self._meta(stream_id), step)

    async def _in_turn(self, meta: StreamMeta, step: Callable[[StreamMeta], Awaitable[_T]]) -> _T:
        """``step(meta)``; one at a time per smoothed stream in this process, so that each push finds the smoothing
        state the one before it stored."""
        if not smooths(meta.world):
            return await step(meta)
        async with self._smoothing.setdefault(meta.stream_id, asyncio.Lock()):
            return await step(meta)

    def _step(self, meta: StreamMeta, deadline: float | None) -> StreamStep:
        return StreamStep(self.pipeline.buffer, meta, self._lifter(meta.model), self._deadline(deadline))

    async def _push(
        self, stream_id: str, frames: Sequence[Frame], deadline: float | None, refuse: bool = True
    ) -> tuple[list[FrameResult], BoxSource]:
        """``frames`` appended in order at their own ``frame_index``, placed and smoothed; the results they complete
        and the last frame's box source (``refuse``: see :func:`~service.engine.door.admit`)."""
        deadline = self._deadline(deadline)

        async def step(meta: StreamMeta) -> tuple[list[FrameResult], BoxSource]:
            flow = self._step(meta, deadline)
            ticket = admit(
                self.pipeline, flow.lifter, flow.options, _frame_counts(frames), flow.deadline, refuse=refuse
            )
            # at most one batch in preparation: a long chunk of keypoints never fills a loop iteration
            look_ahead = min(len(frames), self.pipeline.streamed_look_ahead)
            try:
                results, source = await self.pipeline.push_in_order(flow, async_frames(frames), look_ahead)
            finally:
                ticket.finish(self.metrics)
            return await self._smooth(flow, results), source

        return await self._on_stream(stream_id, step)

    async def _smooth(self, step: StreamStep, results: list[FrameResult]) -> list[FrameResult]:
        """``results`` of ``step``'s appends placed and smoothed off the event loop (~1.4 ms per person for
        Savitzky–Golay), and the smoother's next state stored."""
        smoothed, update = await self._in_world(smooth_stream, step.meta.world, step.emitted, results)
        if update is not None:
            await step.buffer.smoothed(step.stream_id, update.expected, update.cursor, update.state)
        return smoothed

    async def close_stream(self, stream_id: str) -> list[FrameResult]:
        """Flush, lift and smooth the tail, forget the stream keeping the tail briefly (a retried close whose reply
        was lost answers it again, :meth:`_answered_close`)."""
        pipeline = self.pipeline
        try:
            meta = (await pipeline.buffer.state(stream_id)).meta  # fresh: the flush is windowed by the stream's mode
        except UnknownStream:
            return await self._answered_close(stream_id)
        step = self._step(meta, None)
        async with pipeline.lock(stream_id):
            try:
                tail = await pipeline.buffer.flush(stream_id, step.lifter.window, meta.mode)
            except StreamFramesLost:  # its tail can never be made: forgotten now, not kept until its TTL
                await pipeline.buffer.delete(stream_id)
                self._metas.pop(stream_id, None)
                raise
        lifted = await pipeline.lift_emission(step, tail)
        results, _ = await self._in_world(smooth_stream, meta.world, [tail], lifted, True)
        await pipeline.buffer.delete(stream_id, await self._in_world(encode_results, results))
        self._metas.pop(stream_id, None)
        await self._count_streams(cheap_only=True)
        return results

    async def _answered_close(self, stream_id: str) -> list[FrameResult]:
        """The tail the close of ``stream_id`` answered, kept by the frame buffer for ``CLOSED_TTL_S``: a close
        retried after its worker died between the delete and the reply. Raises UnknownStream when none is kept."""
        answer = await self.pipeline.buffer.closed_answer(stream_id)
        if answer is None:
            raise UnknownStream(f"stream {stream_id!r} does not exist or has expired")
        return await self._in_world(decode_results, answer)

    async def get_stream(self, stream_id: str) -> StreamInfo:
        state = await self.pipeline.buffer.state(stream_id)
        m = state.meta
        lag = world_from_json(m.world)[1].lag_frames
        return StreamInfo(m.stream_id, m.model, m.mode, state.frames_received, state.next_emit, lag)


def _frame_counts(frames: Sequence[Frame]) -> tuple[int, int]:
    """``(images, keypoint frames)`` among ``frames`` (what admission asks of a request)."""
    images = sum(1 for f in frames if isinstance(f, ImageFrame))
    return images, len(frames) - images


def _frame_options(options: EstimateOptions, lifter: ServedLifter) -> FrameOptions:
    if options.max_people is not None and options.max_people < 1:
        raise InvalidInput("max_people must be at least 1")
    flip = lifter.spec.flip_test if options.flip_test is None else options.flip_test
    return FrameOptions(options.boxes, options.max_people, flip)


async def build_engine(settings: CommonSettings, metrics: Metrics) -> InProcessEngine:
    """Build and start (load + warm up) the in-process engine."""
    engine = InProcessEngine(settings, metrics)
    await engine.start()
    return engine
