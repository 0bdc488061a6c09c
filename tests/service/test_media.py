"""Media sniffing, header-only size probes (decompression bombs), image decoding, streamed clip decoding."""

from __future__ import annotations

import io
import tracemalloc

import cv2
import numpy as np
import pytest

from service.api.media import MediaKind, decode_image, probe_image_size, sniff_media
from service.config import LimitSettings
from service.engine.clips import ClipReader
from service.errors import DecodeFailed, PayloadTooLarge, UnsupportedMediaType
from tests.service.media_samples import (
    CLIP_CODECS,
    encode_clip,
    encode_image,
    person_image,
    png_bomb,
    png_header_only,
)

IMAGE = person_image(37, 53)  # width 37, height 53


@pytest.mark.parametrize(
    ("ext", "params", "kind"),
    [
        (".jpg", [], MediaKind.JPEG),
        (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1], MediaKind.JPEG),
        (".png", [], MediaKind.PNG),
        (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80], MediaKind.WEBP),  # VP8 (lossy)
        (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101], MediaKind.WEBP),  # VP8L (lossless)
    ],
)
def test_images_are_sniffed_probed_and_decoded(ext: str, params: list[int], kind: MediaKind) -> None:
    data = encode_image(IMAGE, ext, params)
    assert sniff_media(data[:32]) is kind
    assert probe_image_size(data, kind) == (37, 53)
    decoded = decode_image(data, LimitSettings())
    assert decoded.shape == (53, 37, 3)
    assert decoded.dtype == np.uint8
    if ext == ".png" or 101 in params:  # lossless: exact RGB order preserved
        np.testing.assert_array_equal(decoded, IMAGE)


def test_webp_with_alpha_uses_the_extended_header() -> None:
    rgba = np.dstack([IMAGE, np.full(IMAGE.shape[:2], 200, np.uint8)])
    data = encode_image(rgba, ".webp", [cv2.IMWRITE_WEBP_QUALITY, 90])
    assert data[12:16] == b"VP8X"
    assert probe_image_size(data, MediaKind.WEBP) == (37, 53)
    assert decode_image(data, LimitSettings()).shape == (53, 37, 3)


@pytest.mark.parametrize("kind", sorted(CLIP_CODECS))
def test_clips_are_sniffed_by_content(kind: str) -> None:
    data = encode_clip(frames=3, width=32, height=32, kind=kind)
    assert sniff_media(data[:32]) is MediaKind(kind)
    assert not MediaKind(kind).is_image


@pytest.mark.parametrize(
    "data",
    [b"", b"GIF89a" + b"\0" * 40, b"%PDF-1.7\n", b"BM" + b"\0" * 60, b"RIFF\0\0\0\0WAVEfmt ", b"hello world"],
)
def test_anything_else_is_unsupported(data: bytes) -> None:
    with pytest.raises(UnsupportedMediaType):
        sniff_media(data[:32])


def test_a_clip_is_not_an_image() -> None:
    with pytest.raises(UnsupportedMediaType):
        decode_image(encode_clip(frames=2, width=32, height=32), LimitSettings())


def test_bomb_header_is_refused_before_decoding() -> None:
    data = png_header_only(100_000, 100_000)
    assert probe_image_size(data, MediaKind.PNG) == (100_000, 100_000)
    with pytest.raises(PayloadTooLarge, match="longest side"):
        decode_image(data, LimitSettings())


def test_real_png_bomb_is_refused_without_allocating_it() -> None:
    data = png_bomb(3000)  # 9 Mpx, ~30 KB on the wire, 27 MB decoded
    assert len(data) < 200_000
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLarge, match="pixels"):
            decode_image(data, LimitSettings(max_image_pixels=1_000_000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000


@pytest.mark.parametrize(
    "data",
    [
        encode_image(IMAGE, ".jpg")[:40],  # header cut before the frame header
        encode_image(IMAGE, ".png")[:20],  # IHDR cut
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 200,  # markers but no image
        encode_image(IMAGE, ".webp")[:24],
    ],
)
def test_corrupt_images_fail_to_decode(data: bytes) -> None:
    with pytest.raises(DecodeFailed):
        decode_image(data, LimitSettings())


def test_truncated_pixel_data_fails_or_decodes_but_never_crashes() -> None:
    data = encode_image(person_image(64, 64), ".png")
    cut = data[: len(data) // 2]
    try:
        image = decode_image(cut, LimitSettings())
    except DecodeFailed:
        return
    assert image.shape == (64, 64, 3)


@pytest.mark.parametrize("kind", sorted(CLIP_CODECS))
def test_clip_frames_stream_with_container_timestamps(kind: str) -> None:
    data = encode_clip(frames=10, width=48, height=32, fps=20, kind=kind)
    with ClipReader(io.BytesIO(data), MediaKind(kind), LimitSettings(), every_nth=3) as reader:
        assert (reader.info.width, reader.info.height) == (48, 32)
        assert reader.info.fps == pytest.approx(20.0)
        frames = list(reader.frames())
    assert [f.index for f in frames] == [0, 3, 6, 9]
    assert [f.timestamp_s for f in frames] == pytest.approx([0.0, 0.15, 0.3, 0.45])
    assert all(f.image.shape == (32, 48, 3) and f.image.dtype == np.uint8 for f in frames)


def test_clip_limits_frames_duration_and_size() -> None:
    data = encode_clip(frames=30, width=48, height=32, fps=10)
    with pytest.raises(PayloadTooLarge, match="frames"):
        ClipReader(io.BytesIO(data), MediaKind.MP4, LimitSettings(max_clip_frames=10))
    with ClipReader(io.BytesIO(data), MediaKind.MP4, LimitSettings(max_clip_frames=10), every_nth=3) as reader:
        assert len(list(reader.frames())) == 10  # subsampling brings it under the limit
    with pytest.raises(PayloadTooLarge, match="lasts"):
        ClipReader(io.BytesIO(data), MediaKind.MP4, LimitSettings(max_clip_seconds=1.0))
    with pytest.raises(PayloadTooLarge, match="longest side"):
        ClipReader(io.BytesIO(data), MediaKind.MP4, LimitSettings(max_frame_side=40))


@pytest.mark.parametrize("kind", ["mp4", "mov", "webm"])  # AVI has no timestamps: an offset is empty frames
def test_clip_cut_from_a_recording_is_measured_from_its_first_frame(kind: str) -> None:
    data = encode_clip(frames=5, width=32, height=32, fps=25, kind=kind, start_frame=2500)  # 0.2 s from 100 s
    limits = LimitSettings(max_clip_seconds=60.0)
    with ClipReader(io.BytesIO(data), MediaKind(kind), limits) as reader:
        frames = list(reader.frames())
    assert [f.timestamp_s for f in frames] == pytest.approx([100.0, 100.04, 100.08, 100.12, 100.16])
    long_cut = encode_clip(frames=30, width=32, height=32, fps=10, kind=kind, start_frame=1000)  # 3 s from 100 s
    too_long = LimitSettings(max_clip_seconds=1.0)
    with (
        pytest.raises(PayloadTooLarge, match="lasts"),
        ClipReader(io.BytesIO(long_cut), MediaKind(kind), too_long) as cut,
    ):
        list(cut.frames())


def test_garbage_after_a_clip_header_fails_to_decode() -> None:
    data = encode_clip(frames=5, width=32, height=32, kind="mp4")
    broken = data[:48] + bytes(len(data) - 48)
    with pytest.raises(DecodeFailed), ClipReader(io.BytesIO(broken), MediaKind.MP4, LimitSettings()) as reader:
        list(reader.frames())


def test_close_from_another_thread_after_a_step_is_safe() -> None:
    data = encode_clip(frames=6, width=32, height=32)
    reader = ClipReader(io.BytesIO(data), MediaKind.MP4, LimitSettings())
    frames = reader.frames()
    assert next(frames).index == 0
    reader.close()
    assert next(frames, None) is None


def test_clip_with_an_unknown_video_codec_is_a_decode_failure() -> None:
    """Found by the fuzz test: a container whose video stream has no decoder (no codec context)."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = buffer.getvalue()
    assert b"FMP4" in data
    with pytest.raises(DecodeFailed, match="codec"):
        ClipReader(io.BytesIO(data.replace(b"FMP4", b"QQQQ")), MediaKind.AVI, LimitSettings())
