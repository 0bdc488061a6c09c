"""A clip whose file is cut short (an upload or copy that stopped part way): MP4, MOV and AVI demuxers read its last
frame short and say so (a corrupt packet), then end as at the clip's end — the clip was answered 200 with the frames
before the cut, as if that were all of it. It is now a 422 decode-failed, as a clip whose data is corrupt. FFmpeg's
Matroska/WebM demuxer drops the cut frame without a sign: there the file's element sizes tell (whole live-recorded
WebM, with no Duration, no Cues and clusters of unknown size as MediaRecorder writes them, still decodes)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from service.api.media import MediaKind
from service.config import LimitSettings
from service.engine.clips import ClipReader
from service.errors import DecodeFailed
from tests.service.rest_support import assert_problem, live_server, tiny_settings

pytestmark = pytest.mark.slow

FRAMES = 50


def mux_noise(container: av.container.OutputContainer, stream: av.VideoStream, frames: int = FRAMES) -> None:
    """``frames`` noisy frames of ``stream``'s size (seeded by their index), encoded and muxed, then the flush."""
    for i in range(frames):
        image = np.random.default_rng(i).integers(0, 255, (stream.height, stream.width, 3), dtype=np.uint8)
        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def noisy_clip(path: Path, codec: str, options: dict[str, str]) -> bytes:
    """``FRAMES`` noisy 64x48 ``codec`` frames in the file ``path`` (its container by its suffix), its bytes."""
    with av.open(str(path), "w", format=path.suffix[1:], options=options) as container:
        stream = container.add_stream(codec, rate=25)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        mux_noise(container, stream)
    return path.read_bytes()


def whole_clip(tmp_path: Path, fmt: str) -> bytes:
    """MPEG-4 frames in container ``fmt``; an MP4/MOV with its index first (faststart), so that a cut leaves the
    index whole and only the frame data short."""
    options = {"movflags": "faststart"} if fmt in ("mp4", "mov") else {}
    return noisy_clip(tmp_path / f"clip.{fmt}", "mpeg4", options)


EBML_SEGMENT, EBML_CLUSTER = b"\x18\x53\x80\x67", b"\x1f\x43\xb6\x75"


def whole_webm(tmp_path: Path, live: bool) -> bytes:
    """VP8 frames in WebM; ``live``: as a recorder writes it (no Duration, no Cues, a Segment of unknown size)."""
    return noisy_clip(tmp_path / "clip.webm", "libvpx", {"live": "1"} if live else {})


def media_recorder_like(data: bytes) -> bytes:
    """A live WebM with every Cluster's size rewritten as unknown (all ones), as browsers' MediaRecorder writes them:
    the Segment and its Clusters then end only where the file ends."""
    out, at = bytearray(data), 0
    while at < len(out):
        width = 9 - out[at].bit_length()  # an element ID's bytes
        size_at = at + width
        size_width = 9 - out[size_at].bit_length()
        size = int.from_bytes(out[size_at : size_at + size_width], "big") & ((1 << (7 * size_width)) - 1)
        element = bytes(out[at:size_at])
        if element == EBML_CLUSTER:
            out[size_at : size_at + size_width] = ((1 << (7 * size_width + 1)) - 1).to_bytes(size_width, "big")
        at = size_at + size_width + (0 if element in (EBML_SEGMENT, EBML_CLUSTER) else size)
    return bytes(out)


def webm_samples(tmp_path: Path) -> dict[str, bytes]:
    live = whole_webm(tmp_path, live=True)
    return {"plain": whole_webm(tmp_path, live=False), "live": live, "media-recorder": media_recorder_like(live)}


def decoded(data: bytes, kind: MediaKind) -> int:
    with ClipReader(io.BytesIO(data), kind, LimitSettings()) as reader:
        return sum(1 for _ in reader.frames())


@pytest.mark.parametrize("kind", [MediaKind.MP4, MediaKind.MOV, MediaKind.AVI])
def test_a_clip_cut_short_is_a_decode_failure(tmp_path: Path, kind: MediaKind) -> None:
    data = whole_clip(tmp_path, kind.value)
    assert decoded(data, kind) == FRAMES
    for fraction in (0.3, 0.5, 0.9):  # (an AVI cut only inside its index, at the end, keeps every frame)
        with pytest.raises(DecodeFailed, match="cut short"):
            decoded(data[: int(len(data) * fraction)], kind)


@pytest.mark.parametrize("sample", ["plain", "live", "media-recorder"])
def test_a_webm_cut_short_is_a_decode_failure(tmp_path: Path, sample: str) -> None:
    data = webm_samples(tmp_path)[sample]
    assert decoded(data, MediaKind.WEBM) == FRAMES
    if sample != "plain":  # as recorded: no duration stated anywhere
        with av.open(io.BytesIO(data), mode="r", format="matroska") as container:
            assert container.duration is None
    for fraction in (0.02, 0.3, 0.5, 0.9, 0.999):  # in the first block, then in later ones, then in the last
        with pytest.raises(DecodeFailed, match="cut short"):
            decoded(data[: int(len(data) * fraction)], MediaKind.WEBM)


@pytest.fixture(scope="module")
def http() -> Iterator[object]:
    with live_server(tiny_settings()) as live, live.client() as client:
        yield client


def test_a_posted_clip_cut_short_is_422_not_a_shorter_answer(http: object, tmp_path: Path) -> None:
    import httpx

    assert isinstance(http, httpx.Client)
    data = whole_clip(tmp_path, "mp4")
    whole = http.post("/v1/pose3d", files={"file": ("clip.mp4", data, "video/mp4")})
    assert whole.status_code == 200, whole.text
    assert len(whole.json()["frames"]) == FRAMES
    cut = http.post("/v1/pose3d", files={"file": ("clip.mp4", data[: len(data) // 2], "video/mp4")})
    assert "cut short" in assert_problem(cut, 422, "decode-failed")["detail"]


def test_a_posted_webm_cut_short_is_422_not_a_shorter_answer(http: object, tmp_path: Path) -> None:
    import httpx

    assert isinstance(http, httpx.Client)
    data = webm_samples(tmp_path)["media-recorder"]
    whole = http.post("/v1/pose3d", files={"file": ("clip.webm", data, "video/webm")})
    assert whole.status_code == 200, whole.text
    assert len(whole.json()["frames"]) == FRAMES
    cut = http.post("/v1/pose3d", files={"file": ("clip.webm", data[: len(data) // 2], "video/webm")})
    assert "cut short" in assert_problem(cut, 422, "decode-failed")["detail"]


@pytest.mark.parametrize("sample", ["mp4", "webm", "webm-media-recorder"])
def test_the_stream_client_refuses_a_clip_cut_short_as_the_gateway_does(tmp_path: Path, sample: str) -> None:
    from service.client.sources import clip_frames

    suffix = sample.split("-")[0]
    data = whole_clip(tmp_path, "mp4") if sample == "mp4" else webm_samples(tmp_path)[sample[5:] or "plain"]
    whole, cut = tmp_path / f"whole.{suffix}", tmp_path / f"cut.{suffix}"
    whole.write_bytes(data)
    cut.write_bytes(data[: len(data) // 2])
    assert sum(1 for _ in clip_frames(whole)) == FRAMES
    with pytest.raises(DecodeFailed, match="cut short"):
        for _ in clip_frames(cut):
            pass
