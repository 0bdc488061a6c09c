"""A clip whose first video track is not its video — a one-frame still ahead of it (a cover or title track), or cover
art attached as a picture — was read as that still: one frame answered for the whole clip. Every decoder of clips
(the engine, the stream client, renders) now reads the clip's video track: not an attached picture, the longest."""

from __future__ import annotations

import io
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from service.api.media import MediaKind
from service.config import LimitSettings
from service.engine.clips import ClipReader
from service.errors import DecodeFailed
from tests.service.rest_support import assert_problem, live_server, tiny_settings
from tests.service.test_truncated_clips import mux_noise

pytestmark = pytest.mark.slow

FRAMES = 20


def still_then_video() -> bytes:
    """Matroska: track 1 a 32x32 MJPEG still of one frame, track 2 ``FRAMES`` noisy 64x48 MPEG-4 frames."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as container:
        still = container.add_stream("mjpeg", rate=25)
        video = container.add_stream("mpeg4", rate=25)
        assert isinstance(still, av.VideoStream)
        assert isinstance(video, av.VideoStream)
        still.width, still.height, still.pix_fmt = 32, 32, "yuvj420p"
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        for packet in still.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")):
            container.mux(packet)
        for packet in still.encode():
            container.mux(packet)
        mux_noise(container, video, FRAMES)
    return buf.getvalue()


def sound_with_cover() -> bytes:
    """Matroska: a second of silence (FLAC) with a JPEG cover attached (FFmpeg reads it as a video stream, an
    attached picture)."""
    ok, jpeg = cv2.imencode(".jpg", np.zeros((32, 32, 3), np.uint8))
    assert ok
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as container:
        container.add_attachment("cover.jpg", "image/jpeg", bytes(jpeg))
        sound = container.add_stream("flac", rate=8000)
        assert isinstance(sound, av.AudioStream)
        sound.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 8000), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        for packet in sound.encode(frame):
            container.mux(packet)
        for packet in sound.encode():
            container.mux(packet)
    return buf.getvalue()


def test_the_engine_reads_the_video_not_a_still_track_ahead_of_it() -> None:
    data = still_then_video()
    with av.open(io.BytesIO(data), format="matroska") as container:
        assert len(container.streams.video) == 2  # the still first
        assert container.streams.video[0].width == 32
    with ClipReader(io.BytesIO(data), MediaKind.WEBM, LimitSettings()) as reader:
        assert (reader.info.width, reader.info.height) == (64, 48)
        shapes = [frame.image.shape for frame in reader.frames()]
    assert shapes == [(48, 64, 3)] * FRAMES


def test_the_stream_client_and_renders_read_the_same_track(tmp_path: Path) -> None:
    from service.client.sources import clip_frames
    from service.render.video import clip_frames as render_frames

    path = tmp_path / "still_then_video.mkv"
    path.write_bytes(still_then_video())
    assert [frame.image.shape for frame in clip_frames(path)] == [(48, 64, 3)] * FRAMES
    assert [image.shape for _, image in render_frames(path)] == [(48, 64, 3)] * FRAMES


def test_cover_art_is_not_a_clip(tmp_path: Path) -> None:
    from service.client.sources import clip_frames

    data = sound_with_cover()
    with av.open(io.BytesIO(data), format="matroska") as container:
        assert [s.disposition & av.stream.Disposition.attached_pic for s in container.streams.video] != [0]
    with pytest.raises(DecodeFailed, match="no video stream"):
        ClipReader(io.BytesIO(data), MediaKind.WEBM, LimitSettings())
    path = tmp_path / "sound.mka"
    path.write_bytes(data)
    with pytest.raises(DecodeFailed, match="no video stream"):
        next(clip_frames(path))


def test_a_posted_clip_is_answered_for_its_video_and_cover_art_alone_is_422() -> None:
    with live_server(tiny_settings()) as live, live.client() as http:
        answer = http.post("/v1/pose3d", files={"file": ("clip.mkv", still_then_video(), "video/x-matroska")})
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["frames"]) == FRAMES
        cover = http.post("/v1/pose3d", files={"file": ("sound.mka", sound_with_cover(), "audio/x-matroska")})
        assert "no video stream" in assert_problem(cover, 422, "decode-failed")["detail"]
