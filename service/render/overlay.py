"""The 2D overlay: H36M-17 skeletons drawn with OpenCV on the input image, one colour per track id."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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


def bone_colours(colour: RGB) -> list[tuple[int, int, RGB]]:
    """``(parent, child, colour)`` of each bone: ``colour``, blended 45% towards white on the person's left side."""
    r, g, b = (int(c + (255 - c) * 0.45) for c in colour)
    return [(parent, child, (r, g, b) if child in LEFT_JOINTS else colour) for parent, child in H36M_BONES]


Point = tuple[int, int]
Segment = tuple[Point, Point]


@dataclass(frozen=True)
class PersonPlan:
    """What the overlay draws for one person, in integer pixels, all of it inside the image: ``bones`` between two
    joints inside, ``joints`` inside, ``marks`` (the nearest border pixel of each joint outside, drawn as an
    arrowhead), ``box`` clipped to the image (None when outside), ``label_at`` the label's baseline origin."""

    colour: RGB
    bones: list[tuple[Segment, RGB]]
    joints: list[Point]
    marks: list[Point]
    box: Segment | None
    label: str
    label_at: Point


def _clamp(x: float, y: float, width: int, height: int) -> Point:
    return int(np.clip(round(x), 0, width - 1)), int(np.clip(round(y), 0, height - 1))


def plan_person(person: Mapping[str, Any], width: int, height: int, scale: int) -> PersonPlan | None:
    """The overlay of one person on a ``width x height`` image (None when its keypoints are not finite)."""
    points = np.asarray(person["keypoints_2d"], dtype=np.float64)[:, :2]
    if not np.isfinite(points).all():
        return None
    colour = track_colour(int(person["track_id"]))
    inside = [0.0 <= x <= width - 1 and 0.0 <= y <= height - 1 for x, y in points]
    pts = [_clamp(x, y, width, height) for x, y in points]
    bones = [((pts[a], pts[b]), bone) for a, b, bone in bone_colours(colour) if inside[a] and inside[b]]
    x1, y1, x2, y2 = (float(v) for v in person["box"])
    box = None
    if x2 >= 0 and y2 >= 0 and x1 <= width - 1 and y1 <= height - 1:
        box = (_clamp(x1, y1, width, height), _clamp(x2, y2, width, height))
    label = f"#{person['track_id']}"
    (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.45 * scale, scale)
    corner = box[0] if box is not None else (0, 0)
    label_at = (
        int(np.clip(corner[0] + 2, 0, max(0, width - tw - 1))),
        int(np.clip(corner[1] + th + 3, th, height - 2)),
    )
    joints = [p for p, ok in zip(pts, inside, strict=True) if ok]
    marks = [p for p, ok in zip(pts, inside, strict=True) if not ok]
    return PersonPlan(colour, bones, joints, marks, box, label, label_at)


def _mark(out: Image, at: Point, colour: RGB, size: int) -> None:
    """A small filled triangle at the border pixel ``at``, pointing out of the image."""
    h, w = out.shape[:2]
    x, y = at
    if x == 0:
        tri = [(0, y), (size, y - size), (size, y + size)]
    elif x == w - 1:
        tri = [(x, y), (x - size, y - size), (x - size, y + size)]
    elif y == 0:
        tri = [(x, 0), (x - size, size), (x + size, size)]
    else:
        tri = [(x, y), (x - size, y - size), (x + size, y - size)]
    pts = np.clip(np.asarray(tri, dtype=np.int32), 0, [w - 1, h - 1]).reshape(-1, 1, 2)
    cv2.fillPoly(out, [pts], colour, cv2.LINE_AA)


def draw_overlay(image: Image, people: Sequence[Mapping[str, Any]]) -> Image:
    """A copy of ``image (H, W, 3) uint8 RGB`` with each person's bones, joints and box; keypoints in pixels.

    Everything stays inside the image (see :func:`plan_person`): a joint outside is marked at the border."""
    out = np.ascontiguousarray(image.copy())
    h, w = out.shape[:2]
    scale = max(1, round(max(h, w) / 400))
    for person in people:
        plan = plan_person(person, w, h, scale)
        if plan is None:
            continue
        if plan.box is not None:
            cv2.rectangle(out, plan.box[0], plan.box[1], plan.colour, 1)
        cv2.putText(out, plan.label, plan.label_at, cv2.FONT_HERSHEY_SIMPLEX, 0.45 * scale, plan.colour, scale,
                    cv2.LINE_AA)  # fmt: skip
        for (a, b), bone in plan.bones:
            cv2.line(out, a, b, bone, 2 * scale, cv2.LINE_AA)
        for x, y in plan.joints:
            cv2.circle(out, (x, y), 2 * scale + 1, (255, 255, 255), -1, cv2.LINE_AA)
        for at in plan.marks:
            _mark(out, at, plan.colour, 4 * scale)
    return out


def stamp(image: Image, text: str) -> Image:
    """``image`` with ``text`` in white on a red band across its top-left corner (e.g. "RANDOM WEIGHTS")."""
    out = np.ascontiguousarray(image.copy())
    scale = max(0.5, out.shape[0] / 600)
    thickness = max(1, round(scale * 2))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    pad = max(3, th // 3)
    cv2.rectangle(out, (0, 0), (min(out.shape[1] - 1, tw + 2 * pad), th + base + 2 * pad), (200, 0, 0), -1)
    cv2.putText(out, text, (pad, th + pad), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return out
