"""Media handling at the gateway: sniff the container by magic bytes, probe image sizes from headers
before decoding (decompression bombs), decode images, and stream-decode clips frame by frame.

Nothing here trusts the client's content type: the first bytes decide. Every failure is a
``service.errors`` exception (415 unsupported, 413 too large, 422 undecodable).
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import BinaryIO

import cv2
import numpy as np

from service.config import LimitSettings
from service.engine.types import ByteImage
from service.errors import DecodeFailed, PayloadTooLarge, UnsupportedMediaType

SNIFF_BYTES = 32
"""How many leading bytes :func:`sniff_media` needs."""


class MediaKind(StrEnum):
    JPEG = "jpeg"
    PNG = "png"
    WEBP = "webp"
    MP4 = "mp4"
    MOV = "mov"
    WEBM = "webm"
    AVI = "avi"

    @property
    def is_image(self) -> bool:
        return self in _IMAGE_KINDS


_IMAGE_KINDS = frozenset({MediaKind.JPEG, MediaKind.PNG, MediaKind.WEBP})
_DEMUXERS = {MediaKind.MP4: "mov", MediaKind.MOV: "mov", MediaKind.WEBM: "matroska", MediaKind.AVI: "avi"}
"""The FFmpeg demuxer forced for each sniffed clip kind (never auto-probed from client data)."""
_QUICKTIME_LEADING_ATOMS = frozenset({b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"})
SUPPORTED_MEDIA = "JPEG, PNG, WebP images; MP4, MOV, WebM, AVI clips"


def sniff_media(head: bytes) -> MediaKind:
    """Name the container from its first bytes (at least :data:`SNIFF_BYTES` when available).

    Raises UnsupportedMediaType (415) for anything else, whatever the client's content type said.
    """
    if head.startswith(b"\xff\xd8\xff"):
        return MediaKind.JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return MediaKind.PNG
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return MediaKind.WEBP
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return MediaKind.AVI
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: WebM (and Matroska, which the same decoder reads)
        return MediaKind.WEBM
    if head[4:8] == b"ftyp":
        return MediaKind.MOV if head[8:12] == b"qt  " else MediaKind.MP4
    if head[4:8] in _QUICKTIME_LEADING_ATOMS:
        return MediaKind.MOV
    raise UnsupportedMediaType(f"file is not a supported image or clip ({SUPPORTED_MEDIA}); detected by content")


# ---------------------------------------------------------------- image header probes


def _png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise DecodeFailed("PNG header is truncated or has no IHDR chunk")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


def _jpeg_size(data: bytes) -> tuple[int, int]:
    pos = 2
    n = len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            raise DecodeFailed("JPEG marker structure is corrupt")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if length < 2:
            raise DecodeFailed("JPEG segment length is invalid")
        if marker in _JPEG_SOF:
            if pos + 9 > n:
                break
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return int(width), int(height)
        pos += 2 + length
    raise DecodeFailed("JPEG has no frame header (SOF) before its image data")


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        if data[23:26] != b"\x9d\x01\x2a":
            raise DecodeFailed("WebP VP8 start code missing")
        width, height = struct.unpack("<HH", data[26:30])
        return int(width & 0x3FFF), int(height & 0x3FFF)
    if chunk == b"VP8L" and len(data) >= 25:
        if data[20] != 0x2F:
            raise DecodeFailed("WebP VP8L signature missing")
        (bits,) = struct.unpack("<I", data[21:25])
        return int((bits & 0x3FFF) + 1), int(((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    raise DecodeFailed("WebP header is truncated or of an unknown kind")


_HEADER_PROBES = {MediaKind.JPEG: _jpeg_size, MediaKind.PNG: _png_size, MediaKind.WEBP: _webp_size}


def probe_image_size(data: bytes, kind: MediaKind) -> tuple[int, int]:
    """``(width, height)`` in pixels read from the image header only (no pixel is decoded)."""
    return _HEADER_PROBES[kind](data)


def check_frame_size(width: int, height: int, limits: LimitSettings, what: str = "image") -> None:
    """Raise PayloadTooLarge (413) past the pixel / side limits, DecodeFailed (422) for empty sizes."""
    if width <= 0 or height <= 0:
        raise DecodeFailed(f"{what} has an empty size {width}x{height}")
    if max(width, height) > limits.max_frame_side:
        raise PayloadTooLarge(f"{what} is {width}x{height}; the longest side may be at most {limits.max_frame_side}")
    if width * height > limits.max_image_pixels:
        raise PayloadTooLarge(
            f"{what} is {width}x{height} = {width * height} pixels; at most {limits.max_image_pixels} are accepted"
        )


def validate_image(data: bytes, limits: LimitSettings) -> tuple[MediaKind, int, int]:
    """Check an encoded image from its headers only (no pixel decoded): ``(kind, width, height)``.

    What the gateway does before forwarding the encoded bytes (the engine's decode stage decodes them).
    Raises UnsupportedMediaType (415) for a clip or anything else, PayloadTooLarge (413) past the pixel and
    side limits (decompression bombs), DecodeFailed (422) for a header without a size.
    """
    kind = sniff_media(data[:SNIFF_BYTES])
    if not kind.is_image:
        raise UnsupportedMediaType(f"expected an image (JPEG, PNG, WebP), got a {kind.value} clip")
    width, height = probe_image_size(data, kind)
    check_frame_size(width, height, limits)
    return kind, width, height


def decode_image(data: bytes, limits: LimitSettings) -> ByteImage:
    """Decode a JPEG/PNG/WebP after :func:`validate_image`.

    Returns ``(H, W, 3) uint8`` RGB (EXIF orientation applied). Raises as :func:`validate_image`, and
    DecodeFailed (422) for corrupt data.
    """
    kind, _, _ = validate_image(data, limits)
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3:
        raise DecodeFailed(f"the {kind.value} image could not be decoded")
    check_frame_size(int(bgr.shape[1]), int(bgr.shape[0]), limits)
    rgb: ByteImage = np.ascontiguousarray(bgr[:, :, ::-1])
    return rgb


# ---------------------------------------------------------------- clips


@dataclass(frozen=True)
class DecodedFrame:
    """One decoded clip frame: ``index`` counts decoded frames of the source from 0 (before
    subsampling); ``timestamp_s`` is the container's presentation time; ``image`` ``(H, W, 3) uint8`` RGB."""

    index: int
    timestamp_s: float | None
    image: ByteImage


@dataclass(frozen=True)
class ClipInfo:
    """What the container header says (any of it may be unknown)."""

    kind: MediaKind
    width: int
    height: int
    fps: float | None
    duration_s: float | None
    frame_count: int | None


def _clip_failed(exc: Exception) -> DecodeFailed:
    return DecodeFailed(f"the clip could not be decoded: {exc}")


class ClipReader:
    """Streams a clip's frames from a seekable file object with PyAV, one decoded frame at a time.

    Never holds more than the decoder's own few frames: memory does not grow with clip length.
    Limits (frame size, duration, frame count) are checked from the header first, then again while
    decoding, since headers can lie. Use as a context manager; iteration is blocking (run it in a thread).
    """

    def __init__(self, file: BinaryIO, kind: MediaKind, limits: LimitSettings, every_nth: int = 1) -> None:
        import av

        if every_nth < 1:
            raise ValueError("every_nth must be >= 1")
        if kind.is_image:
            raise ValueError(f"{kind.value} is an image, not a clip")
        self._limits = limits
        self._every_nth = every_nth
        self._lock = threading.Lock()
        self._closed = False
        try:
            self._container = av.open(file, mode="r", format=_DEMUXERS[kind], metadata_errors="ignore")
        except (av.FFmpegError, ValueError, OSError) as exc:
            raise _clip_failed(exc) from exc
        try:
            self.info = self._probe(kind)
        except BaseException:
            self.close()
            raise

    def _probe(self, kind: MediaKind) -> ClipInfo:
        if not self._container.streams.video:
            raise DecodeFailed("the clip has no video stream")
        stream = self._container.streams.video[0]
        if stream.codec_context is None:
            raise DecodeFailed("the clip's video codec is unknown or unsupported")
        stream.thread_type = "SLICE"
        stream.codec_context.thread_count = 1
        self._stream = stream
        width, height = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
        if width and height:
            check_frame_size(width, height, self._limits, "clip frame")
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        duration_s: float | None = None
        if stream.duration is not None and stream.time_base is not None:
            duration_s = float(stream.duration * stream.time_base)
        elif self._container.duration is not None:  # e.g. Matroska: the end time, counted from the start time
            duration_s = max(0, self._container.duration - (self._container.start_time or 0)) / 1_000_000
        frame_count = int(stream.frames) if stream.frames else None
        info = ClipInfo(kind, width, height, fps, duration_s, frame_count)
        self._check_extent(duration_s or 0.0, 0 if frame_count is None else -(-frame_count // self._every_nth))
        return info

    def _check_extent(self, seconds: float, frames_kept: int) -> None:
        if seconds > self._limits.max_clip_seconds:
            raise PayloadTooLarge(f"clip lasts {seconds:.1f} s; at most {self._limits.max_clip_seconds:g} s accepted")
        if frames_kept > self._limits.max_clip_frames:
            raise PayloadTooLarge(
                f"clip has more than {self._limits.max_clip_frames} frames to process"
                f" (every_nth={self._every_nth}); raise every_nth or cut the clip"
            )

    def frames(self) -> Iterator[DecodedFrame]:
        """Yield every ``every_nth`` decoded frame in decoding order. Each step may run on any thread
        (e.g. ``asyncio.to_thread(next, it)``); :meth:`close` waits for a step in progress, so closing
        from another thread after a cancelled step is safe."""
        import av

        decoder = self._container.decode(self._stream)
        decoded = 0
        kept = 0
        fps = self.info.fps
        first_timestamp: float | None = None  # clips cut from a recording keep its timestamps: measure from here
        while True:
            with self._lock:
                if self._closed:
                    return
                try:
                    frame = next(decoder, None)
                    if frame is None:
                        break
                    index = decoded
                    decoded += 1
                    if index % self._every_nth:
                        continue
                    timestamp = frame.time
                    if timestamp is None and fps:
                        timestamp = index / fps
                    kept += 1
                    if timestamp is not None and first_timestamp is None:
                        first_timestamp = float(timestamp)
                    elapsed = 0.0 if timestamp is None else float(timestamp) - (first_timestamp or 0.0)
                    self._check_extent(elapsed, kept)
                    check_frame_size(int(frame.width), int(frame.height), self._limits, "clip frame")
                    image = np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
                except (av.FFmpegError, ValueError, OSError) as exc:
                    raise _clip_failed(exc) from exc
            yield DecodedFrame(index=index, timestamp_s=None if timestamp is None else float(timestamp), image=image)
        if kept == 0:
            raise DecodeFailed("the clip has no decodable video frame")

    def close(self) -> None:
        """Release the decoder (waits for a decoding step running on another thread)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._container.close()

    def __enter__(self) -> ClipReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
