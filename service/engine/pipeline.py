"""The pipeline: decode → person boxes → detector → (CA-PF tokens) → frame buffer → lifter, each batched.

One :class:`Pipeline` owns the stages' batchers and their threads: decoding and person-box detection on a
small pool, every torch stage on ONE inference thread (the event loop never runs a model). The detector
batches people across requests, the lifters batch windows across streams and requests. A clip is run
as a private in-memory stream (frames prepared concurrently, appended in order, windows lifted as they
become ready), so a clip and the same frames pushed as a stream give the same poses by construction.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from model.joints import normalize_screen_coordinates
from service.config import CommonSettings
from service.engine.batcher import BatcherLimits, DynamicBatcher
from service.engine.detector import PersonDetection
from service.engine.framebuffer import Emission, FrameBuffer, MemoryFrameBuffer, StreamMeta
from service.engine.lifters import FloatArray, LiftWindow, ServedLifter, TokenInput
from service.engine.person_boxes import FrameBoxes, PersonBoxFinder
from service.engine.pose_guide import GuideAt, GuideSettings, load_guided_boxes
from service.engine.prepare import PreparedPeople, decode_image, empty_tokens, people_from_keypoints
from service.engine.rtmpose import KeypointDetector
from service.engine.streams import append_frame, frame_result, ready_frames
from service.engine.types import BoxSource, ByteImage, Frame, FrameResult, ImageFrame, KeypointFrame, WindowMode
from service.errors import InternalError, InvalidInput, Pose3DError, Unavailable
from service.metrics import Metrics
from service.telemetry.tracing import stage_span


@dataclass
class DetectItem:
    """One image for the detector: ``image`` ``(H, W, 3) uint8``, ``boxes`` ``(P, 4)``, ``scores`` ``(P,)``.

    ``image`` is dropped (``None``) once the item is detected, so that a finished batch which its batcher
    still references does not keep a clip's frames alive."""

    image: ByteImage | None
    boxes: FloatArray
    scores: FloatArray
    flip_test: bool
    flip_features: bool


@dataclass(frozen=True)
class BoxItem:
    image: ByteImage
    boxes: tuple[tuple[float, float, float, float], ...] | None
    max_people: int | None


@dataclass
class Timings:
    """Seconds spent awaiting each stage by one request (summed over its frames)."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            with stage_span(name):  # an OpenTelemetry span per stage (no-op unless tracing is set up)
                yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.monotonic() - started

    def as_ms(self) -> dict[str, float]:
        return {k: round(v * 1000.0, 3) for k, v in self.seconds.items()}


@dataclass(frozen=True)
class FrameOptions:
    """What a frame's preparation depends on (fixed per request or stream)."""

    boxes: tuple[tuple[float, float, float, float], ...] | None
    max_people: int | None
    flip_test: bool


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    leaves: list[BaseException] = []

    def walk(e: BaseException) -> None:
        if isinstance(e, BaseExceptionGroup):
            for inner in e.exceptions:
                walk(inner)
        else:
            leaves.append(e)

    walk(group)
    return next((e for e in leaves if isinstance(e, Pose3DError)), leaves[0])


class Pipeline:
    """Stages and batchers over the loaded models. Create and use inside one running event loop."""

    def __init__(
        self,
        settings: CommonSettings,
        metrics: Metrics,
        lifters: dict[str, ServedLifter],
        detector: KeypointDetector | None,
        box_finder: PersonBoxFinder,
        buffer: FrameBuffer,
    ) -> None:
        eng = settings.engine
        self.settings = settings
        self.metrics = metrics
        self.lifters = lifters
        self.detector = detector
        self.box_finder = box_finder
        self.buffer = buffer
        det = settings.detector
        self.guide = GuideSettings(det.detect_every, det.guide_min_score) if det.pose_guided_boxes else None
        self.clip_buffer = MemoryFrameBuffer(max_streams=1_000_000, ttl_s=eng.request_timeout_s * 4)
        self.infer_pool = ThreadPoolExecutor(1, thread_name_prefix="pose3d-infer")
        self.cpu_pool = ThreadPoolExecutor(2, thread_name_prefix="pose3d-decode")
        limits = BatcherLimits.of_engine(eng, eng.max_batch_size, eng.max_delay_ms)
        decode_limits = BatcherLimits.of_engine(eng, *eng.stage_batch("decode"))
        detect_limits = BatcherLimits.of_engine(eng, *eng.stage_batch("detect"))
        lift_size, lift_delay = eng.stage_batch("lift")  # a model's own lift_batch (or CPU default) still applies
        self.decode = DynamicBatcher[bytes | ByteImage, ByteImage](
            "decode", lambda items: [decode_image(x) for x in items], decode_limits, executor=self.cpu_pool, metrics=metrics
        )  # fmt: skip
        self.boxes = DynamicBatcher[BoxItem, FrameBoxes](
            "boxes",
            lambda items: [box_finder.find(it.image, it.boxes, it.max_people) for it in items],
            limits,
            executor=self.cpu_pool,
            metrics=metrics,
        )
        # an ONNX Runtime detector (RTMPose) needs no torch thread: it overlaps the lifter's forwards
        detect_pool = self.cpu_pool if getattr(detector, "outside_torch", False) else self.infer_pool
        self.detect = DynamicBatcher[DetectItem, list[PersonDetection]](
            "detect", self._detect_batch, detect_limits, executor=detect_pool, metrics=metrics, size_of=lambda it: len(it.boxes)
        )  # fmt: skip
        self.tokens = {
            name: DynamicBatcher[TokenInput, FloatArray](
                "tokens", lifter.frame_tokens, limits, executor=self.infer_pool, metrics=metrics
            )
            for name, lifter in lifters.items()
            if lifter.needs_image
        }
        self.lift = {
            name: DynamicBatcher[LiftWindow, FloatArray](
                "lift",
                lifter.lift,
                BatcherLimits.of_engine(eng, lifter.lift_batch_size(lift_size), lift_delay),
                executor=self.infer_pool,
                metrics=metrics,
            )
            for name, lifter in lifters.items()
        }
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self.look_ahead = max(4, 2 * eng.max_batch_size)
        """Frames of a clip given whole (a sequence) in preparation at once: two detector batches' worth."""
        self.streamed_look_ahead = max(4, eng.max_batch_size)
        """Frames of a clip pulled from an async source (being decoded) in preparation at once: one batch's
        worth, which bounds the decoded frames a clip holds in the engine."""

    def _all_batchers(self) -> list[DynamicBatcher[object, object]]:
        found: list[object] = [self.decode, self.boxes, self.detect, *self.tokens.values(), *self.lift.values()]
        return found  # type: ignore[return-value]

    @property
    def mean_lift_batch_size(self) -> float:
        runs = sum(b.batches_run for b in self.lift.values())
        return sum(b.units_run for b in self.lift.values()) / runs if runs else 0.0

    async def aclose(self) -> None:
        for batcher in self._all_batchers():
            await batcher.aclose()
        for pool in (self.infer_pool, self.cpu_pool):  # waits for a running batch without blocking the loop
            await asyncio.to_thread(pool.shutdown, wait=True)

    def lock(self, stream_id: str) -> asyncio.Lock:
        """The lock serialising appends of one stream in this process."""
        lock = self._locks.get(stream_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[stream_id] = lock
        return lock

    # -- the front: one frame's people -----------------------------------------------------------

    def _detect_batch(self, items: Sequence[DetectItem]) -> list[list[PersonDetection]]:
        if self.detector is None:
            raise Unavailable("no 2D detector is loaded")
        out: list[list[PersonDetection] | None] = [None] * len(items)
        images = [it.image for it in items if it.image is not None]
        if len(images) != len(items):
            raise InternalError("a detector item was submitted twice")
        for key in sorted({(it.flip_test, it.flip_features) for it in items}):
            rows = [i for i, it in enumerate(items) if (it.flip_test, it.flip_features) == key]
            found = self.detector.detect(
                [images[i] for i in rows],
                [items[i].boxes for i in rows],
                [items[i].scores for i in rows],
                flip_test=key[0],
                flip_features=key[1],
            )
            for i, people in zip(rows, found, strict=True):
                out[i] = people
        for it in items:  # detected: only now, so that a failed batch can be retried item by item
            it.image = None
        return [p if p is not None else [] for p in out]

    def guide_at(self, buffer: FrameBuffer, stream_id: str, index: int) -> GuideAt | None:
        """Where frame ``index`` of a stream finds its pose-guided boxes (``None`` when they are off)."""
        return GuideAt(buffer, stream_id, index) if self.guide is not None else None

    async def _find_boxes(
        self, image: ByteImage, opts: FrameOptions, guide: GuideAt | None, deadline: float | None
    ) -> FrameBoxes:
        if opts.boxes is None and guide is not None and self.guide is not None:
            guided = await load_guided_boxes(guide, self.guide)
            if guided is not None:
                return FrameBoxes(guided, np.ones(len(guided), np.float32), self.box_finder.default_source)
        if opts.boxes is None and self.box_finder.detector is not None:
            self.metrics.person_detector_runs.inc()
            return await self.boxes.submit(BoxItem(image, None, opts.max_people), deadline)
        return self.box_finder.find(image, opts.boxes, opts.max_people)

    async def prepare(
        self,
        frame: Frame,
        lifter: ServedLifter,
        opts: FrameOptions,
        deadline: float | None,
        timings: Timings,
        guide: GuideAt | None = None,
    ) -> tuple[PreparedPeople, BoxSource]:
        """One frame's untracked people and where their boxes came from (``guide``: pose-guided boxes)."""
        if isinstance(frame, KeypointFrame):
            if lifter.needs_image:
                raise InvalidInput(f"model {lifter.name!r} needs image features; it cannot take 2D keypoints")
            return people_from_keypoints(frame), BoxSource.KEYPOINTS
        assert isinstance(frame, ImageFrame)
        with timings.stage("decode"):
            if isinstance(frame.image, bytes):
                image = await self.decode.submit(frame.image, deadline)
            else:  # already decoded: only checked (no thread hop, and no batch of the decoder keeps it alive)
                image = decode_image(frame.image)
        h, w = image.shape[:2]
        with timings.stage("boxes"):
            found = await self._find_boxes(image, opts, guide, deadline)
        flip_features = lifter.needs_image and opts.flip_test
        item = DetectItem(image, found.boxes, found.scores, self.settings.detector.flip_test, flip_features)
        with timings.stage("detect"):
            people = await self.detect.submit(item, deadline) if len(found) else []
        tokens = empty_tokens(len(people))
        if lifter.needs_image and people:
            inputs = [
                TokenInput(
                    normalize_screen_coordinates(p.keypoints_h36m, w, h),
                    p.crop_keypoints_h36m,
                    p.features or (),
                    p.flip_features,
                )
                for p in _with_features(people)
            ]
            with timings.stage("tokens"):
                tokens = np.stack(await self.tokens[lifter.name].submit_many(inputs, deadline))
        prepared = PreparedPeople(
            image_size=(int(w), int(h)),
            boxes=np.asarray(found.boxes, np.float32).reshape(-1, 4),
            box_scores=np.asarray(found.scores, np.float32).reshape(-1),
            keypoints_px=np.array([p.keypoints_h36m for p in people], np.float32).reshape(-1, 17, 2),
            scores=np.clip(np.array([p.scores_h36m for p in people], np.float32).reshape(-1, 17), 0.0, 1.0),
            tokens=tokens,
        )
        return prepared, found.source

    # -- the back: buffer and lifter -------------------------------------------------------------

    async def lift_emission(
        self,
        lifter: ServedLifter,
        emission: Emission,
        mode: WindowMode,
        flip_test: bool,
        deadline: float | None,
        timings: Timings,
        client_index: Sequence[tuple[int, float | None]] | None = None,
    ) -> list[FrameResult]:
        """Lift every window that ``emission`` made ready; one :class:`FrameResult` per emitted frame."""
        ready = ready_frames(emission, lifter.window, mode, flip_test)
        windows = [w for rf in ready for w in rf.windows]
        with timings.stage("lift"):
            poses = await self.lift[lifter.name].submit_many(windows, deadline)
        results: list[FrameResult] = []
        at = 0
        for rf in ready:
            own = poses[at : at + len(rf.windows)]
            at += len(rf.windows)
            idx, ts = client_index[rf.record.frame_index] if client_index else (None, None)
            results.append(frame_result(rf.record, own, idx, ts))
        self.metrics.frames_total.labels(model=lifter.name).inc(len(results))
        return results

    async def push(
        self,
        buffer: FrameBuffer,
        meta: StreamMeta,
        lifter: ServedLifter,
        frame_index: int,
        timestamp_s: float | None,
        people: PreparedPeople,
        track: bool,
        deadline: float | None,
        timings: Timings,
    ) -> Emission:
        """Track and append one prepared frame under the stream's lock; returns what became ready."""
        with timings.stage("buffer"):
            async with self.lock(meta.stream_id):
                started = time.monotonic()
                emission = await append_frame(buffer, meta, frame_index, timestamp_s, people, lifter.window, track)
                self.metrics.stage_duration.labels(stage="buffer").observe(time.monotonic() - started)
        return emission

    async def push_in_order(
        self,
        buffer: FrameBuffer,
        meta: StreamMeta,
        lifter: ServedLifter,
        frames: AsyncIterable[Frame],
        look_ahead: int,
        deadline: float | None,
        timings: Timings,
        client_index: list[tuple[int, float | None]] | None = None,
    ) -> tuple[list[FrameResult], BoxSource]:
        """Prepare ``frames`` concurrently, append them to ``meta``'s stream in order, lift what each append
        makes ready (concurrently); returns the results (in emission order) and the last frame's box source.

        At most ``look_ahead`` frames are taken from ``frames`` and not yet prepared at any time: the next frame
        is pulled only when the oldest one has been appended, so an async source (a clip being decoded) is held
        a bounded number of frames at a time whatever its length, and the frames in flight share the stages'
        batches. With ``client_index`` (a clip), frame ``k`` of ``frames`` is appended as buffer frame
        ``len(client_index)`` and its own ``(frame_index, timestamp_s)`` is appended to ``client_index`` and
        reported in its results; without (a stream), frames go in at their own ``frame_index``.
        """
        mode, flip_test = meta.mode, meta.flip_test
        opts = FrameOptions(meta.boxes, meta.max_people, meta.flip_test)
        guided = self.guide is not None and opts.boxes is None  # frame t's boxes need frame t-1 appended
        slots = asyncio.Semaphore(1 if guided else max(1, look_ahead))
        order: asyncio.Queue[_Pending | None] = asyncio.Queue()
        lifted: list[asyncio.Task[list[FrameResult]]] = []
        source = BoxSource.WHOLE_FRAME

        async def feed(tg: asyncio.TaskGroup) -> None:
            source_frames = aiter(frames)
            while True:
                await slots.acquire()
                frame = await anext(source_frames, None)
                if frame is None:
                    break
                if client_index is not None:
                    index = len(client_index)
                    client_index.append((frame.frame_index, frame.timestamp_s))
                else:
                    index = frame.frame_index
                guide = self.guide_at(buffer, meta.stream_id, index)
                task = tg.create_task(self.prepare(frame, lifter, opts, deadline, timings, guide))
                order.put_nowait(_Pending(task, index, frame.timestamp_s, isinstance(frame, ImageFrame)))
                del frame, task  # the task alone holds the frame until it is prepared
            order.put_nowait(None)

        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(feed(tg))
                while (pending := await order.get()) is not None:
                    people, source = await pending.task
                    if not guided:
                        slots.release()
                    emission = await self.push(
                        buffer, meta, lifter, pending.index, pending.timestamp_s, people, pending.track, deadline, timings
                    )  # fmt: skip
                    if guided:
                        slots.release()
                    lifted.append(
                        tg.create_task(
                            self.lift_emission(lifter, emission, mode, flip_test, deadline, timings, client_index)
                        )
                    )
        except BaseExceptionGroup as group:
            raise _first_error(group) from None
        return [r for task in lifted for r in task.result()], source

    async def run_clip(
        self,
        frames: Iterable[Frame] | AsyncIterable[Frame],
        lifter: ServedLifter,
        opts: FrameOptions,
        mode: WindowMode,
        deadline: float | None,
        timings: Timings,
        look_ahead: int | None = None,
    ) -> tuple[list[FrameResult], BoxSource]:
        """A whole clip as a private stream (:meth:`push_in_order` into an in-memory buffer, then the tail
        flushed). ``frames`` may be a sequence or an async source pulled as the clip advances; ``look_ahead``
        (default :attr:`look_ahead`) bounds the frames taken from it and not yet prepared."""
        meta = StreamMeta(f"clip-{uuid.uuid4().hex}", lifter.name, mode, opts.flip_test, opts.max_people, opts.boxes)
        await self.clip_buffer.create(meta)
        client_index: list[tuple[int, float | None]] = []
        source_frames = frames if isinstance(frames, AsyncIterable) else async_frames(frames)
        try:
            results, source = await self.push_in_order(
                self.clip_buffer, meta, lifter, source_frames, look_ahead or self.look_ahead, deadline, timings,
                client_index,
            )  # fmt: skip
            tail = await self.clip_buffer.flush(meta.stream_id, lifter.window, mode)
            results += await self.lift_emission(lifter, tail, mode, opts.flip_test, deadline, timings, client_index)
        finally:
            await self.clip_buffer.delete(meta.stream_id)
        return results, source


@dataclass(frozen=True)
class _Pending:
    """A frame taken from a source: its preparation, buffer index, timestamp, and whether to track it."""

    task: asyncio.Task[tuple[PreparedPeople, BoxSource]]
    index: int
    timestamp_s: float | None
    track: bool


async def async_frames(frames: Iterable[Frame]) -> AsyncIterator[Frame]:
    """``frames`` as an async source (for :meth:`Pipeline.push_in_order`)."""
    for frame in frames:
        yield frame


def _with_features(people: list[PersonDetection]) -> list[PersonDetection]:
    for p in people:
        if p.features is None:
            raise Unavailable("the detector keeps no feature maps, which CA-PF needs")
    return people
