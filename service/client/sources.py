"""Frame sources for the streaming client: a clip file, a camera, or a generated clip.

Every source yields :class:`SourceFrame` with a ``(H, W, 3) uint8`` RGB image, a 0-based index and a
timestamp in seconds. Clip frames are decoded with PyAV exactly as the gateway decodes a posted clip,
so a clip streamed frame by frame (losslessly encoded) gives the same pixels as the clip posted whole.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import numpy.typing as npt

from service.errors import DecodeFailed, InvalidInput
from service.render.matroska import ends_inside
from service.render.video import upright_rgb, video_stream

if TYPE_CHECKING:
    import av

RGBImage = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class SourceFrame:
    """One frame to stream. ``detect_people``: ask the server to run its person detector on this frame even
    where pose-guided boxes would skip it (the caller knows someone came in, or the scene cut)."""

    index: int
    timestamp_s: float
    image: RGBImage  # (H, W, 3) uint8 RGB
    detect_people: bool = False


@contextmanager
def _decoding(path: Path) -> Iterator[None]:
    """PyAV's failures to read ``path`` as a video (not one, or corrupt) as DecodeFailed, the gateway's error for the
    same clip; a missing file stays FileNotFoundError."""
    import av

    try:
        yield
    except av.error.FFmpegError as exc:
        if isinstance(exc, OSError):
            raise
        raise DecodeFailed(f"{path}: not a video that can be decoded ({exc})") from exc


def _video_stream(container: av.container.InputContainer, path: Path) -> av.VideoStream:
    """The video track of ``path``'s ``container``, as the gateway picks it (:func:`service.render.video.video_stream`);
    DecodeFailed when it has none (audio only, cover art, data) or no decoder reads it (an unknown codec: no codec
    context), as the gateway refuses such a clip."""
    stream = video_stream(container)
    if stream is None:
        raise DecodeFailed(f"{path}: the file has no video stream")
    if stream.codec_context is None:
        raise DecodeFailed(f"{path}: the video's codec is unknown or unsupported")
    return stream


def clip_frame_count(path: Path) -> int | None:
    """The frame count the container of ``path`` declares (None: unknown)."""
    import av

    with _decoding(path), av.open(str(path)) as container:
        return int(_video_stream(container, path).frames) or None


def _decoded(container: av.container.InputContainer, stream: av.VideoStream, path: Path) -> Iterator[av.VideoFrame]:
    """``stream``'s frames; DecodeFailed at a packet read short (the file is cut inside it), or at the end of a
    Matroska/WebM file that ends inside an element (:func:`service.render.matroska.ends_inside`), as the gateway
    refuses such a clip (:meth:`service.engine.clips.ClipReader.frames`) — not the frames before the cut as the
    whole clip."""
    for packet in container.demux(stream):
        if packet.is_corrupt:
            raise DecodeFailed(f"{path}: the clip is cut short: its data ends inside a frame")
        yield from packet.decode()
    if "matroska" in container.format.name.split(","):
        with path.open("rb") as file:
            if ends_inside(file):
                raise DecodeFailed(f"{path}: the clip is cut short: its data ends inside a frame")


def clip_frames(path: Path) -> Iterator[SourceFrame]:
    """Decode every frame of ``path`` (any container PyAV reads); DecodeFailed when it is not a video or is cut
    short."""
    import av

    with _decoding(path), av.open(str(path)) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "SLICE"
        stream.codec_context.thread_count = 1
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        for index, frame in enumerate(_decoded(container, stream, path)):
            timestamp = frame.time if frame.time is not None else (index / fps if fps else float(index))
            yield SourceFrame(index, float(timestamp), upright_rgb(frame))


def camera_frames(device: int, max_frames: int | None = None) -> Iterator[SourceFrame]:
    """Frames from camera ``device`` (OpenCV), timestamped by the local clock from the first frame."""
    capture = cv2.VideoCapture(device)
    if not capture.isOpened():
        raise OSError(f"cannot open camera {device}")
    start = time.monotonic()
    try:
        index = 0
        while max_frames is None or index < max_frames:
            ok, bgr = capture.read()
            if not ok:
                break
            yield SourceFrame(index, time.monotonic() - start, np.ascontiguousarray(bgr[:, :, ::-1]))
            index += 1
    finally:
        capture.release()


def synthetic_image(index: int, width: int, height: int) -> RGBImage:
    """``(H, W, 3) uint8`` RGB: a textured background and a stick figure walking right."""
    rng = np.random.default_rng(index)
    image = rng.integers(0, 60, size=(height, width, 3), dtype=np.uint8)
    cx = (width // 4 + 2 * index) % width
    top, hip = height // 6, height // 2
    cv2.circle(image, (cx, top), max(2, height // 16), (230, 200, 180), -1)
    cv2.line(image, (cx, top), (cx, hip), (200, 220, 240), max(1, width // 24))
    swing = int(width // 8 * np.sin(index / 4.0))
    cv2.line(image, (cx, hip), (cx - swing, height - 4), (200, 220, 240), max(1, width // 32))
    cv2.line(image, (cx, hip), (cx + swing, height - 4), (200, 220, 240), max(1, width // 32))
    cv2.line(image, (cx - width // 6, height // 3), (cx + width // 6, height // 3), (220, 210, 200), 3)
    return image


SYNTHETIC_MAX_SIDE = 8191
"""The longest side of a synthetic clip: MPEG-4 Part 2 codes a frame's width and height in 13 bits."""


def write_synthetic_clip(path: Path, frames: int, width: int = 192, height: int = 256, fps: int = 25) -> Path:
    """Write an MPEG-4 clip of ``frames`` synthetic frames to ``path`` (``.mp4``); InvalidInput for a side past
    :data:`SYNTHETIC_MAX_SIDE`, which the encoder cannot write."""
    import av

    if max(width, height) > SYNTHETIC_MAX_SIDE:
        raise InvalidInput(
            f"a synthetic clip is at most {SYNTHETIC_MAX_SIDE} pixels a side (MPEG-4), not {width}x{height}"
        )

    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(synthetic_image(i, width, height), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def encode_frame(image: RGBImage, encoding: str = "png") -> bytes:
    """Encode ``(H, W, 3) uint8`` RGB as PNG (lossless) or JPEG."""
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    if encoding == "png":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    elif encoding == "jpeg":
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
    else:
        raise ValueError(f"unknown encoding {encoding!r} (png or jpeg)")
    if not ok:
        raise ValueError("frame could not be encoded")
    return bytes(buf)
