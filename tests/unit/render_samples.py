"""Synthetic pose sets for the render tests: standing people projected by a pinhole camera onto grey frames."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

STANDING = np.array(
    [
        [0.0, 0.0, 0.0], [-0.12, 0.0, 0.0], [-0.13, 0.45, 0.02], [-0.13, 0.88, 0.05],
        [0.12, 0.0, 0.0], [0.13, 0.45, 0.02], [0.13, 0.88, 0.05], [0.0, -0.25, 0.0],
        [0.0, -0.5, 0.0], [0.0, -0.6, -0.03], [0.0, -0.72, 0.0], [0.18, -0.5, 0.0],
        [0.42, -0.45, 0.0], [0.62, -0.38, 0.0], [-0.18, -0.5, 0.0], [-0.42, -0.45, 0.0], [-0.62, -0.38, 0.0],
    ]
)  # fmt: skip
"""(17, 3) metres, camera frame (x right, y down, z forward), root-relative: a person standing, arms out."""

FOCAL_PX = 240.0


def project(joints: npt.NDArray[np.float64], root: tuple[float, float, float], size: tuple[int, int]) -> Any:
    """``(17, 2)`` pixels of ``joints`` placed at ``root`` (metres) seen by a pinhole camera at the image centre."""
    w, h = size
    p = joints + np.asarray(root)
    return np.stack([w / 2 + FOCAL_PX * p[:, 0] / p[:, 2], h / 2 + FOCAL_PX * p[:, 1] / p[:, 2]], axis=1)


def person(track_id: int, t: int, root_x: float, size: tuple[int, int]) -> dict[str, Any]:
    joints = STANDING.copy()
    joints[11:17, 1] += 0.1 * np.sin(t / 3.0)  # arms wave
    kp2d = project(joints, (root_x, 0.0, 3.0), size)
    x1, y1 = kp2d.min(axis=0) - 8
    x2, y2 = kp2d.max(axis=0) + 8
    return {
        "track_id": track_id,
        "box": [float(x1), float(y1), float(x2), float(y2)],
        "box_score": 1.0,
        "keypoints_2d": kp2d.tolist(),
        "keypoint_scores": [0.9] * 17,
        "keypoints_3d": joints.tolist(),
    }


def pose_frames(frames: int, size: tuple[int, int] = (320, 240), fps: float = 10.0) -> list[dict[str, Any]]:
    """Two people (tracks 0 and 1, left and right of centre) per frame."""
    return [
        {
            "frame_index": t,
            "timestamp_s": t / fps,
            "people": [person(0, t, -0.7, size), person(1, t, 0.7, size)],
        }
        for t in range(frames)
    ]


def decode_png(data: bytes) -> npt.NDArray[np.uint8]:
    """``(H, W, 3) uint8 RGB`` of PNG bytes (fails the test when they do not decode)."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a decodable image"
    return np.ascontiguousarray(image[:, :, ::-1], dtype=np.uint8)


def grey_frame(size: tuple[int, int] = (320, 240), level: int = 60) -> npt.NDArray[np.uint8]:
    w, h = size
    return np.full((h, w, 3), level, dtype=np.uint8)
