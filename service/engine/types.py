"""The contract between transports and the engine: requests, results, and the EngineClient protocol.

Every array is numpy; shapes and units are stated per field. Results use Human3.6M-17 order for both
``keypoints_2d`` (image pixels) and ``keypoints_3d`` (metres, camera frame, root-relative).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

import numpy as np
import numpy.typing as npt

from model.joints import JointSet
from service.geometry.camera import CameraSpec
from service.geometry.smoothing import SmoothingSpec

FloatArray = npt.NDArray[np.float32]
ByteImage = npt.NDArray[np.uint8]


class WindowMode(StrEnum):
    """How a temporal model answers a stream: exact with lag, or at once with future padding."""

    CENTRED = "centred"
    CAUSAL = "causal"


class BoxSource(StrEnum):
    """Where a result's person boxes came from."""

    CLIENT = "client"
    WHOLE_FRAME = "whole_frame"
    DETECTOR = "detector"
    KEYPOINTS = "keypoints"  # derived from client-given 2D keypoints


@dataclass(frozen=True)
class ImageFrame:
    """One video/image frame: encoded bytes (JPEG/PNG/WebP) or a decoded ``(H, W, 3) uint8 RGB`` array.
    ``detect_people``: run the person detector (when served, without client boxes) even where pose-guided boxes
    would skip it (someone came in, or the scene cut)."""

    image: bytes | ByteImage
    frame_index: int = 0
    timestamp_s: float | None = None
    detect_people: bool = False


@dataclass(frozen=True)
class KeypointFrame:
    """2D keypoints of ONE person in one frame, skipping the detector.

    ``keypoints``: ``(17, 2) float32`` image pixels in ``joint_set`` order;
    ``scores``: ``(17,) float32`` in [0, 1] (ones when the client gave none).
    """

    keypoints: FloatArray
    scores: FloatArray
    image_size: tuple[int, int]  # (width, height) pixels
    joint_set: JointSet = JointSet.COCO
    frame_index: int = 0
    timestamp_s: float | None = None


Frame = ImageFrame | KeypointFrame


@dataclass(frozen=True)
class EstimateOptions:
    """Per-request options; ``None`` means the model's / server's default."""

    model: str | None = None
    boxes: tuple[tuple[float, float, float, float], ...] | None = None  # xyxy pixels, every frame
    flip_test: bool | None = None
    max_people: int | None = None
    mode: WindowMode = WindowMode.CENTRED
    camera: CameraSpec = field(default_factory=CameraSpec)  # intrinsics for keypoints_3d_camera; default FOV
    smoothing: SmoothingSpec = field(default_factory=SmoothingSpec)  # per-track temporal smoothing; none


@dataclass(frozen=True)
class ModelInfo:
    """What a served model is. ``weights`` is the checkpoint's sha256, or ``"random"``."""

    name: str
    kind: str
    version: str
    weights: str
    frames: int
    stride: int
    joint_set: str
    device: str
    needs_image: bool
    flip_test: bool

    @property
    def random_weights(self) -> bool:
        return self.weights == "random"


@dataclass(frozen=True)
class PersonResult:
    """One person in one frame.

    ``box``: ``(4,)`` xyxy pixels; ``keypoints_2d``: ``(17, 2)`` H36M-17 pixels;
    ``keypoint_scores``: ``(17,)``; ``keypoints_3d``: ``(17, 3)`` metres, root-relative camera frame;
    ``keypoints_3d_camera``: ``(17, 3)`` metres, camera frame (``keypoints_3d`` + the root translation), and
    ``distance_m`` the root's distance from the camera (both ``None`` until placed, or when the person could not
    be placed); ``warnings``: why this person's placement may be wrong.
    """

    track_id: int
    box: FloatArray
    box_score: float
    keypoints_2d: FloatArray
    keypoint_scores: FloatArray
    keypoints_3d: FloatArray
    keypoints_3d_camera: FloatArray | None = None
    distance_m: float | None = None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class FrameResult:
    """One frame's people; ``image_size`` ``(width, height)`` pixels where the engine knows it."""

    frame_index: int
    timestamp_s: float | None
    people: list[PersonResult]
    image_size: tuple[int, int] | None = None


@dataclass
class EstimateResult:
    request_id: str
    model: ModelInfo
    box_source: BoxSource
    frames: list[FrameResult]
    timings_ms: dict[str, float]


@dataclass(frozen=True)
class ClipLimits:
    """What a clip may hold, checked from its header at the gateway and again while the engine decodes it
    (headers can lie): frames kept, seconds, the longest frame side (pixels) and pixels per frame."""

    max_clip_frames: int
    max_clip_seconds: float
    max_frame_side: int
    max_image_pixels: int


@dataclass(frozen=True)
class EncodedClip:
    """A clip as its encoded container bytes (``mp4`` | ``mov`` | ``webm`` | ``avi``), decoded by the engine. Every
    ``every_nth`` decoded frame is kept; kept frames before position ``start`` are decoded but not run (a resumed
    job)."""

    data: bytes
    container: str
    limits: ClipLimits
    every_nth: int = 1
    start: int = 0

    def source_index(self, position: int) -> int:
        """The source frame index of kept frame ``position``."""
        return position * self.every_nth


Source = Sequence[Frame] | EncodedClip | AsyncIterable[Frame]
"""What a :class:`Work` runs: frames in hand (an image, keypoints, a chunk of stream frames), a clip's container
bytes (decoded by the engine), or an async source of frames pulled while it runs."""


@dataclass
class Work:
    """Frames for the engine, and where they go; work not started by ``deadline`` (``time.monotonic()``) is dropped.

    ``stream`` ``None``: a private stream around ``frames`` (results carry the frames' own ``frame_index``, an
    encoded clip's source indices). A named ``stream``: the frames go in at their positions (an encoded clip's kept
    frames from ``frames.start`` on at 0, 1, 2, ...; frames it holds are replayed), ``chunk_frames`` per step (0:
    the engine's choice), each within ``chunk_timeout_s`` (else ``deadline``); ``close``: flush and forget the
    stream at the end (its tail in the last event). Either ends with a :class:`Summary`.
    """

    request_id: str
    frames: Source
    options: EstimateOptions = field(default_factory=EstimateOptions)
    deadline: float | None = None
    stream: str | None = None
    close: bool = False
    chunk_frames: int = 0
    chunk_timeout_s: float | None = None


def ms_since(started: float) -> float:
    """Milliseconds since ``started`` (``time.monotonic()`` seconds), rounded to the microsecond."""
    return round((time.monotonic() - started) * 1000.0, 3)


@dataclass(frozen=True)
class Summary:
    """How a :class:`Work` ran: the model that lifted it, where its boxes came from, per-stage
    milliseconds (``total``; ``decode`` for an encoded clip)."""

    model: ModelInfo
    box_source: BoxSource
    timings_ms: dict[str, float]


@dataclass(frozen=True)
class Progress:
    """One event of :meth:`EngineClient.submit`: the results completed since the last one, the source frames
    taken so far (an encoded clip's kept frames decoded, skipped ones included) and, last, the summary."""

    results: list[FrameResult]
    frames_decoded: int = 0
    summary: Summary | None = None


@dataclass(frozen=True)
class StreamInfo:
    """A stream as opened: ``smoothing_lag_frames`` is how many frames its smoothing holds back (Savitzky–Golay's half
    window, 0 without), so that a client resuming it knows its whole lag without its options."""

    stream_id: str
    model: str
    mode: WindowMode
    frames_received: int
    frames_emitted: int
    smoothing_lag_frames: int = 0


@dataclass(frozen=True)
class ReadyStatus:
    ready: bool
    detail: dict[str, str]


class EngineClient(Protocol):
    """The one interface a gateway knows: implemented in-process and remote (gRPC to workers)."""

    def submit(self, work: Work) -> AsyncGenerator[Progress]:
        """Run ``work``; yields its results as they complete (see :class:`Work`). Closing the iterator
        (``aclose``) cancels it and releases what it holds (a private stream is closed)."""

    async def open_stream(self, options: EstimateOptions, stream_id: str | None = None) -> StreamInfo: ...

    async def close_stream(self, stream_id: str) -> list[FrameResult]:
        """Flush the tail (edge padding) and forget the stream."""

    async def get_stream(self, stream_id: str) -> StreamInfo: ...

    async def models(self) -> list[ModelInfo]: ...

    async def components(self) -> list[ModelInfo]:
        """The stages behind the models: the 2D keypoint detector and the person detector, when served
        (``kind`` ``keypoint_detector`` / ``person_detector``; ``weights`` sha256 or ``random``)."""

    async def ready(self) -> ReadyStatus: ...

    async def aclose(self) -> None: ...
