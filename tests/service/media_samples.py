"""Real encoded media for the gateway tests: images with OpenCV's encoders, clips with PyAV's."""

from __future__ import annotations

import io
import struct
import zlib
from fractions import Fraction

import av
import cv2
import numpy as np
import numpy.typing as npt

# (container format, codec) per clip kind the gateway accepts
CLIP_CODECS: dict[str, tuple[str, str]] = {
    "mp4": ("mp4", "mpeg4"),
    "mov": ("mov", "mpeg4"),
    "webm": ("webm", "libvpx"),
    "avi": ("avi", "mpeg4"),
}


def person_image(width: int = 192, height: int = 256, seed: int = 0) -> npt.NDArray[np.uint8]:
    """``(H, W, 3) uint8`` RGB: a noisy background with a bright stick figure (enough texture for a detector)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, size=(height, width, 3), dtype=np.uint8)
    cx = width // 2
    cv2.circle(image, (cx, height // 6), max(2, height // 16), (230, 200, 180), -1)
    cv2.line(image, (cx, height // 5), (cx, height // 2), (200, 220, 240), max(1, width // 24))
    cv2.line(image, (cx, height // 2), (cx - width // 6, height - 4), (200, 220, 240), max(1, width // 32))
    cv2.line(image, (cx, height // 2), (cx + width // 6, height - 4), (200, 220, 240), max(1, width // 32))
    cv2.line(image, (cx - width // 4, height // 3), (cx + width // 4, height // 3), (220, 210, 200), 3)
    return image


def encode_image(image: npt.NDArray[np.uint8], ext: str = ".jpg", params: list[int] | None = None) -> bytes:
    """Encode ``(H, W, 3) uint8`` RGB with OpenCV (``.jpg``, ``.png``, ``.webp``)."""
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(image[:, :, ::-1]), params or [])
    assert ok
    return bytes(buf)


def encode_clip(
    frames: int = 12,
    width: int = 96,
    height: int = 128,
    fps: int = 25,
    kind: str = "mp4",
    moving: bool = True,
    start_frame: int = 0,
) -> bytes:
    """A clip of ``frames`` frames (a figure drifting right when ``moving``) in container ``kind``; its
    timestamps start at ``start_frame / fps`` seconds (as in a clip cut from a longer recording)."""
    fmt, codec = CLIP_CODECS[kind]
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fps)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            image = person_image(width, height, seed=i)
            if moving:
                image = np.roll(image, i % max(1, width // 8), axis=1)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if start_frame:
                frame.pts, frame.time_base = start_frame + i, Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` but carries almost no data (a bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    ihdr_chunk = struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF)
    idat = zlib.compress(b"\x00" * 64)
    idat_chunk = struct.pack(">I", len(idat)) + b"IDAT" + idat + struct.pack(">I", zlib.crc32(b"IDAT" + idat))
    iend = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + ihdr_chunk + idat_chunk + iend


def png_bomb(side: int) -> bytes:
    """A real, valid, black ``side`` x ``side`` PNG: tiny on the wire, huge decoded."""
    return encode_image(np.zeros((side, side, 3), dtype=np.uint8), ".png", [cv2.IMWRITE_PNG_COMPRESSION, 9])


def rolling_clip(frames: int, width: int, height: int, fps: int = 30, kind: str = "mp4") -> bytes:
    """A long clip made fast: one figure image rolled sideways a pixel per frame (compresses very well)."""
    fmt, codec = CLIP_CODECS[kind]
    base = person_image(width, height)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fps)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            image = np.roll(base, i % width, axis=1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()
