"""Media at the gateway: the container sniffed from its first bytes (never the client's content type), image sizes
and clip headers probed before any decoding (decompression bombs); the engine decodes what travels on, and
:func:`decode_image` is for what the gateway draws. Failures: 415 unsupported, 413 too large, 422 undecodable.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from enum import StrEnum

import cv2
import numpy as np

from service.config import LimitSettings
from service.engine.clips import ClipInfo, ClipReader, check_frame_size
from service.engine.types import ByteImage, ClipLimits
from service.errors import BadRequest, DecodeFailed, UnsupportedMediaType

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
_QUICKTIME_LEADING_ATOMS = frozenset({b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"})
SUPPORTED_MEDIA = "JPEG, PNG, WebP images; MP4, MOV, WebM, AVI clips"


def sniff_media(head: bytes) -> MediaKind:
    """Name the container from its first bytes (at least :data:`SNIFF_BYTES` when available); 415 otherwise."""
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


_EXIF_ORIENTATION = 0x0112
_EXIF_MAX_ENTRIES = 256
"""IFD0 entries read at most looking for the orientation (cameras write a dozen or two)."""


def _quarter_turned(tiff: bytes) -> bool:
    """Whether the EXIF data ``tiff`` (its TIFF header on) tags an orientation of 5 to 8: the image is shown turned
    a quarter, as OpenCV decodes it, so its width and height are the stored height and width."""
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return False
    (ifd,) = struct.unpack(order + "I", tiff[4:8])
    if ifd + 2 > len(tiff):
        return False
    (count,) = struct.unpack(order + "H", tiff[ifd : ifd + 2])
    for entry in range(ifd + 2, min(ifd + 2 + 12 * min(count, _EXIF_MAX_ENTRIES), len(tiff) - 9), 12):
        tag, kind = struct.unpack(order + "HH", tiff[entry : entry + 4])
        if tag == _EXIF_ORIENTATION:
            (value,) = struct.unpack(order + "H", tiff[entry + 8 : entry + 10]) if kind == 3 else (0,)  # a SHORT
            return 5 <= int(value) <= 8
    return False


def _shown(width: int, height: int, tiff: bytes | None) -> tuple[int, int]:
    """``(width, height)`` of the stored image as decoded: swapped when its EXIF ``tiff`` turns it a quarter."""
    return (height, width) if tiff is not None and _quarter_turned(tiff) else (width, height)


_PNG_MAX_CHUNKS = 4096
"""Chunks read at most looking for a PNG's eXIf chunk before its image data, or a WebP's EXIF chunk (encoders write
a few)."""


def _png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise DecodeFailed("PNG header is truncated or has no IHDR chunk")
    width, height = struct.unpack(">II", data[16:24])
    pos = 33  # the chunk after IHDR (its 13 bytes and CRC)
    for _ in range(_PNG_MAX_CHUNKS):
        if pos + 8 > len(data) or data[pos + 4 : pos + 8] in (b"IDAT", b"IEND"):
            break
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        if data[pos + 4 : pos + 8] == b"eXIf":
            return _shown(int(width), int(height), data[pos + 8 : pos + 8 + length])
        pos += 12 + length
    return int(width), int(height)


_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_JPEG_MAX_MARKERS = 4096
"""Markers (fill bytes included) read before the frame header at most. Encoders write tens; 4096 segments of up to
64 KiB exceed the default body limit, so only a file of thousands of tiny segments is refused — one crafted to keep
this loop, which runs on the event loop, busy for seconds."""


def _jpeg_size(data: bytes) -> tuple[int, int]:
    pos = 2
    n = len(data)
    exif: bytes | None = None  # the first Exif segment's TIFF data
    for _ in range(_JPEG_MAX_MARKERS):
        if pos + 4 > n:
            break
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
        if marker == 0xE1 and exif is None and data[pos + 4 : pos + 10] == b"Exif\x00\x00":
            exif = data[pos + 10 : pos + 2 + length]
        if marker in _JPEG_SOF:
            if pos + 9 > n:
                break
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return _shown(int(width), int(height), exif)
        pos += 2 + length
    else:
        raise DecodeFailed(f"JPEG has more than {_JPEG_MAX_MARKERS} markers before its frame header")
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
        width, height = int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
        return _shown(width, height, _webp_exif(data)) if data[20] & 0x08 else (width, height)  # the EXIF flag
    raise DecodeFailed("WebP header is truncated or of an unknown kind")


def _webp_exif(data: bytes) -> bytes | None:
    """The TIFF data of an extended WebP's EXIF chunk (after its image data: each chunk before it is skipped by its
    size, at most :data:`_PNG_MAX_CHUNKS` of them), if any."""
    pos = 12
    for _ in range(_PNG_MAX_CHUNKS):
        if pos + 8 > len(data):
            break
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        if data[pos : pos + 4] == b"EXIF":
            tiff = data[pos + 8 : pos + 8 + size]
            return tiff[6:] if tiff.startswith(b"Exif\x00\x00") else tiff
        pos += 8 + size + (size & 1)
    return None


_HEADER_PROBES = {MediaKind.JPEG: _jpeg_size, MediaKind.PNG: _png_size, MediaKind.WEBP: _webp_size}


def probe_image_size(data: bytes, kind: MediaKind) -> tuple[int, int]:
    """``(width, height)`` in pixels read from the image header only (no pixel is decoded)."""
    return _HEADER_PROBES[kind](data)


def validate_image(data: bytes, limits: LimitSettings) -> tuple[MediaKind, int, int]:
    """``(kind, width, height)`` of an encoded image from its headers only (no pixel decoded). Raises
    UnsupportedMediaType (415) for a clip or anything else, PayloadTooLarge (413) past the pixel and side limits,
    DecodeFailed (422) for a header without a size."""
    kind = sniff_media(data[:SNIFF_BYTES])
    if not kind.is_image:
        raise UnsupportedMediaType(f"expected an image (JPEG, PNG, WebP), got a {kind.value} clip")
    width, height = probe_image_size(data, kind)
    check_frame_size(width, height, limits)
    return kind, width, height


def decode_image(data: bytes, limits: LimitSettings) -> ByteImage:
    """``(H, W, 3) uint8`` RGB of a JPEG/PNG/WebP (EXIF orientation applied) after :func:`validate_image`; raises
    as that does, and DecodeFailed (422) for corrupt data."""
    kind, _, _ = validate_image(data, limits)
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3:
        raise DecodeFailed(f"the {kind.value} image could not be decoded")
    check_frame_size(int(bgr.shape[1]), int(bgr.shape[0]), limits)
    rgb: ByteImage = np.ascontiguousarray(bgr[:, :, ::-1])
    return rgb


def clip_limits(limits: LimitSettings) -> ClipLimits:
    """The limits a clip travels with to the engine that decodes it (checked there again while decoding)."""
    return ClipLimits(limits.max_clip_frames, limits.max_clip_seconds, limits.max_frame_side, limits.max_image_pixels)


def probe_clip(data: bytes, kind: MediaKind, limits: LimitSettings, every_nth: int = 1) -> ClipInfo:
    """Blocking: check a clip from its container header (size, duration, frame count against ``limits``)
    without decoding a frame; the engine decodes it (and checks again, since headers can lie).
    Raises PayloadTooLarge (413) past the limits, DecodeFailed (422) for an unreadable container."""
    with ClipReader(io.BytesIO(data), kind, limits, every_nth) as reader:
        return reader.info


@dataclass(frozen=True)
class Media:
    """Encoded media as a client sent it, whatever the transport: its kind (sniffed from the first bytes, never
    the client's word) and its bytes."""

    kind: MediaKind
    data: bytes

    @classmethod
    def of(cls, data: bytes, what: str = "'file'") -> Media:
        """``data`` sniffed; empty → 400, unknown container → 415."""
        if not data:
            raise BadRequest(f"{what} is empty")
        return cls(sniff_media(data[:SNIFF_BYTES]), data)


@dataclass(frozen=True)
class EncodedImage:
    """An image as the client sent it (JPEG/PNG/WebP bytes), checked from its headers; decoded by the engine."""

    data: bytes
    width: int
    height: int


def checked_image(data: bytes, limits: LimitSettings) -> EncodedImage:
    """``data`` validated from its headers (:func:`validate_image`); nothing is decoded."""
    _, width, height = validate_image(data, limits)
    return EncodedImage(data, width, height)
