"""The 2D overlay: H36M-17 skeletons drawn with OpenCV on the input image, one colour per track id."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from service.export.skeleton import H36M_BONES, LEFT_JOINTS

RGB = tuple[int, int, int]
Image = npt.NDArray[np.uint8]

PALETTE: tuple[RGB, ...] = (
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 190), (0, 128, 128),
)  # fmt: skip
"""RGB colour of track ``id % 10`` (the same in the 2D overlay, the 3D panel and the demo page)."""


def track_colour(track_id: int) -> RGB:
    return PALETTE[track_id % len(PALETTE)]


def lighter(colour: RGB, amount: float = 0.45) -> RGB:
    """The colour blended towards white (left-side bones are drawn lighter)."""
    r, g, b = (int(c + (255 - c) * amount) for c in colour)
    return r, g, b


def draw_overlay(image: Image, people: Sequence[Mapping[str, Any]]) -> Image:
    """A copy of ``image (H, W, 3) uint8 RGB`` with each person's bones, joints and box; keypoints in pixels."""
    out = np.ascontiguousarray(image.copy())
    scale = max(1, round(max(out.shape[:2]) / 400))
    for person in people:
        colour = track_colour(int(person["track_id"]))
        points = np.asarray(person["keypoints_2d"], dtype=np.float64)[:, :2]
        if not np.isfinite(points).all():
            continue
        x1, y1, x2, y2 = (round(float(v)) for v in person["box"])
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 1)
        cv2.putText(out, f"#{person['track_id']}", (x1 + 2, max(12, y1 + 14)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.45 * scale, colour, scale, cv2.LINE_AA)  # fmt: skip
        pts = np.round(points).astype(np.int32)
        for parent, child in H36M_BONES:
            bone = lighter(colour) if child in LEFT_JOINTS else colour
            cv2.line(out, tuple(map(int, pts[parent])), tuple(map(int, pts[child])), bone, 2 * scale, cv2.LINE_AA)
        for x, y in pts:
            cv2.circle(out, (int(x), int(y)), 2 * scale + 1, (255, 255, 255), -1, cv2.LINE_AA)
    return out
