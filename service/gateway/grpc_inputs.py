"""Public gRPC messages → validated engine inputs, with the same rules (and error classes) as REST.

Shapes on the wire: ``Keypoints2D.xy`` 34 floats = ``(17, 2)`` pixels, ``scores`` 17 floats in [0, 1]
or empty (ones). Bad input raises the service error REST would (422 InvalidInput → INVALID_ARGUMENT,
413 PayloadTooLarge → INVALID_ARGUMENT, ...), so it never reaches a model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import chain
from typing import Final

import numpy as np
import numpy.typing as npt

from model.joints import NUM_JOINTS, JointSet
from service.api.schemas import MAX_FRAME_INDEX
from service.api.validation import check_boxes, frame_times, keypoint_array, parse_model_name
from service.api.world_fields import CAMERA_FIELDS, SMOOTHING_PARAMS, build_world
from service.config import LimitSettings
from service.engine.types import EstimateOptions, KeypointFrame
from service.errors import InvalidInput, PayloadTooLarge
from service.geometry.camera import CameraSpec
from service.geometry.smoothing import SmoothingSpec
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.rpc.codec import JOINT_SET_FROM_PB, SMOOTHING_FROM_PB, WINDOW_MODE_FROM_PB
from service.rpc.wire import field_bytes


def public_options(msg: pb.Options, limits: LimitSettings) -> tuple[EstimateOptions, int]:
    """``Options`` validated as REST validates its form fields: the engine options (``model`` None: the default for
    the input kind) and ``every_nth``."""
    boxes = check_boxes([[b.x1, b.y1, b.x2, b.y2] for b in msg.boxes], limits) if msg.boxes else None
    max_people = None
    if msg.HasField("max_people"):
        if not 1 <= msg.max_people <= limits.max_people:
            raise InvalidInput(f"max_people must be in [1, {limits.max_people}], got {msg.max_people}")
        max_people = msg.max_people
    if msg.mode not in WINDOW_MODE_FROM_PB:
        raise InvalidInput(f"unknown window mode {msg.mode}")
    every_nth = max(1, msg.every_nth)
    if every_nth > limits.max_every_nth:
        raise InvalidInput(f"every_nth must be in [1, {limits.max_every_nth}], got {every_nth}")
    camera, smoothing = _world(msg)
    options = EstimateOptions(
        model=parse_model_name(msg.model),
        boxes=boxes,
        flip_test=msg.flip_test if msg.HasField("flip_test") else None,
        max_people=max_people,
        mode=WINDOW_MODE_FROM_PB[msg.mode],
        camera=camera,
        smoothing=smoothing,
    )
    return options, every_nth


def _world(msg: pb.Options) -> tuple[CameraSpec, SmoothingSpec]:
    """The camera and smoothing options, checked as REST checks them (422 on inconsistent or out-of-range values)."""
    method = msg.smoothing.method
    if method not in SMOOTHING_FROM_PB:
        raise InvalidInput(f"unknown smoothing method {method}")
    camera = {n: getattr(msg.camera, n) if msg.camera.HasField(n) else None for n in CAMERA_FIELDS}
    params = {n: getattr(msg.smoothing, n) for n in SMOOTHING_PARAMS if msg.smoothing.HasField(n)}
    return build_world(camera, SMOOTHING_FROM_PB[method], params)


def joint_set_of(value: int) -> JointSet:
    if value not in JOINT_SET_FROM_PB:
        raise InvalidInput(f"unknown joint set {value}")
    return JOINT_SET_FROM_PB[value]


def _keypoint_rows(frames: Sequence[pb.Keypoints2D]) -> npt.NDArray[np.float64]:
    """``(T, 17, 2|3)`` float64 from ``Keypoints2D`` messages (scores appended when given)."""
    with_scores = {len(f.scores) > 0 for f in frames}
    if len(with_scores) > 1:
        raise InvalidInput("give scores for every frame or for none")
    for i, f in enumerate(frames):
        if len(f.xy) != 2 * NUM_JOINTS:
            raise InvalidInput(f"frame {i}: keypoints xy must hold {2 * NUM_JOINTS} floats (17 x, y pairs)")
        if len(f.scores) not in (0, NUM_JOINTS):
            raise InvalidInput(f"frame {i}: scores must hold {NUM_JOINTS} floats or none")
    count = len(frames)
    xy = np.fromiter(chain.from_iterable(f.xy for f in frames), np.float64, 2 * NUM_JOINTS * count)
    xy = xy.reshape(count, NUM_JOINTS, 2)
    if not with_scores.pop():
        return xy
    scores = np.fromiter(chain.from_iterable(f.scores for f in frames), np.float64, NUM_JOINTS * count)
    rows: npt.NDArray[np.float64] = np.concatenate([xy, scores.reshape(count, NUM_JOINTS, 1)], axis=2)
    return rows


def _image_size(width: int, height: int) -> tuple[int, int]:
    if width < 1 or height < 1:
        raise InvalidInput(f"image_width and image_height must be positive, got {width}x{height}")
    return width, height


def check_keypoint_count(msg: pb.KeypointsInput, limits: LimitSettings) -> None:
    """Refuse ``KeypointsInput`` without frames, or past ``max_clip_frames`` (PayloadTooLarge, as REST), before any
    per-frame work: a 200 000-frame request is answered at once, not after building every frame."""
    count = len(msg.frames)
    if not count:
        raise InvalidInput("keypoints input has no frames")
    if count > limits.max_clip_frames:
        raise PayloadTooLarge(f"{count} frames of keypoints; at most {limits.max_clip_frames}")


KEYPOINT_FRAME_WIRE_BYTES: Final = 300
"""The most bytes one frame of ``KeypointsInput`` takes on the wire (no unknown fields): its ``Keypoints2D`` (51
floats, unpacked at worst: 5 B each, plus tag and length) and one timestamp (unpacked: 9 B)."""

ESTIMATE_METHOD: Final = "/" + pb.DESCRIPTOR.services_by_name["Pose3D"].full_name + "/Estimate"


def keypoints_size_check(limits: LimitSettings) -> Callable[[bytes], None]:
    """A precheck of ``Estimate``'s raw bytes: keypoints longer on the wire than ``max_clip_frames`` frames can be
    are refused (PayloadTooLarge → INVALID_ARGUMENT) from a scan of the top-level fields, before parsing; a
    200 000-frame request is answered without decoding its 200 000 messages. A request past that bound whose top level
    the scan cannot size (malformed, or past :data:`~service.rpc.wire.MAX_FIELDS` fields) is refused too
    (InvalidInput)."""
    bound = limits.max_clip_frames * KEYPOINT_FRAME_WIRE_BYTES + 64 * 1024
    number = pb.EstimateRequest.DESCRIPTOR.fields_by_name["keypoints"].number

    def check(raw: bytes) -> None:
        if len(raw) <= bound:
            return
        size = field_bytes(raw, number)
        if size is None:  # malformed, or more top-level fields than a request has: not parsed either
            raise InvalidInput(f"a request of {len(raw)} bytes that is not a well-formed EstimateRequest")
        if size > bound:
            raise PayloadTooLarge(
                f"keypoints input of {size} bytes holds more than the {limits.max_clip_frames} frames of keypoints "
                f"allowed (at most {bound} bytes)"
            )

    return check


def keypoint_frames(msg: pb.KeypointsInput, limits: LimitSettings) -> list[KeypointFrame]:
    """One :class:`KeypointFrame` per frame of ``KeypointsInput`` (one person per frame, frames 0, 1, …), its count
    checked already (:func:`check_keypoint_count`)."""
    size = _image_size(msg.image_width, msg.image_height)
    xy, scores = keypoint_array(_keypoint_rows(msg.frames), size, limits)
    times = frame_times(list(msg.timestamps_s) or None, xy.shape[0])  # proto: empty = not given
    joint_set = joint_set_of(msg.joint_set)
    return [KeypointFrame(xy[i], scores[i], size, joint_set, frame_index=i, timestamp_s=t) for i, t in enumerate(times)]


def check_frame_header(msg: pb.StreamFrame) -> tuple[int, float | None]:
    """A stream frame's ``(frame_index, timestamp_s)``, validated."""
    if not 0 <= msg.frame_index <= MAX_FRAME_INDEX:
        raise InvalidInput(f"frame_index must be in [0, {MAX_FRAME_INDEX}], got {msg.frame_index}")
    timestamp = msg.timestamp_s if msg.HasField("timestamp_s") else None
    if timestamp is not None and not math.isfinite(timestamp):
        raise InvalidInput("timestamp_s must be finite")
    return msg.frame_index, timestamp


def stream_keypoint_frame(msg: pb.StreamFrame, joint_set: JointSet, limits: LimitSettings) -> KeypointFrame:
    """The :class:`KeypointFrame` of one stream frame carrying ``keypoints``."""
    index, timestamp = check_frame_header(msg)
    size = _image_size(msg.image_width, msg.image_height)
    xy, scores = keypoint_array(_keypoint_rows([msg.keypoints]), size, limits)
    return KeypointFrame(xy[0], scores[0], size, joint_set, frame_index=index, timestamp_s=timestamp)
