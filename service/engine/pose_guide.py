"""Pose-guided person boxes for clips and streams: frame t's boxes from frame t-1's keypoints.

As rtmlib's ``PoseTracker`` does it, each person's next box is its last keypoints' extent grown 1.25x about its
centre (the crop adds its own 1.25 padding). The person detector runs instead when :func:`guided_boxes` says so
(every ``detect_every`` frames unless the request's ``max_people`` are all tracked, no guide of frame t-1, nobody
tracked, or a person lost; docs/realtime.md). The decision uses only frame data, so a clip and the same frames
pushed as a stream choose the same boxes. A stream's guide is stored with its tracker state in the frame buffer
(:func:`attach_guide`), so any worker continues any stream; a clip takes frame t-1's guide from that frame's
prepared people (:class:`GuideAfter`): the same guide bit for bit (the buffer's JSON round trip of float32 values
is exact), without waiting for frame t-1 to be tracked and appended.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Final

import numpy as np

from service.engine.framebuffer import FrameBuffer
from service.engine.prepare import PreparedPeople
from service.engine.types import BoxSource, FloatArray

EXPANSION: Final = 1.25
GUIDE_KEY: Final = "guide"


@dataclass(frozen=True)
class GuideSettings:
    """``detect_every`` (k >= 1) frames between forced detector runs; ``min_score``: a person whose mean keypoint
    score falls below it is lost; ``max_people``: the request's bound (``None``: none), whose frames skip the forced
    run while the frame before tracks that many people."""

    detect_every: int = 10
    min_score: float = 0.3
    max_people: int | None = None


@dataclass(frozen=True)
class Guide:
    """What frame ``frame_index`` leaves for the next one: ``boxes (P, 4)`` xyxy px, ``mean_scores (P,)``."""

    frame_index: int
    boxes: FloatArray
    mean_scores: FloatArray


@dataclass(frozen=True)
class GuideAt:
    """Where a frame's guide lives: its stream in ``buffer`` and its buffer frame index."""

    buffer: FrameBuffer
    stream_id: str
    frame_index: int


@dataclass(frozen=True)
class GuideAfter:
    """Where a clip frame's guide comes from: frame ``frame_index - 1`` of the same clip, being prepared by
    ``previous`` (``None``: that frame is not tracked, a keypoint frame, so it leaves no guide)."""

    frame_index: int
    previous: asyncio.Task[tuple[PreparedPeople, BoxSource]] | None


def pose_to_box(keypoints: FloatArray, expansion: float = EXPANSION) -> FloatArray:
    """``(P, K, 2)`` pixels → ``(P, 4) float32`` boxes: the keypoints' extent grown ``expansion``x about its centre."""
    kp = np.asarray(keypoints, dtype=np.float64).reshape(len(keypoints), -1, 2)
    lo, hi = kp.min(axis=1), kp.max(axis=1)
    center = (lo + hi) / 2
    boxes = np.concatenate([center - (center - lo) * expansion, center + (hi - center) * expansion], axis=1)
    return boxes.astype(np.float32)


def guide_of(people: PreparedPeople, frame_index: int) -> Guide:
    """The guide frame ``frame_index``'s prepared people leave for the next frame."""
    return guide_from(people.keypoints_px, people.scores, frame_index)


def guide_from(keypoints_px: FloatArray, scores: FloatArray, frame_index: int) -> Guide:
    """The guide of frame ``frame_index``'s people: keypoints ``(P, 17, 2)`` px, scores ``(P, 17)`` in [0, 1]."""
    if len(keypoints_px) == 0:
        return Guide(frame_index, np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
    return Guide(frame_index, pose_to_box(keypoints_px), scores.mean(axis=1).astype(np.float32))


def attach_guide(tracker: bytes, guide: Guide) -> bytes:
    """The tracker state's bytes with ``guide`` added (the tracker's own reader ignores the extra key)."""
    payload = json.loads(tracker)
    payload[GUIDE_KEY] = {
        "f": guide.frame_index,
        "b": [[float(v) for v in b] for b in guide.boxes],
        "s": [float(s) for s in guide.mean_scores],
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def read_guide(tracker: bytes | None) -> Guide | None:
    """The guide stored with a tracker state, if any."""
    g = json.loads(tracker).get(GUIDE_KEY) if tracker else None
    if g is None:
        return None
    return Guide(int(g["f"]), np.asarray(g["b"], np.float32).reshape(-1, 4), np.asarray(g["s"], np.float32))


def guided_boxes(previous: Guide | None, frame_index: int, settings: GuideSettings) -> FloatArray | None:
    """Frame ``frame_index``'s boxes from the previous frame's guide, or ``None`` when the detector must run."""
    if previous is None or previous.frame_index != frame_index - 1:
        return None
    full = settings.max_people is not None and len(previous.boxes) >= settings.max_people
    if frame_index % settings.detect_every == 0 and not full:  # a fresh look, unless it could find nobody to keep
        return None
    if len(previous.boxes) == 0 or (previous.mean_scores < settings.min_score).any():
        return None
    sizes = previous.boxes[:, 2:] - previous.boxes[:, :2]
    if not (np.isfinite(previous.boxes).all() and (sizes >= 1.0).all()):
        return None  # a degenerate pose (all joints on one pixel) gives no crop: look again
    return previous.boxes


def guides(frame_index: int, settings: GuideSettings) -> bool:
    """Whether frame ``frame_index``'s boxes may come from the frame before (else the person detector runs, whatever
    that frame left: those frames need not wait for it). A request with ``max_people`` may follow its track on
    every frame."""
    return frame_index % settings.detect_every != 0 or settings.max_people is not None


async def load_guided_boxes(at: GuideAt | GuideAfter, settings: GuideSettings) -> FloatArray | None:
    """:func:`guided_boxes` for the frame ``at`` names, the guide read from its frame buffer (:class:`GuideAt`) or
    made from the frame before's prepared people once they are (:class:`GuideAfter`)."""
    if not guides(at.frame_index, settings):
        return None
    if isinstance(at, GuideAfter):
        before = None if at.previous is None else guide_of((await at.previous)[0], at.frame_index - 1)
        return guided_boxes(before, at.frame_index, settings)
    guide = read_guide((await at.buffer.tracker(at.stream_id)).tracker)
    if guide is None or guide.frame_index != at.frame_index - 1:  # this process's copy may be behind: ask the store
        guide = read_guide((await at.buffer.tracker(at.stream_id, fresh=True)).tracker)
    return guided_boxes(guide, at.frame_index, settings)
