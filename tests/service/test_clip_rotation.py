"""A clip whose display matrix turns it (a phone's portrait clip is stored sideways, with a rotation to show it
upright) is decoded as it is shown, by every decoder: the engine's, the stream client's and the renders'. Before,
all three read the stored frame, so a person filmed upright was lifted lying on their side."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest

from service.api.media import MediaKind
from service.client.sources import clip_frames as client_frames
from service.config import LimitSettings
from service.engine.clips import ClipReader
from service.render.video import clip_frames as render_frames


def sideways_clip(rotation: int) -> bytes:
    """Three 64x32 frames whose top half is white, stored with a display rotation of ``rotation`` degrees
    (counterclockwise, as FFmpeg's display matrix counts)."""
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.set_display_rotation(rotation)
        image = np.zeros((32, 64, 3), np.uint8)
        image[:16] = 255
        for _ in range(3):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return out.getvalue()


@pytest.mark.parametrize(("rotation", "white"), [(90, "left"), (-90, "right"), (180, "bottom"), (0, "top")])
def test_every_decoder_shows_the_clip_upright(tmp_path: Path, rotation: int, white: str) -> None:
    data = sideways_clip(rotation)
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    with ClipReader(io.BytesIO(data), MediaKind.MP4, LimitSettings()) as reader:
        engine = [f.image for f in reader.frames()]
    client = [f.image for f in client_frames(path)]
    render = [image for _, image in render_frames(path)]
    assert len(engine) == len(client) == len(render) == 3
    for image in engine:
        assert image.shape == ((64, 32, 3) if rotation in (90, -90) else (32, 64, 3))
        half = {"left": image[:, :16], "right": image[:, -16:], "top": image[:16], "bottom": image[-16:]}
        assert half[white].mean() > 200, (white, [round(float(h.mean())) for h in half.values()])
    for a, b, c in zip(engine, client, render, strict=True):
        np.testing.assert_array_equal(a, b)  # clip == stream: both sides see the same pixels
        np.testing.assert_array_equal(a, c)
