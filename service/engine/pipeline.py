"""The pipeline: decode → person boxes → detector → (CA-PF tokens) → frame buffer → lifter, each batched.

One :class:`Pipeline` owns the stages' batchers and their threads (:class:`~service.engine.stages.Stages`). A clip
is run as a private in-memory stream, so a clip and the same frames pushed as a stream give the same poses by
construction. Every call takes the request's :class:`~service.engine.streams.StreamStep`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import weakref
from collections.abc import AsyncIterable, Iterable
from dataclasses import dataclass, replace
from itertools import islice

import numpy as np

from model.joints import normalize_screen_coordinates
from service.config import CommonSettings
from service.engine.admission import Backlog
from service.engine.clips import async_frames
from service.engine.detector import PersonDetection
from service.engine.framebuffer import Emission, FrameBuffer, MemoryFrameBuffer, StreamMeta
from service.engine.lifters import ServedLifter, TokenInput
from service.engine.person_boxes import FrameBoxes
from service.engine.pose_guide import GuideAfter, GuideAt, GuideSettings, guides, load_guided_boxes
from service.engine.prepare import (
    PreparedPeople,
    decode_image,
    detected_keypoints,
    empty_tokens,
    people_from_keypoints,
)
from service.engine.stages import BoxItem, ChainLink, ChainStep, DetectItem, Models, Stages, guided_item
from service.engine.streams import (
    FrameOptions,
    PreparedFrame,
    StreamStep,
    Timings,
    append_frame,
    frame_result,
    ready_frames,
)
from service.engine.types import (
    BoxSource,
    ByteImage,
    FloatArray,
    Frame,
    FrameResult,
    ImageFrame,
    KeypointFrame,
    WindowMode,
)
from service.errors import InvalidInput, Pose3DError, Unavailable
from service.metrics import Metrics


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error a failed task group stands for: its first service error, else its first error."""
    error: BaseException = group.subgroup(Pose3DError) or group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


class Pipeline(Stages):
    """The stages over the loaded models, and the flow of frames through them and the frame buffer ``buffer``.
    Create and use inside one running event loop."""

    def __init__(self, settings: CommonSettings, metrics: Metrics, models: Models, buffer: FrameBuffer) -> None:
        eng = settings.engine
        super().__init__(eng, metrics, models, settings.device)
        self.settings = settings
        self.metrics = metrics
        self.buffer = buffer
        self.backlog = Backlog(eng.rate_window_s)
        det = settings.detector
        self.guide = GuideSettings(det.detect_every, det.guide_min_score) if det.pose_guided_boxes else None
        self.clip_buffer = MemoryFrameBuffer(max_streams=1_000_000, ttl_s=eng.request_timeout_s * 4)
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self.look_ahead = max(4, 2 * eng.max_batch_size)
        """Frames of a clip given whole (a sequence) in preparation at once: two detector batches' worth."""
        self.streamed_look_ahead = max(4, eng.max_batch_size)
        """Frames of a clip pulled from an async source in preparation at once: bounds its decoded frames held."""

    def guide_for(self, max_people: int | None) -> GuideSettings | None:
        """The pose guide's settings for a request keeping at most ``max_people`` people (``None``: guide off)."""
        return None if self.guide is None else replace(self.guide, max_people=max_people)

    def lock(self, stream_id: str) -> asyncio.Lock:
        """The lock serialising appends of one stream in this process."""
        return self._locks.setdefault(stream_id, asyncio.Lock())

    def clip_step(
        self, lifter: ServedLifter, opts: FrameOptions, mode: WindowMode, deadline: float | None
    ) -> StreamStep:
        """A fresh private stream in :attr:`clip_buffer` for one clip (created by :meth:`run_clip`)."""
        meta = StreamMeta(f"clip-{uuid.uuid4().hex}", lifter.name, mode, opts.flip_test, opts.max_people, opts.boxes)
        return StreamStep(self.clip_buffer, meta, lifter, deadline, Timings(), client_index=[])

    async def _find_boxes(
        self,
        image: ByteImage,
        opts: FrameOptions,
        guide: GuideAt | GuideAfter | None,
        guide_settings: GuideSettings | None,
        deadline: float | None,
        asked: bool,
    ) -> FrameBoxes:
        """One frame's boxes: the client's, else the pose guide's (``guide`` under ``guide_settings``, when on and not
        ``asked``), else the person detector's (counted by why it ran), else the whole frame."""
        if opts.boxes is None and guide is not None and guide_settings is not None and not asked:
            guided = await load_guided_boxes(guide, guide_settings)
            if guided is not None:
                return FrameBoxes(guided, np.ones(len(guided), np.float32), self.box_finder.default_source)
        if opts.boxes is None and self.box_finder.detector is not None:
            reason = "asked" if asked else "pose_guide" if self.guide is not None else "every_frame"
            self.metrics.person_detector_runs.labels(reason=reason).inc()
            return await self.boxes.submit(BoxItem(image, None, opts.max_people), deadline)
        return self.box_finder.find(image, opts.boxes, opts.max_people)

    async def prepare(
        self,
        frame: Frame,
        step: StreamStep,
        index: int,
        after: asyncio.Event | None = None,
        before: GuideAfter | None = None,
        chain: ChainStep | None = None,
    ) -> tuple[PreparedPeople, BoxSource]:
        """Frame ``index`` (in ``step``'s buffer): its untracked people and where their boxes came from. Pose-guided
        boxes come from frame ``index - 1``: from the buffer once ``after`` is set (the frame before appended), or
        from its prepared people (``before``, a clip), or on the stage thread behind its detector item (``chain``,
        :class:`~service.engine.stages.ChainLink`). The decoding waits for none."""
        lifter, deadline, timings = step.lifter, step.deadline, step.timings
        if isinstance(frame, KeypointFrame):
            if lifter.needs_image:
                raise InvalidInput(f"model {lifter.name!r} needs image features; it cannot take 2D keypoints")
            return people_from_keypoints(frame), BoxSource.KEYPOINTS
        assert isinstance(frame, ImageFrame)
        try:
            with timings.stage("decode"):
                if isinstance(frame.image, bytes):
                    image = await self.decode.submit(frame.image, deadline)
                else:  # already decoded: only checked (no thread hop, and no batch of the decoder keeps it alive)
                    image = decode_image(frame.image)
            guide = before or (GuideAt(step.buffer, step.stream_id, index) if self.guide is not None else None)
            if after is not None:
                await after.wait()
            found, people = await self._people(image, frame, step, index, guide, chain)
        finally:
            if chain is not None:
                chain.own.ready.set()  # queued nothing (no people, or failed): the next frame will not wait
        size = (int(image.shape[1]), int(image.shape[0]))
        keypoints_px, scores = detected_keypoints(people)
        prepared = PreparedPeople(
            image_size=size,
            boxes=np.asarray(found.boxes, np.float32).reshape(-1, 4),
            box_scores=np.asarray(found.scores, np.float32).reshape(-1),
            keypoints_px=keypoints_px,
            scores=scores,
            tokens=await self._tokens(step, people, size),
        )
        return prepared, found.source

    async def _people(
        self,
        image: ByteImage,
        frame: ImageFrame,
        step: StreamStep,
        index: int,
        guide: GuideAt | GuideAfter | None,
        chain: ChainStep | None,
    ) -> tuple[FrameBoxes, list[PersonDetection]]:
        """Frame ``index``'s boxes and the detector's people in them: chained behind the frame before (``chain``,
        when the guide holds there), else as :meth:`_find_boxes` finds them."""
        opts, deadline, timings = step.options, step.deadline, step.timings
        flips = (self.settings.detector.flip_test, step.lifter.needs_image and opts.flip_test)
        guide_settings = self.guide_for(opts.max_people)
        if chain is not None and guide_settings is not None and opts.boxes is None and not frame.detect_people:
            chained = await guided_item(image, chain, index, guide_settings, flips)
            if chained is not None:
                chain.own.queued(chained)
                with timings.stage("detect"):
                    people = await self.detect.submit(chained, deadline)
                if chained.guided:
                    return FrameBoxes(chained.boxes, chained.scores, self.box_finder.default_source), people
        with timings.stage("boxes"):
            found = await self._find_boxes(image, opts, guide, guide_settings, deadline, frame.detect_people)
        if not len(found):
            return found, []
        item = DetectItem(image, found.boxes, found.scores, *flips)
        if chain is not None:
            chain.own.queued(item)
        with timings.stage("detect"):
            return found, await self.detect.submit(item, deadline)

    async def _tokens(self, step: StreamStep, people: list[PersonDetection], size: tuple[int, int]) -> FloatArray:
        """``(P, V, 17, D)`` per-joint tokens of the people of a ``size = (w, h)`` image (empty without)."""
        lifter = step.lifter
        if not (lifter.needs_image and people):
            return empty_tokens(len(people))
        if any(p.features is None for p in people):
            raise Unavailable("the detector keeps no feature maps, which CA-PF needs")
        inputs = [
            TokenInput(
                normalize_screen_coordinates(p.keypoints_h36m, *size),
                p.crop_keypoints_h36m,
                p.features or (),
                p.flip_features,
            )
            for p in people
        ]
        with step.timings.stage("tokens"):
            return np.stack(await self.tokens[lifter.name].submit_many(inputs, step.deadline))

    async def lift_emission(self, step: StreamStep, *emissions: Emission) -> list[FrameResult]:
        """Lift every window that ``emissions`` made ready, in one submission; one :class:`FrameResult` per emitted
        frame (a clip's with the client's own frame indices)."""
        lifter, meta, client_index = step.lifter, step.meta, step.client_index
        ready = [rf for e in emissions for rf in ready_frames(e, lifter.window, meta.mode, meta.flip_test)]
        windows = [w for rf in ready for w in rf.windows]
        with step.timings.stage("lift"):
            poses = await self.lift[lifter.name].submit_many(windows, step.deadline)
        results: list[FrameResult] = []
        left = iter(poses)
        for rf in ready:
            idx, ts = client_index[rf.record.frame_index] if client_index else (None, None)
            results.append(frame_result(rf.record, list(islice(left, len(rf.windows))), idx, ts))
        self.metrics.frames_total.labels(model=lifter.name).inc(len(results))
        return results

    async def push(self, step: StreamStep, frame: PreparedFrame) -> Emission:
        """Track and append one prepared frame under the stream's lock; returns what became ready."""
        with step.timings.stage("buffer"):
            async with self.lock(step.stream_id):
                started = time.monotonic()
                emission = await append_frame(step.buffer, step.meta, step.lifter.window, frame)
                step.emitted.append(emission)
                self.metrics.stage_duration.labels(stage="buffer").observe(time.monotonic() - started)
        return emission

    async def push_in_order(
        self, step: StreamStep, frames: AsyncIterable[Frame], look_ahead: int
    ) -> tuple[list[FrameResult], BoxSource]:
        """Prepare ``frames`` concurrently, append them to ``step``'s stream in order, lift what each append
        makes ready (concurrently); returns the results (in emission order) and the last frame's box source.

        At most ``look_ahead`` frames are taken and not yet prepared, so an async source (a clip being decoded) is
        held a bounded number of frames at a time. A pose-guided frame waits for the frame before (appended for a
        stream, prepared for a clip); a person-detector frame needs nothing of it and runs at once.

        With ``step.client_index`` (a clip), frames go in at positions ``0, 1, 2, ...`` (their own indices kept in
        ``client_index``) and ready windows are lifted a full lift batch at a time (its results come at its end
        anyway; P-STMO-81 on ONNX Runtime: 6.8 ms CPU per window in fours against 8.5 one by one); a stream's frames
        go in at their own ``frame_index`` and each one's windows are lifted as soon as it is appended.
        """
        slots, order = asyncio.Semaphore(max(1, look_ahead)), asyncio.Queue[_Pending | None]()
        lifted: list[asyncio.Task[list[FrameResult]]] = []
        held: list[Emission] = []  # appended, not lifted yet
        hold = self.lift[step.lifter.name].limits.max_batch_size if step.client_index is not None else 1
        source = BoxSource.WHOLE_FRAME
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._feed(step, frames, slots, order, tg))
                while (pending := await order.get()) is not None:
                    people, source = await pending.task
                    slots.release()
                    frame = PreparedFrame(pending.index, pending.timestamp_s, people, pending.track)
                    emission = await self.push(step, frame)
                    pending.appended.set()
                    held.append(emission)
                    if sum(map(_windows, held)) >= hold:
                        lifted.append(tg.create_task(self.lift_emission(step, *held)))
                        held = []
                    await asyncio.sleep(0)  # let the loop serve others between frames (keypoints never wait)
                lifted.append(tg.create_task(self.lift_emission(step, *held)))
        except BaseExceptionGroup as group:
            raise _first_error(group) from None
        return [r for task in lifted for r in task.result()], source

    async def _feed(
        self,
        step: StreamStep,
        frames: AsyncIterable[Frame],
        slots: asyncio.Semaphore,
        order: asyncio.Queue[_Pending | None],
        tg: asyncio.TaskGroup,
    ) -> None:
        """Take frames from ``frames`` as ``slots`` free up and start preparing each, in ``order`` (then ``None``)."""
        guide = self.guide_for(step.meta.max_people) if step.meta.boxes is None else None  # boxes from the frame before
        source_frames = aiter(frames)
        client_index = step.client_index
        appended: asyncio.Event | None = None  # the frame before's
        previous: asyncio.Task[tuple[PreparedPeople, BoxSource]] | None = None  # a clip's frame before, if tracked
        link: ChainLink | None = None  # a clip's frame before's detector item, if an image frame
        while True:
            await slots.acquire()
            frame = await anext(source_frames, None)
            if frame is None:
                break
            chain = None
            if client_index is None:  # a stream: the guide is the buffer's, once the frame before is appended
                index = frame.frame_index
                after, before = (appended if _follows(frame, index, guide) else None), None
            else:  # a clip: appended in order by this coroutine alone, so the frame before's own people will do
                index = len(client_index)
                client_index.append((frame.frame_index, frame.timestamp_s))
                after, before = None, (GuideAfter(index, previous) if guide is not None else None)
                if guide is not None and isinstance(frame, ImageFrame):
                    chain = ChainStep(link, ChainLink())
            task = tg.create_task(self.prepare(frame, step, index, after, before, chain))
            previous = task if isinstance(frame, ImageFrame) else None
            link = chain.own if chain is not None else None
            appended = asyncio.Event()
            order.put_nowait(_Pending(task, index, frame.timestamp_s, isinstance(frame, ImageFrame), appended))
            del frame, task, chain  # the task alone holds the frame until it is prepared (a done task holds no frame)
        order.put_nowait(None)

    async def run_clip(
        self, frames: Iterable[Frame] | AsyncIterable[Frame], step: StreamStep, look_ahead: int | None = None
    ) -> tuple[list[FrameResult], BoxSource]:
        """A whole clip as the private stream of ``step`` (:meth:`clip_step`): :meth:`push_in_order` (``look_ahead``
        default :attr:`look_ahead`), then the tail flushed."""
        buffer, meta = step.buffer, step.meta
        await buffer.create(meta)
        source_frames = frames if isinstance(frames, AsyncIterable) else async_frames(frames)
        try:
            results, source = await self.push_in_order(step, source_frames, look_ahead or self.look_ahead)
            tail = await buffer.flush(meta.stream_id, step.lifter.window, meta.mode)
            results += await self.lift_emission(step, tail)
        finally:
            await buffer.delete(meta.stream_id)
        return results, source


@dataclass(frozen=True)
class _Pending:
    """A frame taken from a source: its preparation, buffer index, timestamp, whether to track it, and the event
    set once it is appended."""

    task: asyncio.Task[tuple[PreparedPeople, BoxSource]]
    index: int
    timestamp_s: float | None
    track: bool
    appended: asyncio.Event


def _windows(emission: Emission) -> int:
    """How many windows ``emission`` makes ready (one per person of each emitted frame)."""
    return sum(len(emission.records[t].track_ids) for t in emission.targets if t in emission.records)


def _follows(frame: Frame, index: int, guide: GuideSettings | None) -> bool:
    """Whether ``frame`` (buffer frame ``index``) may take its boxes from the frame before (with ``guide``)."""
    return guide is not None and isinstance(frame, ImageFrame) and not frame.detect_people and guides(index, guide)
