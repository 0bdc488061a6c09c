"""Pose-guided person boxes for clips and streams: frame t's boxes from frame t-1's keypoints.

As rtmlib's ``PoseTracker`` (and MediaPipe's video mode) do it: each person's next box is the bounding box of
its last keypoints grown 1.25x about its centre (rtmlib ``pose_to_bbox(keypoints, expansion=1.25)``; the crop
then adds its own 1.25 padding, as there). The person detector runs only when

- ``frame_index % detect_every == 0`` (a fresh look every k frames: new people are found there) — unless the
  request keeps at most ``max_people`` people and frame t-1 already tracks that many, none lost: a fresh look could
  only find people the request would not keep, so the track is followed as MediaPipe's video mode follows its one
  person (its detector runs only when the track is lost), or
- frame t-1's guide is not stored (the first frame, or t-1 not appended yet: a stream frame that arrives before
  its predecessor), or frame t-1 had no people, or
- a person of frame t-1 is lost: its mean keypoint score is below ``min_score`` (or its box is under 1 px).

The decision depends only on frame data (indices, keypoints, scores), so a clip and the same frames pushed as
a stream one after another choose the same boxes. The guide (boxes and mean scores of frame t) is stored inside
the stream's tracker state in the frame buffer, written atomically with frame t (:func:`attach_guide`), so any
worker continues any stream. A clip (a private stream that one coroutine appends in order) takes frame t-1's
guide from that frame's prepared people instead (:class:`GuideAfter`): the same guide, bit for bit (the buffer's
JSON round trip of float32 values is exact), without waiting for frame t-1 to be tracked and appended.
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
    return np.concatenate([center - (center - lo) * expansion, center + (hi - center) * expansion], axis=1).astype(
        np.float32
    )


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
    if not tracker:
        return None
    g = json.loads(tracker).get(GUIDE_KEY)
    if g is None:
        return None
    return Guide(int(g["f"]), np.asarray(g["b"], np.float32).reshape(-1, 4), np.asarray(g["s"], np.float32))


def guided_boxes(previous: Guide | None, frame_index: int, settings: GuideSettings) -> FloatArray | None:
    """Frame ``frame_index``'s boxes from the previous frame's guide, or ``None`` when the detector must run."""
    if previous is None or previous.frame_index != frame_index - 1:
        return None
    if frame_index % settings.detect_every == 0 and not _full(previous, settings.max_people):
        return None
    if len(previous.boxes) == 0 or (previous.mean_scores < settings.min_score).any():
        return None
    sizes = previous.boxes[:, 2:] - previous.boxes[:, :2]
    if not (np.isfinite(previous.boxes).all() and (sizes >= 1.0).all()):
        return None  # a degenerate pose (all joints on one pixel) gives no crop: look again
    return previous.boxes


def _full(previous: Guide, max_people: int | None) -> bool:
    """Whether the frame before tracks as many people as the request keeps (``max_people``; ``None``: no bound)."""
    return max_people is not None and len(previous.boxes) >= max_people


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
