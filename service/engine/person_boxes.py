"""Where each frame's person boxes come from, chosen per request, and the ONNX person detector that finds them.

1. boxes given by the client (``EstimateOptions.boxes``, xyxy pixels, the same for every frame);
2. else the ONNX person detector when one is configured (:class:`OnnxPersonDetector`);
3. else the whole frame as one person.

The result says which (:class:`~service.engine.types.BoxSource`), so the response can tell the client.

The person detector is an ONNX object detector (YOLOX / RTMDet exported by mmdeploy, as rtmlib runs them):

- **input**: the graph's first input, ``(1, 3, H_in, W_in) float32`` NCHW (``default_input_size`` when dynamic):
  the image letterboxed as mmdet's ``Resize(keep_ratio=True)`` + ``Pad`` do it (:func:`letterbox`: top-left on a
  canvas of 114, **BGR**, as mmdet detectors are trained on cv2's images), raw for YOLOX, normalised for RTMDet.
- **outputs**: ``dets (1, N, 5) float32`` rows ``(x1, y1, x2, y2, score)`` in canvas pixels and ``labels (1, N)``
  COCO class ids, by the names ``dets`` / ``labels``, else the first two outputs.

Boxes go back to image pixels, are clipped, filtered by score and class (person = 0), then pass a greedy NMS (the
graph usually has its own; a second pass is harmless and makes class filtering exact), highest scores first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

import cv2
import numpy as np
import numpy.typing as npt

from model.checkpoints.common import CheckpointError
from service.engine.onnx_cache import open_onnx
from service.engine.tracking import iou_matrix
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


FloatTriple = tuple[float, float, float]


class DetectorFamily(StrEnum):
    """How the ONNX detector wants its input normalised."""

    YOLOX = "yolox"
    RTMDET = "rtmdet"


NORMALISATION: Final[dict[DetectorFamily, tuple[FloatTriple, FloatTriple] | None]] = {
    DetectorFamily.YOLOX: None,
    DetectorFamily.RTMDET: ((103.53, 116.28, 123.675), (57.375, 57.12, 58.395)),
}
"""Per-channel ``(mean, std)`` of ``(x - mean) / std`` on the BGR canvas; ``None`` = raw pixel values."""
PAD_VALUE: Final = 114
PERSON_CLASS: Final = 0


def letterbox(
    image_rgb: ByteImage, input_hw: tuple[int, int], family: DetectorFamily
) -> tuple[npt.NDArray[np.float32], float]:
    """``(H, W, 3) uint8`` RGB image → the detector's ``(1, 3, H_in, W_in) float32`` input (see the module doc)
    and the resize ratio."""
    h_in, w_in = input_hw
    h, w = image_rgb.shape[:2]
    ratio = min(h_in / h, w_in / w)
    new_w, new_h = max(1, int(w * ratio)), max(1, int(h * ratio))
    bgr = np.ascontiguousarray(image_rgb[..., ::-1])
    resized = cv2.resize(bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((h_in, w_in, 3), PAD_VALUE, dtype=np.uint8)
    canvas[:new_h, :new_w] = resized[:h_in, :w_in]
    x: npt.NDArray[np.float32] = canvas.astype(np.float32)
    norm = NORMALISATION[family]
    if norm is not None:
        mean, std = (np.asarray(v, dtype=np.float32) for v in norm)
        x = ((x - mean) / std).astype(np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None]), ratio


def nms(boxes: npt.ArrayLike, scores: npt.ArrayLike, iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression of ``boxes (N, 4)`` xyxy by ``scores (N,)``: the indices kept, highest score
    first (a box is dropped when its IoU with a kept box is above ``iou_threshold``)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = list(np.argsort(-s, kind="stable"))
    iou = iou_matrix(b, b)
    keep: list[int] = []
    for i in order:
        if all(iou[i, k] <= iou_threshold for k in keep):
            keep.append(int(i))
    return keep


class OnnxPersonDetector:
    """An mmdeploy/rtmlib YOLOX or RTMDet ONNX model on one onnxruntime thread (see the module doc);
    ``default_input_size`` ``(h, w)`` stands for the input's dynamic dimensions."""

    def __init__(
        self,
        path: str | Path,
        family: DetectorFamily = DetectorFamily.YOLOX,
        score_threshold: float = 0.5,
        nms_iou: float = 0.45,
        default_input_size: tuple[int, int] = (640, 640),
    ) -> None:
        p, self._session = open_onnx(path, "person detector model", intra_op_threads=1)
        self.family = family
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        inp = self._session.get_inputs()[0]
        self._input_name: str = inp.name
        shape = list(inp.shape)
        if len(shape) != 4:
            raise CheckpointError(f"person detector {p}: input {inp.name} must be NCHW, got shape {shape}")
        h_in, w_in = (n if isinstance(n, int) else d for n, d in zip(shape[2:], default_input_size, strict=True))
        self.input_hw = (h_in, w_in)
        names = [o.name for o in self._session.get_outputs()]
        if len(names) < 2:
            raise CheckpointError(f"person detector {p}: needs outputs dets (1,N,5) and labels (1,N), got {names}")
        self._output_names = ["dets", "labels"] if {"dets", "labels"} <= set(names) else names[:2]

    def detect(self, image_rgb: ByteImage, max_people: int | None = None) -> FrameBoxes:
        """People in one ``(H, W, 3) uint8`` RGB image, highest score first (at most ``max_people``)."""
        h, w = image_rgb.shape[:2]
        tensor, ratio = letterbox(image_rgb, self.input_hw, self.family)
        dets, labels = self._session.run(self._output_names, {self._input_name: tensor})
        dets = np.asarray(dets, dtype=np.float32).reshape(-1, 5)
        labels = np.asarray(labels).reshape(-1)
        if labels.shape[0] != dets.shape[0]:
            raise ValueError(f"person detector returned {dets.shape[0]} boxes but {labels.shape[0]} labels")
        keep = (dets[:, 4] >= self.score_threshold) & (labels.astype(np.int64) == PERSON_CLASS)
        boxes = dets[keep, :4] / np.float32(ratio)
        scores = dets[keep, 4]
        boxes = boxes.clip(0, np.array([w, h, w, h], np.float32))
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, scores = boxes[valid], scores[valid]
        order = nms(boxes, scores, self.nms_iou)[:max_people]
        boxes, scores = boxes[order].astype(np.float32).reshape(-1, 4), scores[order].astype(np.float32)
        return FrameBoxes(boxes, scores, BoxSource.DETECTOR)


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
            return self.detector.detect(image, max_people)
        h, w = image.shape[:2]
        boxes = whole_frame_box(w, h)[:max_people]
        return FrameBoxes(boxes, np.ones(len(boxes), dtype=np.float32), BoxSource.WHOLE_FRAME)
