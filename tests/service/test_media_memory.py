"""Streaming decode keeps memory flat: neither the decoder nor the gateway holds a clip's frames."""

from __future__ import annotations

import io
import os
import tracemalloc
from collections.abc import Iterator

import numpy as np
import pytest

from service.api.media import MediaKind
from service.config import EngineSettings, LimitSettings
from service.engine.clips import ClipReader, DecodedFrame
from tests.service.media_samples import rolling_clip
from tests.service.rest_support import live_server, tiny_settings

pytestmark = pytest.mark.slow

_PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE


def test_decoding_thousands_of_frames_keeps_rss_flat() -> None:
    frames, width, height = 3000, 160, 120
    clip = rolling_clip(frames, width, height)
    frame_bytes = width * height * 3
    limits = LimitSettings(max_clip_frames=frames, max_clip_seconds=3600)
    samples: list[int] = []
    checksum = 0
    with ClipReader(io.BytesIO(clip), MediaKind.MP4, limits) as reader:
        for frame in reader.frames():
            checksum += int(frame.image[0, 0, 0])
            if frame.index % 100 == 0:
                samples.append(_rss_bytes())
    assert len(samples) == frames // 100
    settled = samples[2]  # after the decoder's own buffers exist
    growth = max(samples) - settled
    held = frames * frame_bytes  # what keeping every frame would cost: 173 MB
    print(f"decoded {frames} frames of {width}x{height}: RSS growth after warm-up {growth / 1e6:.1f} MB "
          f"(holding them would need {held / 1e6:.0f} MB)")  # fmt: skip
    assert growth < 0.1 * held


@pytest.fixture
def traced_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    """PyAV's decoded arrays are views of FFmpeg's buffers, which tracemalloc does not see: copied into numpy's
    own (traced) memory as they are decoded, every decoded frame the gateway or the engine still holds counts
    in the traced peak."""
    decode = ClipReader.frames

    def traced(reader: ClipReader) -> Iterator[DecodedFrame]:
        for frame in decode(reader):
            yield DecodedFrame(frame.index, frame.timestamp_s, frame.image.copy())

    monkeypatch.setattr(ClipReader, "frames", traced)


@pytest.mark.usefixtures("traced_frames")
def test_a_posted_clip_streams_through_the_gateway_without_holding_frames() -> None:
    frames, width, height = 48, 480, 360
    clip = rolling_clip(frames, width, height)
    settings = tiny_settings(
        limits=LimitSettings(max_clip_frames=1000, max_clip_seconds=600),
        engine=EngineSettings(max_batch_size=8, max_delay_ms=1.0, request_timeout_s=300),
    )
    with live_server(settings) as live, live.client(timeout_s=300) as client:
        warm = client.post("/v1/pose3d", files={"file": ("w.mp4", rolling_clip(10, width, height), "video/mp4")})
        assert warm.status_code == 200, warm.text
        tracemalloc.start()
        try:
            response = client.post("/v1/pose3d", files={"file": ("c.mp4", clip, "video/mp4")}, data={"model": "capf"})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert response.status_code == 200, response.text
    assert len(response.json()["frames"]) == frames
    held = frames * width * height * 3  # 37 MB of decoded frames
    print(f"{frames} frames of {width}x{height} through the gateway: traced peak {peak / 1e6:.1f} MB "
          f"(holding the decoded clip would need {held / 1e6:.0f} MB)")  # fmt: skip
    assert peak < 0.3 * held
    poses = np.asarray([f["people"][0]["keypoints_3d"] for f in response.json()["frames"]])
    assert np.isfinite(poses).all()
