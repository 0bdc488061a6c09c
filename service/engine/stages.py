"""The pipeline's stages: one dynamic batcher per stage, the threads they run on, and a clip's chain of guided frames.

Decoding and person boxes run on a small CPU pool, every torch stage on ONE inference thread (the event loop never
runs a model); OpenCV runs on the stage's thread (no pool of its own). Each stage has its own batch limits
(``engine.decode``/``detect``/``lift``, else the engine-wide ones).

A clip's pose-guided frames (frame t's boxes from frame t-1's keypoints) are chained on the detector's thread: each
queues its item right behind the frame before's (:class:`ChainLink`) and the thread makes its boxes from that item's
people (:func:`take_guide`), one hand-off to the loop for up to a batch of frames. Where the guide does not hold,
the item comes back unguided and the frame finds its boxes as before: the same boxes and poses either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import cv2
import numpy as np

from service.config import Device, EngineSettings
from service.engine.batcher import BatcherLimits, DynamicBatcher
from service.engine.detector import PersonDetection
from service.engine.lifters import LiftWindow, ServedLifter, TokenInput, in_groups
from service.engine.person_boxes import FrameBoxes, PersonBoxFinder
from service.engine.pose_guide import GuideSettings, guide_from, guided_boxes, guides
from service.engine.prepare import decode_image, detected_keypoints
from service.engine.rtmpose import KeypointDetector
from service.engine.types import ByteImage, FloatArray
from service.errors import InternalError, Unavailable
from service.metrics import Metrics


@dataclass(frozen=True)
class Models:
    """What a pipeline serves: the lifters by name, the 2D keypoint detector (None: keypoint input only), and
    the person-box finder."""

    lifters: dict[str, ServedLifter]
    detector: KeypointDetector | None
    box_finder: PersonBoxFinder


@dataclass
class DetectItem:
    """One image for the detector: ``image`` ``(H, W, 3) uint8`` (dropped once detected, so that a finished batch
    keeps no clip frame alive), ``boxes`` ``(P, 4)``, ``scores`` ``(P,)``.

    ``guided_by``: the boxes are made on the stage thread from the people of the frame before's item (``boxes``
    holds as many placeholders: a guide keeps every person or none). ``guided``: whether the guide held (``None``:
    not guided; ``False``: the output is ``[]`` and the caller finds the boxes another way). ``people``: the output,
    kept for the item guided by this one."""

    image: ByteImage | None
    boxes: FloatArray
    scores: FloatArray
    flip_test: bool
    flip_features: bool
    guided_by: GuidedBy | None = None
    guided: bool | None = None
    people: list[PersonDetection] | None = None


@dataclass(frozen=True)
class GuidedBy:
    """Where a guided :class:`DetectItem`'s boxes come from: the item ``before`` of clip frame ``frame_index - 1``,
    under the pose guide's ``settings``."""

    before: DetectItem
    frame_index: int
    settings: GuideSettings


def take_guide(item: DetectItem) -> bool:
    """On the stage thread: a guided item's boxes (``(P, 4)`` px, scores 1) from the frame before's detected
    people, as :func:`~service.engine.pose_guide.load_guided_boxes` makes them from that frame's prepared people;
    False when the guide does not hold (or the frame before was not detected)."""
    by = item.guided_by
    if by is None or by.before.people is None:
        return False
    keypoints_px, scores = detected_keypoints(by.before.people)
    boxes = guided_boxes(guide_from(keypoints_px, scores, by.frame_index - 1), by.frame_index, by.settings)
    if boxes is None:
        return False
    item.boxes, item.scores = boxes, np.ones(len(boxes), np.float32)
    return True


@dataclass(frozen=True)
class BoxItem:
    """One image for the person detector: ``(H, W, 3) uint8``, client boxes (None: detect), ``max_people``."""

    image: ByteImage
    boxes: tuple[tuple[float, float, float, float], ...] | None
    max_people: int | None


def detect_batch(detector: KeypointDetector | None, items: Sequence[DetectItem]) -> list[list[PersonDetection]]:
    """One detector batch: per item its people. The unguided items grouped by flip settings, each group one
    forward; then each guided item (:attr:`DetectItem.guided_by`) in queue order, its boxes from the people before
    it, one forward each (``[]`` where its guide does not hold)."""
    if detector is None:
        raise Unavailable("no 2D detector is loaded")
    if any(it.image is None for it in items):
        raise InternalError("a detector item was submitted twice")

    def forward(flips: tuple[bool, bool], group: list[DetectItem]) -> list[list[PersonDetection]]:
        images = [it.image for it in group if it.image is not None]
        return detector.detect(images, [it.boxes for it in group], [it.scores for it in group], *flips)

    def run(group: Sequence[DetectItem]) -> None:
        for it, found in zip(
            group, in_groups(group, lambda it: (it.flip_test, it.flip_features), forward), strict=True
        ):
            it.people = found

    run([it for it in items if it.guided_by is None])  # one forward, as they came
    for it in items:  # then the guided ones in queue order, one forward each: each needs the people before it
        if it.guided_by is not None:
            it.guided = take_guide(it)
            run([it] if it.guided else [])
    people = [it.people if it.people is not None and it.guided is not False else [] for it in items]
    for it in items:  # detected: only now, so that a failed batch can be retried item by item
        it.image, it.guided_by = None, None
    return people


@dataclass
class ChainLink:
    """One clip frame's detector item, once queued (``ready`` is set then, or when the frame queues none)."""

    ready: asyncio.Event = field(default_factory=asyncio.Event)
    item: DetectItem | None = None

    def queued(self, item: DetectItem) -> None:
        """Say ``item`` is (about to be, with no await between) queued: the next frame may queue behind it."""
        self.item = item
        self.ready.set()


@dataclass(frozen=True)
class ChainStep:
    """A clip frame's place in the chain: the frame before's link (``None``: not an image frame) and its own."""

    before: ChainLink | None
    own: ChainLink


async def guided_item(
    image: ByteImage, step: ChainStep, frame_index: int, settings: GuideSettings, flips: tuple[bool, bool]
) -> DetectItem | None:
    """The item of clip frame ``frame_index`` (``(H, W, 3) uint8`` ``image``) guided by the frame before's, once that
    one is queued; ``None`` when the frame takes no guide (a person-detector frame) or the frame before queued none."""
    if step.before is None or not guides(frame_index, settings):
        return None
    await step.before.ready.wait()
    before = step.before.item
    if before is None:
        return None
    people = len(before.boxes)  # a guide keeps every person of the frame before, or none
    boxes, scores = np.zeros((people, 4), np.float32), np.ones(people, np.float32)
    return DetectItem(image, boxes, scores, *flips, guided_by=GuidedBy(before, frame_index, settings))


def _find_boxes(finder: PersonBoxFinder, items: Sequence[BoxItem]) -> list[FrameBoxes]:
    return [finder.find(it.image, it.boxes, it.max_people) for it in items]


class Stages:
    """The batchers over ``models`` and their thread pools. Create and use inside one running event loop."""

    def __init__(self, eng: EngineSettings, metrics: Metrics, models: Models, device: Device) -> None:
        # OpenCV on the calling stage thread: its own pool cost ~1 ms CPU per realtime video frame for the same output
        # bytes (bench/README.md, bench.realtime_stages, "Second pass")
        cv2.setNumThreads(1)
        self.lifters = models.lifters
        self.detector = models.detector
        self.box_finder = models.box_finder
        self.infer_pool = ThreadPoolExecutor(1, thread_name_prefix="pose3d-infer")
        self.cpu_pool = ThreadPoolExecutor(2, thread_name_prefix="pose3d-decode")
        limits = BatcherLimits.of_engine(eng, eng.max_batch_size, eng.max_delay_ms)
        decode_limits = BatcherLimits.of_engine(eng, *eng.stage_batch("decode", device))
        detect_limits = BatcherLimits.of_engine(eng, *eng.stage_batch("detect", device))
        # a model's own lift_batch (or CPU default) still applies
        lift_size, lift_delay = eng.stage_batch("lift", device)
        cpu, infer = self.cpu_pool, self.infer_pool
        self.decode = DynamicBatcher[bytes | ByteImage, ByteImage](
            "decode", lambda items: [decode_image(x) for x in items], decode_limits, executor=cpu, metrics=metrics
        )
        self.boxes = DynamicBatcher[BoxItem, FrameBoxes](
            "boxes", partial(_find_boxes, models.box_finder), limits, executor=cpu, metrics=metrics
        )
        # an ONNX Runtime detector (RTMPose) needs no torch thread: it overlaps the lifter's forwards
        detect_pool = cpu if getattr(models.detector, "outside_torch", False) else infer
        self.detect = DynamicBatcher[DetectItem, list[PersonDetection]](
            "detect", partial(detect_batch, models.detector), detect_limits, executor=detect_pool, metrics=metrics,
            size_of=lambda it: len(it.boxes),
        )  # fmt: skip
        self.tokens = {
            name: DynamicBatcher[TokenInput, FloatArray](
                "tokens", lifter.frame_tokens, limits, executor=infer, metrics=metrics
            )
            for name, lifter in models.lifters.items()
            if lifter.needs_image
        }
        self.lift = {
            name: DynamicBatcher[LiftWindow, FloatArray](
                "lift",
                lifter.lift,
                BatcherLimits.of_engine(eng, lifter.lift_batch_size(lift_size), lift_delay),
                executor=infer,
                metrics=metrics,
            )
            for name, lifter in models.lifters.items()
        }

    async def aclose(self) -> None:
        batchers: list[DynamicBatcher[Any, Any]] = [self.decode, self.boxes, self.detect]
        for batcher in [*batchers, *self.tokens.values(), *self.lift.values()]:
            await batcher.aclose()
        for pool in (self.infer_pool, self.cpu_pool):  # waits for a running batch without blocking the loop
            await asyncio.to_thread(pool.shutdown, wait=True)
