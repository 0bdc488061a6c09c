"""Predictions of the served pipeline: each sequence goes through the engine exactly as ``POST /v1/pose3d`` sends
it (keypoints as one request, an image as one request, an image clip as a clip), several sequences in flight at
once so that the engine's batchers fill, with a tqdm progress bar over frames."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from model.joints import JointSet
from service.engine.types import (
    EngineClient,
    EstimateOptions,
    FrameResult,
    ImageFrame,
    KeypointFrame,
    ModelInfo,
    Source,
    Work,
)
from service.engine.work import collect
from service.evaluation.sequences import EvalSequence
from service.geometry.camera import CameraSpec

F64 = npt.NDArray[np.float64]
NO_DEADLINE_S: Final = 7 * 24 * 3600.0  # an evaluation waits for its answers; admission never refuses it
IMAGES_IN_FLIGHT: Final = 32


@dataclass(frozen=True)
class Prediction:
    """The engine's answer for one sequence; rows of frames where it found nobody are NaN.

    ``keypoints_3d`` ``(T, 17, 3)`` metres root-relative; ``keypoints_3d_camera`` ``(T, 17, 3)`` metres camera frame
    (NaN where not placed); ``keypoints_2d`` ``(T, 17, 2)`` pixels.
    """

    keypoints_3d: F64
    keypoints_3d_camera: F64
    keypoints_2d: F64

    @property
    def found(self) -> npt.NDArray[np.bool_]:
        return np.asarray(np.isfinite(self.keypoints_3d).all(axis=(1, 2)))


async def _decoded(seq: EvalSequence) -> AsyncIterator[ImageFrame]:
    """The labelled frames of ``seq``'s media, in order, each read and decoded on a worker thread (the event loop
    stays free for the engine's answers)."""
    assert seq.images is not None
    source = iter(seq.images.frames())
    for t in range(seq.length):
        image = await asyncio.to_thread(next, source, None)
        if image is None:
            return
        yield ImageFrame(image, t)


def _gather(results: list[FrameResult], length: int) -> Prediction:
    out = np.full((3, length, 17, 3), np.nan)
    for position, frame in enumerate(results):
        if frame.people:
            person = frame.people[0]
            out[0, position] = person.keypoints_3d
            if person.keypoints_3d_camera is not None:
                out[1, position] = person.keypoints_3d_camera
            out[2, position, :, :2] = person.keypoints_2d
    return Prediction(out[0], out[1], out[2, :, :, :2])


class SequenceRunner:
    """Runs sequences through ``engine``'s served model ``info``."""

    def __init__(self, engine: EngineClient, info: ModelInfo) -> None:
        self.engine, self.info = engine, info

    async def _ask(
        self, request_id: str, frames: Source, seq: EvalSequence, box: npt.NDArray[np.float32] | None = None
    ) -> list[FrameResult]:
        """The engine's answers to ``frames`` as one request: ``seq``'s camera, one person (in ``box`` when given)."""
        camera = CameraSpec(*seq.intrinsics) if seq.intrinsics is not None else CameraSpec()
        boxes = None if box is None else ((float(box[0]), float(box[1]), float(box[2]), float(box[3])),)
        options = EstimateOptions(model=self.info.name, camera=camera, max_people=1, boxes=boxes)
        work = Work(request_id, frames, options, time.monotonic() + NO_DEADLINE_S)
        return (await collect(self.engine, work)).frames

    async def predict(self, seq: EvalSequence, bar: tqdm[Any]) -> Prediction:
        """Keypoints as one request, a temporal model's images as a clip (the engine's person detector finds the
        boxes), a single-frame model's images one by one (advancing ``bar`` per frame)."""
        if seq.keypoints_2d is None and self.info.frames == 1:
            return _gather(await self._images_one_by_one(seq, bar), seq.length)
        if seq.keypoints_2d is not None:
            ones = np.ones(17, dtype=np.float32)
            keypoints = [
                KeypointFrame(kp, ones, seq.image_size, JointSet.H36M, frame_index=t)
                for t, kp in enumerate(seq.keypoints_2d)
            ]
            results = await self._ask(f"eval-{seq.name}", keypoints, seq)
        else:
            results = await self._ask(f"eval-{seq.name}", _decoded(seq), seq)
        bar.update(seq.length)
        return _gather(results, seq.length)

    async def _images_one_by_one(self, seq: EvalSequence, bar: tqdm[Any]) -> list[FrameResult]:
        """Each labelled frame is one image request (its own box when labelled), at most :data:`IMAGES_IN_FLIGHT`
        decoded frames at once."""
        gate = asyncio.Semaphore(IMAGES_IN_FLIGHT)
        tasks = []
        async for frame in _decoded(seq):
            await gate.acquire()
            tasks.append(asyncio.ensure_future(self._one(seq, frame, bar, gate)))
        return list(await asyncio.gather(*tasks))

    async def _one(self, seq: EvalSequence, frame: ImageFrame, bar: tqdm[Any], gate: asyncio.Semaphore) -> FrameResult:
        box = seq.boxes[frame.frame_index] if seq.boxes is not None else None
        try:
            (result,) = await self._ask(f"eval-{seq.name}-{frame.frame_index}", [frame], seq, box)
        finally:
            gate.release()
        bar.update(1)
        return result

    async def run(
        self, sequences: list[EvalSequence], concurrency: int = 4, progress: bool = True
    ) -> tuple[list[Prediction], float]:
        """Every sequence's prediction (in order) and the wall-clock seconds the whole run took, ``concurrency``
        sequences at once (overlapping)."""
        gate = asyncio.Semaphore(concurrency)
        total = sum(s.length for s in sequences)
        with tqdm(total=total, unit="frame", desc=self.info.name, disable=not progress) as bar:

            async def one(seq: EvalSequence) -> Prediction:
                async with gate:
                    return await self.predict(seq, bar)

            started = time.monotonic()
            predictions = await asyncio.gather(*(one(s) for s in sequences))
            seconds = time.monotonic() - started
        return list(predictions), seconds
