"""The pipeline's stages: one dynamic batcher per stage, and the threads they run on.

Decoding and person-box detection run on a small CPU pool, every torch stage on ONE inference thread (the
event loop never runs a model). The stages are the engine's parallelism: OpenCV runs on the stage's thread (no
pool of its own). Each stage has its own batch limits (``engine.decode``/``detect``/``lift``,
else the engine-wide ones): images per decode batch, people per detector forward, windows per lift forward.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import cv2

from service.config import EngineSettings
from service.engine.batcher import BatcherLimits, DynamicBatcher
from service.engine.detector import PersonDetection
from service.engine.lifters import LiftWindow, ServedLifter, TokenInput, in_groups
from service.engine.person_boxes import FrameBoxes, PersonBoxFinder
from service.engine.prepare import decode_image
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
    """One image for the person detector: ``(H, W, 3) uint8``, client boxes (None: detect), ``max_people``."""

    image: ByteImage
    boxes: tuple[tuple[float, float, float, float], ...] | None
    max_people: int | None


def detect_batch(detector: KeypointDetector | None, items: Sequence[DetectItem]) -> list[list[PersonDetection]]:
    """One detector batch: items grouped by flip settings, each group one forward; per item its people."""
    if detector is None:
        raise Unavailable("no 2D detector is loaded")
    if any(it.image is None for it in items):
        raise InternalError("a detector item was submitted twice")

    def forward(flips: tuple[bool, bool], group: list[DetectItem]) -> list[list[PersonDetection]]:
        images = [it.image for it in group if it.image is not None]
        return detector.detect(images, [it.boxes for it in group], [it.scores for it in group], *flips)

    people = in_groups(items, lambda it: (it.flip_test, it.flip_features), forward)
    for it in items:  # detected: only now, so that a failed batch can be retried item by item
        it.image = None
    return people


def _find_boxes(finder: PersonBoxFinder, items: Sequence[BoxItem]) -> list[FrameBoxes]:
    return [finder.find(it.image, it.boxes, it.max_people) for it in items]


class Stages:
    """The batchers over ``models`` and their thread pools. Create and use inside one running event loop."""

    def __init__(self, eng: EngineSettings, metrics: Metrics, models: Models) -> None:
        # OpenCV (crops, resizing, colour conversion) on the calling stage thread: its own pool split each 256x192
        # crop across the cores and kept a thread waking for it, ~1 ms CPU per realtime video frame (bench/README.md
        # "Realtime profile, second pass"); the same output bytes at any thread count
        cv2.setNumThreads(1)
        self.lifters = models.lifters
        self.detector = models.detector
        self.box_finder = models.box_finder
        self.infer_pool = ThreadPoolExecutor(1, thread_name_prefix="pose3d-infer")
        self.cpu_pool = ThreadPoolExecutor(2, thread_name_prefix="pose3d-decode")
        limits = BatcherLimits.of_engine(eng, eng.max_batch_size, eng.max_delay_ms)
        decode_limits = BatcherLimits.of_engine(eng, *eng.stage_batch("decode"))
        detect_limits = BatcherLimits.of_engine(eng, *eng.stage_batch("detect"))
        lift_size, lift_delay = eng.stage_batch("lift")  # a model's own lift_batch (or CPU default) still applies
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

    def _all_batchers(self) -> list[DynamicBatcher[object, object]]:
        found: list[object] = [self.decode, self.boxes, self.detect, *self.tokens.values(), *self.lift.values()]
        return found  # type: ignore[return-value]

    async def aclose(self) -> None:
        for batcher in self._all_batchers():
            await batcher.aclose()
        for pool in (self.infer_pool, self.cpu_pool):  # waits for a running batch without blocking the loop
            await asyncio.to_thread(pool.shutdown, wait=True)
