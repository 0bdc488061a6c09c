"""One evaluation sequence: what the engine is given and the ground truth its answer is scored against."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class ImageSource:
    """A clip's frames: a video file, or a folder of images taken in name order. Yields ``(H, W, 3) uint8 RGB``."""

    path: Path

    def frames(self) -> Iterator[npt.NDArray[np.uint8]]:
        import cv2  # only the image datasets decode

        if self.path.is_dir():
            names = sorted(p for p in self.path.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".webp"})
            for name in names:
                image = cv2.imread(str(name), cv2.IMREAD_COLOR)
                if image is None:
                    raise ValueError(f"{name}: not a readable image")
                yield np.ascontiguousarray(image[:, :, ::-1])
            return
        capture = cv2.VideoCapture(str(self.path))
        try:
            while True:
                ok, image = capture.read()
                if not ok:
                    return
                yield np.ascontiguousarray(image[:, :, ::-1])
        finally:
            capture.release()


@dataclass(frozen=True)
class EvalSequence:
    """One sequence (one subject, action and camera) to evaluate.

    ``gt_3d``: ``(T, 17, 3) float32`` metres, camera frame, root-relative (pelvis at 0), Human3.6M-17 order.
    Input is either ``keypoints_2d`` ``(T, 17, 2) float32`` pixels (Human3.6M-17 order, for the lifter directly,
    as ``POST /v1/pose3d`` with ``joint_set: "h36m"``) or ``images`` (the whole pipeline, detector included).
    ``image_size``: ``(width, height)`` pixels. Optional: ``gt_camera`` ``(T, 17, 3)`` metres in the camera frame
    (not root-relative; scores ``keypoints_3d_camera`` and gives each frame's distance), ``intrinsics``
    ``(fx, fy, cx, cy)`` pixels, ``boxes`` ``(T, 4)`` xyxy pixels, ``labels_2d`` ``(T, 17, 2)`` pixels (2D PCK),
    ``valid`` ``(T,)`` (frames scored; all when ``None``). ``group`` names its column in the per-action table.
    """

    name: str
    group: str
    gt_3d: FloatArray
    image_size: tuple[int, int]
    keypoints_2d: FloatArray | None = None
    images: ImageSource | None = None
    gt_camera: FloatArray | None = None
    intrinsics: tuple[float, float, float, float] | None = None
    boxes: FloatArray | None = None
    labels_2d: FloatArray | None = None
    valid: BoolArray | None = None
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return int(self.gt_3d.shape[0])

    @property
    def scored(self) -> BoolArray:
        """``(T,)`` the frames that count."""
        return self.valid if self.valid is not None else np.ones(self.length, dtype=np.bool_)
