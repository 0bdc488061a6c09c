"""Per-frame preparation before the frame buffer: decoding, and the people of one frame before tracking
(:class:`PreparedPeople`, from the detector or the client's 2D keypoints)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from model.joints import JointSet, coco_scores_to_h36m, coco_to_h36m, normalize_screen_coordinates
from service.engine.detector import PersonDetection
from service.engine.framebuffer import FrameRecord
from service.engine.types import ByteImage, FloatArray, KeypointFrame
from service.errors import DecodeFailed, InvalidInput


@dataclass(frozen=True)
class PreparedPeople:
    """The P people of one frame, untracked.

    ``boxes`` ``(P, 4)`` xyxy px; ``box_scores`` ``(P,)``; ``keypoints_px`` ``(P, 17, 2)`` H36M px;
    ``scores`` ``(P, 17)``; ``tokens`` ``(P, V, 17, D)`` float32 (``V = D = 0`` without tokens).
    """

    image_size: tuple[int, int]
    boxes: FloatArray
    box_scores: FloatArray
    keypoints_px: FloatArray
    scores: FloatArray
    tokens: FloatArray

    @property
    def num_people(self) -> int:
        return int(self.boxes.shape[0])

    def to_record(self, frame_index: int, timestamp_s: float | None, track_ids: list[int]) -> FrameRecord:
        """Attach track ids (one per person) and the lifter's normalised keypoints."""
        return FrameRecord(
            frame_index=frame_index,
            timestamp_s=timestamp_s,
            image_size=self.image_size,
            track_ids=np.asarray(track_ids, dtype=np.int32).reshape(self.num_people),
            boxes=self.boxes,
            box_scores=self.box_scores,
            keypoints_px=self.keypoints_px,
            keypoints_norm=normalize_screen_coordinates(self.keypoints_px, *self.image_size).reshape(-1, 17, 2),
            scores=self.scores,
            tokens=self.tokens,
        )


def detected_keypoints(people: Sequence[PersonDetection]) -> tuple[FloatArray, FloatArray]:
    """The detector's people → their H36M-17 keypoints ``(P, 17, 2)`` px and scores ``(P, 17)`` in [0, 1], float32
    (:attr:`PreparedPeople.keypoints_px` and :attr:`PreparedPeople.scores`)."""
    keypoints_px = np.array([p.keypoints_h36m for p in people], np.float32).reshape(-1, 17, 2)
    scores = np.clip(np.array([p.scores_h36m for p in people], np.float32).reshape(-1, 17), 0.0, 1.0)
    return keypoints_px, scores


def empty_tokens(people: int) -> FloatArray:
    return np.zeros((people, 0, 17, 0), np.float32)


def decode_image(data: bytes | ByteImage) -> ByteImage:
    """Encoded JPEG/PNG/WebP bytes (or an already decoded array) → ``(H, W, 3) uint8`` RGB; DecodeFailed when the
    bytes are no decodable image or the array is not ``(H, W, 3) uint8``."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8 or data.ndim != 3 or data.shape[2] != 3 or min(data.shape[:2]) < 1:
            raise DecodeFailed(f"a decoded frame must be (H, W, 3) uint8 RGB, got {data.shape} {data.dtype}")
        return data
    buf = np.frombuffer(data, dtype=np.uint8)
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if bgr is None:
        raise DecodeFailed("the image could not be decoded (JPEG, PNG or WebP expected)")
    rgb: ByteImage = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)
    return rgb


def people_from_keypoints(frame: KeypointFrame) -> PreparedPeople:
    """One person from client 2D keypoints: converted to H36M-17, box around the keypoints. Raises InvalidInput
    for wrong shapes, non-finite values, scores outside [0, 1], or a non-positive image size."""
    kp = np.asarray(frame.keypoints, dtype=np.float32)
    scores = np.asarray(frame.scores, dtype=np.float32)
    if kp.shape != (17, 2) or scores.shape != (17,):
        raise InvalidInput(f"keypoints must be (17, 2) and scores (17,), got {kp.shape} and {scores.shape}")
    if not (np.isfinite(kp).all() and np.isfinite(scores).all()):
        raise InvalidInput("keypoints and scores must be finite numbers")
    if (scores < 0).any() or (scores > 1).any():
        raise InvalidInput("keypoint scores must lie in [0, 1]")
    width, height = frame.image_size
    if width <= 0 or height <= 0:
        raise InvalidInput(f"image_size must be positive, got {frame.image_size}")
    if frame.joint_set is JointSet.COCO:
        kp, scores = coco_to_h36m(kp), coco_scores_to_h36m(scores)
    box = np.array([[kp[:, 0].min(), kp[:, 1].min(), kp[:, 0].max(), kp[:, 1].max()]], np.float32)
    return PreparedPeople(
        image_size=(int(width), int(height)),
        boxes=box,
        box_scores=np.array([scores.mean()], np.float32),
        keypoints_px=kp[None],
        scores=scores[None],
        tokens=empty_tokens(1),
    )
