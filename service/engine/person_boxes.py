"""Where each frame's person boxes come from, chosen per request.

1. boxes given by the client (``EstimateOptions.boxes``, xyxy pixels, the same for every frame);
2. else the ONNX person detector when one is configured (:mod:`service.engine.person_detector_onnx`);
3. else the whole frame as one person.

The result says which (:class:`~service.engine.types.BoxSource`), so the response can tell the client.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service.engine.person_detector_onnx import OnnxPersonDetector
from service.engine.types import BoxSource, ByteImage, FloatArray
from service.errors import InvalidInput


@dataclass(frozen=True)
class FrameBoxes:
    """One frame's people: ``boxes (N, 4) float32`` xyxy pixels, ``scores (N,) float32``, and their source."""

    boxes: FloatArray
    scores: FloatArray
    source: BoxSource

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


def whole_frame_box(width: int, height: int) -> FloatArray:
    """``(1, 4) float32`` box covering the whole ``width x height`` image."""
    return np.array([[0.0, 0.0, float(width), float(height)]], dtype=np.float32)


def validate_client_boxes(boxes: Sequence[Sequence[float]]) -> FloatArray:
    """Client boxes → ``(N, 4) float32``; raises :class:`InvalidInput` unless each is finite with x2 > x1, y2 > y1.

    Boxes may extend past the image border (the crop pads with black, as mmpose does).
    """
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 4), dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise InvalidInput(f"boxes must be a list of [x1, y1, x2, y2], got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InvalidInput("boxes must be finite numbers")
    bad = np.flatnonzero((arr[:, 2] <= arr[:, 0]) | (arr[:, 3] <= arr[:, 1]))
    if len(bad):
        raise InvalidInput(f"box {int(bad[0])} is empty: need x2 > x1 and y2 > y1, got {arr[bad[0]].tolist()}")
    return arr.astype(np.float32)


class PersonBoxFinder:
    """Picks each frame's boxes (see the module doc). ``detector`` is ``None`` when no ONNX model is configured."""

    def __init__(self, detector: OnnxPersonDetector | None = None) -> None:
        self.detector = detector

    @property
    def default_source(self) -> BoxSource:
        """What a request without boxes gets: the detector if configured, else the whole frame."""
        return BoxSource.DETECTOR if self.detector is not None else BoxSource.WHOLE_FRAME

    def find(
        self,
        image: ByteImage,
        client_boxes: Sequence[Sequence[float]] | None = None,
        max_people: int | None = None,
    ) -> FrameBoxes:
        """Boxes for one ``(H, W, 3) uint8`` RGB frame, at most ``max_people`` (client boxes keep their order,
        detections are highest score first)."""
        if client_boxes is not None:
            boxes = validate_client_boxes(client_boxes)[:max_people]
            return FrameBoxes(boxes, np.ones(len(boxes), dtype=np.float32), BoxSource.CLIENT)
        if self.detector is not None:
            found = self.detector.detect(image, max_people)
            return FrameBoxes(found.boxes, found.scores, BoxSource.DETECTOR)
        h, w = image.shape[:2]
        boxes = whole_frame_box(w, h)[:max_people]
        return FrameBoxes(boxes, np.ones(len(boxes), dtype=np.float32), BoxSource.WHOLE_FRAME)
