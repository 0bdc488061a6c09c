"""Pydantic request/response models of the REST API, with the examples OpenAPI shows at ``/docs``.

Conventions of every response: joints in Human3.6M-17 order (``joint_names``), ``keypoints_2d`` in
image pixels, ``keypoints_3d`` in metres in the camera frame relative to the pelvis, ``keypoints_3d_camera`` in
metres in the camera frame (the pose placed at its solved root translation; see ``service.geometry.camera``).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from model.joints import JointSet
from service.api.world_fields import WorldFields
from service.engine.types import EstimateOptions, FrameResult, ModelInfo, PersonResult, WindowMode

MAX_FRAME_INDEX: Final = 2**31 - 1
"""Largest stream ``frame_index`` accepted on any transport (fits every wire and buffer format)."""
MAX_MODEL_NAME: Final = 128
"""Longest model name accepted (served names are short; a longer one is refused, not echoed back)."""
ModelName = Annotated[str, Field(max_length=MAX_MODEL_NAME)]

UNITS: Final = "m"
CoordinateFrame = Literal[
    "camera (x right, y down, z forward); keypoints_3d root-relative, keypoints_3d_camera absolute"
]
COORDINATE_FRAME: Final[CoordinateFrame] = get_args(CoordinateFrame)[0]

_POINT_2D_EXAMPLE = [[412.3, 288.9]] * 17
_POINT_3D_EXAMPLE = [[0.0, 0.0, 0.0]] * 17


class ModelRef(BaseModel):
    """Which model answered, and with which weights (``sha256`` of the checkpoint, or ``"random"``)."""

    name: str
    version: str
    weights: str
    random_weights: bool

    @classmethod
    def of(cls, info: ModelInfo) -> ModelRef:
        return cls(name=info.name, version=info.version, weights=info.weights, random_weights=info.random_weights)


class Person(BaseModel):
    """One person in one frame: box ``[x1, y1, x2, y2]`` pixels, 17 H36M joints in 2D (pixels) and 3D (m)."""

    track_id: int = Field(description="stable across the frames of a clip or stream")
    box: list[float] = Field(min_length=4, max_length=4, examples=[[320.0, 96.0, 512.0, 470.0]])
    box_score: float
    keypoints_2d: list[list[float]] = Field(description="(17, 2) pixels", examples=[_POINT_2D_EXAMPLE])
    keypoint_scores: list[float] = Field(description="(17,) in [0, 1]", examples=[[0.93] * 17])
    keypoints_3d: list[list[float]] = Field(description="(17, 3) metres, root-relative", examples=[_POINT_3D_EXAMPLE])
    keypoints_3d_camera: list[list[float]] | None = Field(
        description="(17, 3) metres, camera frame: keypoints_3d + the solved root translation (null: not placed)",
        examples=[[[0.3, 0.1, 4.2]] * 17],
    )
    distance_m: float | None = Field(description="distance of the pelvis from the camera centre, metres")
    warnings: list[str] = Field(default_factory=list, description="why this person's placement may be wrong")

    @classmethod
    def of(cls, person: PersonResult) -> Person:
        return cls(
            track_id=int(person.track_id),
            box=[float(v) for v in person.box.tolist()],
            box_score=float(person.box_score),
            keypoints_2d=person.keypoints_2d.astype(float).tolist(),
            keypoint_scores=person.keypoint_scores.astype(float).tolist(),
            keypoints_3d=person.keypoints_3d.astype(float).tolist(),
            keypoints_3d_camera=None if (cam := person.keypoints_3d_camera) is None else cam.astype(float).tolist(),
            distance_m=None if person.distance_m is None else float(person.distance_m),
            warnings=list(person.warnings),
        )


class Frame(BaseModel):
    frame_index: int = Field(description="index of the frame in the source (clip frames before subsampling)")
    timestamp_s: float | None = Field(description="presentation time from the container or the client")
    people: list[Person]

    @classmethod
    def of(cls, frame: FrameResult, frame_index: int | None = None) -> Frame:
        return cls(
            frame_index=frame.frame_index if frame_index is None else frame_index,
            timestamp_s=frame.timestamp_s,
            people=[Person.of(p) for p in frame.people],
        )


class PoseResponse(BaseModel):
    """Result of ``POST /v1/pose3d``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "request_id": "5f0c3c1f8f7e4a0f9d2b6a71c2d5e9aa",
                    "model": {"name": "capf", "version": "capf-w32", "weights": "random", "random_weights": True},
                    "joint_names": ["pelvis", "r_hip", "..."],
                    "units": "m",
                    "coordinate_frame": COORDINATE_FRAME,
                    "box_source": "whole_frame",
                    "frames": [{"frame_index": 0, "timestamp_s": None, "people": ["..."]}],
                    "timings_ms": {"decode": 3.1, "engine": 41.7, "total": 45.9},
                    "warnings": ["model capf serves RANDOM weights: outputs are meaningless"],
                }
            ]
        }
    )

    request_id: str
    model: ModelRef
    joint_names: list[str]
    units: Literal["m"] = UNITS
    coordinate_frame: CoordinateFrame = COORDINATE_FRAME
    box_source: str = Field(description="client | whole_frame | detector | keypoints")
    frames: list[Frame]
    timings_ms: dict[str, float] = Field(description="milliseconds per stage (decode, engine stages, total)")
    warnings: list[str] = Field(default_factory=list)


Coordinate = Annotated[list[float], Field(min_length=2, max_length=3)]


class KeypointsRequest(WorldFields):
    """2D keypoints instead of an image: one frame ``(17, 2|3)`` or a sequence ``(T, 17, 2|3)``,
    ``[x, y]`` or ``[x, y, score]`` in image pixels, one person per frame."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "keypoints_2d": [[[320.0 + 4 * j, 180.0 + 10 * j, 0.9] for j in range(17)]],
                    "image_size": [640, 480],
                    "joint_set": "coco",
                    "model": "pstmo-243",
                }
            ]
        },
    )

    keypoints_2d: list[list[Coordinate]] | list[Coordinate] = Field(
        description="(17, 2|3) for one frame or (T, 17, 2|3) for a sequence, pixels"
    )
    image_size: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]] = Field(
        description="[width, height] pixels of the image the keypoints belong to"
    )
    joint_set: JointSet = JointSet.COCO
    model: ModelName | None = None
    flip_test: bool | None = None
    mode: WindowMode = WindowMode.CENTRED
    timestamps_s: list[float] | None = Field(None, description="optional (T,) seconds; default frame index / 30")

    def options(self, model: str | None = None) -> EstimateOptions:
        """The engine options this request asks for (``model`` None: the request's default)."""
        camera, smoothing = self.world()
        return EstimateOptions(
            model=model, flip_test=self.flip_test, mode=self.mode, camera=camera, smoothing=smoothing
        )


class MediaFields(BaseModel):
    """The text fields of an image or clip request (``multipart/form-data`` beside ``file``), all optional, parsed by
    :func:`service.api.fields.media_options`: malformed text is a 400, unacceptable values a 422."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(None, description="served model name (GET /v1/models); default per input kind")
    boxes: str | None = Field(
        None,
        description="JSON [[x1, y1, x2, y2], ...] person boxes in pixels (every frame)",
        examples=["[[40, 20, 200, 460], [260, 30, 420, 470]]"],
    )
    flip_test: str | None = Field(None, description="true | false: test-time flip augmentation (default: the model's)")
    max_people: str | None = Field(
        None,
        description="integer >= 1: keep at most this many people per frame (with pose-guided boxes, "
        "while that many are tracked the person detector runs only when a track is lost)",
    )
    mode: str | None = Field(None, description="centred | causal: temporal window mode (clips)")
    every_nth: str | None = Field(None, description="integer >= 1: clips, process every n-th frame")
    fx: str | None = Field(None, description="number: camera intrinsics, pixels (give fx, fy, cx, cy, or fov_deg)")
    fy: str | None = Field(None, description="number: focal length y, pixels")
    cx: str | None = Field(None, description="number: principal point x, pixels")
    cy: str | None = Field(None, description="number: principal point y, pixels")
    fov_deg: str | None = Field(None, description="number: horizontal field of view, degrees (instead of fx..cy)")
    smoothing: str | None = Field(None, description="none | one_euro | savgol: per-track smoothing")
    smoothing_params: str | None = Field(
        None,
        description="JSON object: min_cutoff_hz, beta, d_cutoff_hz (one_euro); half_window, polyorder (savgol)",
        examples=['{"half_window": 4, "polyorder": 2}'],
    )


class StreamOpenRequest(WorldFields):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"model": "pstmo-243", "mode": "centred"}]}
    )

    model: ModelName | None = Field(None, description="a served model; default: the default clip model")
    mode: WindowMode = WindowMode.CENTRED
    flip_test: bool | None = None
    max_people: int | None = Field(None, ge=1)
    boxes: list[Annotated[list[float], Field(min_length=4, max_length=4)]] | None = Field(
        None, description="person boxes [[x1, y1, x2, y2], ...] pixels used for every frame"
    )


class StreamFrameKeypoints(BaseModel):
    """One frame of a stream given as 2D keypoints ``(17, 2|3)`` pixels of one person."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "keypoints_2d": [[320.0 + 4 * j, 180.0 + 10 * j] for j in range(17)],
                    "image_size": [640, 480],
                    "frame_index": 0,
                    "timestamp_s": 0.0,
                }
            ]
        },
    )

    keypoints_2d: list[Coordinate]
    image_size: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]]
    joint_set: JointSet = JointSet.COCO
    frame_index: int = Field(ge=0, le=MAX_FRAME_INDEX)
    timestamp_s: float | None = None


class StreamOpened(BaseModel):
    stream_id: str = Field(examples=["l3Yh0bS0u3v2XQ0m8yq9zC1rBq4iYk2T"])
    model: ModelRef
    mode: WindowMode
    expires_after_idle_s: float
    warnings: list[str] = Field(default_factory=list)


class StreamStatus(BaseModel):
    stream_id: str
    model: ModelRef
    mode: WindowMode
    frames_received: int
    frames_emitted: int
    warnings: list[str] = Field(default_factory=list)


class StreamFrames(BaseModel):
    """Frames a stream call completed (possibly none, possibly earlier frames than the one sent)."""

    stream_id: str
    request_id: str
    model: ModelRef
    joint_names: list[str]
    units: Literal["m"] = UNITS
    coordinate_frame: CoordinateFrame = COORDINATE_FRAME
    frames: list[Frame]
    timings_ms: dict[str, float]
    warnings: list[str] = Field(default_factory=list)


class ModelOut(BaseModel):
    name: str
    kind: str
    version: str
    weights: str = Field(description="sha256 of the checkpoint, or 'random'")
    random_weights: bool
    frames: int
    stride: int
    joint_set: str
    device: str
    needs_image: bool
    flip_test: bool

    @classmethod
    def of(cls, info: ModelInfo) -> ModelOut:
        return cls(**dataclasses.asdict(info), random_weights=info.random_weights)


class ModelsResponse(BaseModel):
    models: list[ModelOut]
    components: list[ModelOut] = Field(
        default_factory=list,
        description="the stages behind the models: the 2D keypoint detector and the person detector (kind says which)",
    )
    default_image_model: str
    default_clip_model: str


class Readiness(BaseModel):
    ready: bool
    detail: dict[str, str]


class Problem(BaseModel):
    """RFC 9457 problem details (``application/problem+json``)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "type": "urn:pose3d:problem:payload-too-large",
                    "title": "Payload too large",
                    "status": 413,
                    "detail": "image is 20000x20000 = 400000000 pixels; at most 40000000 are accepted",
                    "request_id": "5f0c3c1f8f7e4a0f9d2b6a71c2d5e9aa",
                    "instance": "/v1/pose3d",
                }
            ]
        },
    )

    type: str
    title: str
    status: int
    detail: str
    request_id: str
    instance: str | None = None


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": text, "content": {"application/problem+json": {}}}
    for status, text in {
        400: "malformed request",
        404: "unknown model or stream",
        413: "body, image, or clip too large",
        415: "unsupported media type (sniffed from content)",
        422: "invalid values (shapes, non-finite numbers, undecodable media)",
        429: "overloaded; see Retry-After",
        503: "not ready / unavailable; see Retry-After",
        504: "deadline exceeded",
    }.items()
}
