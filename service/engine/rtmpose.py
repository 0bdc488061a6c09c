"""RTMPose (OpenMMLab) as the 2D keypoint detector: an ONNX model run by ONNX Runtime, top-down over person boxes.

The same stage interface as the HRNet :class:`~service.engine.detector.TopDownDetector`, without feature maps: it
serves lifters that need only 2D keypoints (P-STMO, keypoint input), never CA-PF. Per box, RTMPose's published
pipeline (mmpose 1.x ``GetBBoxCenterScale`` + ``TopdownAffine`` + ``PoseDataPreprocessor`` + ``SimCCLabel.decode``;
rtmlib's ``RTMPose`` is the same code; step by step in docs/realtime.md): ``input (B, 3, 256, 192)`` RGB crops →
``simcc_x (B, 17, 384)``, ``simcc_y (B, 17, 512)`` → crop pixels → image pixels. mmpose's configs set
``bgr_to_rgb=True`` on cv2's BGR frames, so the network sees RGB normalised with the RGB mean: our frames as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final, Literal

import cv2
import numpy as np
import numpy.typing as npt

from model.checkpoints.common import CheckpointError
from model.skeleton import COCO_FLIP_PERM
from model.topdown import INPUT_HEIGHT, INPUT_WIDTH, CropGeometry, warp_matrix
from service.engine.detector import PersonDetection, TopDownDetector, box_batch, people_per_image
from service.engine.onnx_cache import open_onnx
from service.engine.types import ByteImage, FloatArray

INPUT_SIZE: Final = (INPUT_WIDTH, INPUT_HEIGHT)
"""Network input (width, height) in pixels: the published RTMPose body models' 192×256, HRNet's too."""
SIMCC_SPLIT_RATIO: Final = 2.0
MEAN_RGB: Final = (123.675, 116.28, 103.53)
STD_RGB: Final = (58.395, 57.12, 57.375)
OUTPUT_NAMES: Final = ("simcc_x", "simcc_y")
ScoreMode = Literal["min", "mean"]


def crop_inputs(image: ByteImage, geometry: CropGeometry) -> npt.NDArray[np.float32]:
    """One ``(H, W, 3) uint8`` RGB image's crops → ``(N, 3, 256, 192) float32`` normalised network inputs."""
    w, h = INPUT_SIZE
    mean = np.asarray(MEAN_RGB, dtype=np.float32)
    std = np.asarray(STD_RGB, dtype=np.float32)
    out = np.empty((len(geometry), 3, h, w), dtype=np.float32)
    for i in range(len(geometry)):
        mat = warp_matrix(geometry.centers[i], geometry.scales[i], INPUT_SIZE)
        crop = cv2.warpAffine(image, mat, (w, h), flags=cv2.INTER_LINEAR)
        for c, plane in enumerate(cv2.split(crop)):  # in place per plane: 1/14 of the time of a transposed copy
            np.subtract(plane, mean[c], out=out[i, c])
            np.divide(out[i, c], std[c], out=out[i, c])
    return out


def flip_simcc(
    simcc_x: npt.NDArray[np.float32], simcc_y: npt.NDArray[np.float32]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """The mirrored crop's ``(N, K, Wx)``, ``(N, K, Wy)`` vectors in the original's frame (mmpose ``flip_vectors``:
    left/right joints swapped, x bins reversed; no shift)."""
    return simcc_x[:, COCO_FLIP_PERM, ::-1], simcc_y[:, COCO_FLIP_PERM]


def decode_simcc(
    simcc_x: npt.ArrayLike, simcc_y: npt.ArrayLike, score_mode: ScoreMode = "min"
) -> tuple[FloatArray, FloatArray]:
    """``(N, K, Wx)``, ``(N, K, Wy)`` SimCC vectors → ``(N, K, 2) float32`` crop pixels and ``(N, K) float32`` scores.

    ``score_mode``: ``"min"`` of the two axis maxima (mmpose's ``get_simcc_maximum``, with which the published
    AP was measured) or their ``"mean"`` (rtmlib's). A joint with score ``<= 0`` is placed at bin ``-1``.
    """
    x = np.asarray(simcc_x, dtype=np.float32)
    y = np.asarray(simcc_y, dtype=np.float32)
    n, k = x.shape[:2]
    xf, yf = x.reshape(n * k, -1), y.reshape(n * k, -1)
    locs = np.stack([np.argmax(xf, axis=1), np.argmax(yf, axis=1)], axis=-1).astype(np.float32)
    max_x, max_y = xf.max(axis=1), yf.max(axis=1)
    vals = np.minimum(max_x, max_y) if score_mode == "min" else np.float32(0.5) * (max_x + max_y)
    locs[vals <= 0.0] = -1.0
    return (locs / np.float32(SIMCC_SPLIT_RATIO)).reshape(n, k, 2), vals.astype(np.float32).reshape(n, k)


class RTMPoseDetector:
    """Batched top-down RTMPose over person boxes through onnxruntime (see the module doc).

    Args:
        path: the RTMPose ``.onnx`` file (mmdeploy ``end2end.onnx``; batch dimension static 1 or dynamic).
        score_mode: how the two axis maxima make a joint score (``"min"``: mmpose; ``"mean"``: rtmlib).
        intra_op_threads: onnxruntime intra-op threads (0 = its default, all cores).
        allow_spinning: let idle intra-op threads spin (off: see :func:`~service.engine.onnx_cache.cpu_session`).
    Raises:
        CheckpointError: the file is missing, is not loadable, or lacks the published input/outputs.
    """

    outside_torch = True
    """Runs on onnxruntime's threads: the pipeline gives it its own executor, beside the torch stages'."""

    def __init__(
        self,
        path: str | Path,
        score_mode: ScoreMode = "min",
        intra_op_threads: int = 0,
        allow_spinning: bool = False,
    ) -> None:
        p, self._session = open_onnx(path, "RTMPose model", intra_op_threads, allow_spinning)
        inputs = self._session.get_inputs()
        outputs = [o.name for o in self._session.get_outputs()]
        shape = list(inputs[0].shape) if inputs else []
        if len(inputs) != 1 or len(shape) != 4 or shape[1:] != [3, INPUT_SIZE[1], INPUT_SIZE[0]]:
            raise CheckpointError(f"RTMPose model {p}: needs one input (B, 3, 256, 192), got {shape}")
        if not set(OUTPUT_NAMES) <= set(outputs):
            raise CheckpointError(f"RTMPose model {p}: needs outputs {OUTPUT_NAMES}, got {outputs}")
        self._input_name: str = inputs[0].name
        self.static_batch: int | None = shape[0] if isinstance(shape[0], int) else None
        self.score_mode: ScoreMode = score_mode
        self.path = p

    def forward(self, inputs: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """``(B, 3, 256, 192)`` → ``simcc_x (B, 17, 384)``, ``simcc_y (B, 17, 512)`` float32 (chunked when the
        model's batch dimension is static)."""
        step = self.static_batch or max(1, len(inputs))
        xs, ys = [], []
        for start in range(0, len(inputs), step):
            x, y = self._session.run(list(OUTPUT_NAMES), {self._input_name: inputs[start : start + step]})
            xs.append(np.asarray(x, dtype=np.float32))
            ys.append(np.asarray(y, dtype=np.float32))
        return np.concatenate(xs), np.concatenate(ys)

    def keypoints(self, inputs: npt.NDArray[np.float32], flip_test: bool) -> tuple[FloatArray, FloatArray]:
        """Network inputs ``(B, 3, 256, 192)`` → crop pixels ``(B, 17, 2)`` and scores ``(B, 17)``."""
        if flip_test:
            x, y = self.forward(np.concatenate([inputs, np.ascontiguousarray(inputs[..., ::-1])]))
            b = len(inputs)
            fx, fy = flip_simcc(x[b:], y[b:])
            x, y = (x[:b] + fx) * np.float32(0.5), (y[:b] + fy) * np.float32(0.5)
        else:
            x, y = self.forward(inputs)
        return decode_simcc(x, y, self.score_mode)

    def detect(
        self,
        images: Sequence[ByteImage],
        boxes: Sequence[npt.ArrayLike],
        box_scores: Sequence[npt.ArrayLike],
        flip_test: bool,
        flip_features: bool | None = None,
    ) -> list[list[PersonDetection]]:
        """As :meth:`TopDownDetector.detect <service.engine.detector.TopDownDetector.detect>`, without features
        (``flip_features`` is ignored)."""
        box_arrays, score_arrays, geometries = box_batch(images, boxes, box_scores)
        if not any(len(g) for g in geometries):
            return [[] for _ in images]
        inputs = np.concatenate([crop_inputs(img, g) for img, g in zip(images, geometries, strict=True) if len(g)])
        crop_kp, scores = self.keypoints(inputs, flip_test)
        return people_per_image(geometries, box_arrays, score_arrays, crop_kp, scores)


KeypointDetector = TopDownDetector | RTMPoseDetector
"""The pipeline's 2D keypoint detector: HRNet (with CA-PF's feature maps) or RTMPose; both answer ``detect``."""
