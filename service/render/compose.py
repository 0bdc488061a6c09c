"""Frames of a render: the 2D overlay beside the 3D panel; PNG for one frame, MP4 for a clip.

Inputs are result frames as JSON (``{"frame_index", "timestamp_s", "people": [...]}``, the REST shape).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

import cv2
import numpy as np
import numpy.typing as npt

from service.export.tracks import frame_time_s
from service.render.overlay import draw_overlay, stamp
from service.render.panel3d import Limits, Panel3D, fit_limits
from service.render.video import Mp4Writer

Image = npt.NDArray[np.uint8]
ResultFrame = Mapping[str, Any]

PANEL_SIZE = 480
MAX_FPS: Final = (2**31 - 1) / 1001
"""Frames per second an MP4 stream can be given at most: its rate is a ratio of 32-bit integers, and the writer's
denominator goes up to 1001 (about 2.1 million)."""


class RenderError(ValueError):
    """The results cannot be rendered as asked (timestamps too close together for a video's frame rate)."""


MAX_OVERLAY_ASPECT: Final = 4.0
"""The overlay is at most this many panel heights wide: a flatter image (the limits accept 8192 x 1) is scaled to
that width and padded above and below, instead of to the panel's height (3.9 million pixels wide)."""


def side_by_side(overlay: Image | None, panel: Image) -> Image:
    """``overlay`` scaled to the panel's height (at most :data:`MAX_OVERLAY_ASPECT` heights wide, centred on black
    when flatter), then the panel to its right; even width and height (for yuv420p video). Without an overlay:
    the panel alone."""
    if overlay is None:
        joined = panel
    else:
        h = panel.shape[0]
        scale = min(h / overlay.shape[0], MAX_OVERLAY_ASPECT * h / overlay.shape[1])
        w, sh = max(2, round(overlay.shape[1] * scale)), min(h, max(1, round(overlay.shape[0] * scale)))
        scaled = np.asarray(cv2.resize(overlay, (w, sh), interpolation=cv2.INTER_AREA), dtype=np.uint8)
        framed = np.zeros((h, w, 3), np.uint8)
        top = (h - sh) // 2
        framed[top : top + sh] = scaled
        joined = np.concatenate([framed, panel], axis=1)
    height, width = joined.shape[0] // 2 * 2, joined.shape[1] // 2 * 2
    return np.ascontiguousarray(joined[:height, :width])


RANDOM_STAMP = "RANDOM WEIGHTS - poses are meaningless"


def render_frame(
    frame: ResultFrame, image: Image | None, panel: Panel3D, limits: Limits | None = None, random: bool = False
) -> Image:
    """One composed frame: ``image (H, W, 3)`` RGB with the overlay (or none) beside the 3D panel (axes
    ``limits``, default fitted to this frame), stamped ``RANDOM WEIGHTS`` when ``random``."""
    people = frame["people"]
    overlay = draw_overlay(image, people) if image is not None else None
    composed = side_by_side(overlay, panel.draw(people, limits))
    return stamp(composed, RANDOM_STAMP) if random else composed


def render_png(frame: ResultFrame, image: Image | None, random: bool = False) -> bytes:
    """PNG bytes of :func:`render_frame` (``random``: the weights were random, and the picture says so)."""
    composed = render_frame(frame, image, Panel3D(PANEL_SIZE, PANEL_SIZE), random=random)
    ok, data = cv2.imencode(".png", composed[:, :, ::-1])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return bytes(data.tobytes())


@dataclass(frozen=True)
class VideoRender:
    frames: int
    width: int
    height: int
    fps: float
    codec: str


def render_mp4(
    frames: Sequence[ResultFrame],
    video: Iterable[tuple[int, Image]] | None,
    target: str | Path | BinaryIO,
    progress: Callable[[int], object] | None = None,
    random: bool = False,
) -> VideoRender:
    """An MP4 with one composed frame per result frame (in ``frame_index`` order), at the results' rate.

    ``video`` yields ``(source index, RGB image)``; each result is drawn over the source frame of its
    ``frame_index`` (frames without results are skipped). ``progress(n)`` is called after each frame. The 3D axes
    are fitted once to every frame's joints; ``random`` stamps every frame ``RANDOM WEIGHTS``."""
    ordered = sorted(frames, key=lambda f: int(f["frame_index"]))
    if not ordered:
        raise ValueError("there are no result frames to render")
    step_s = frame_time_s(ordered)
    fps = 1.0 / step_s
    if not fps <= MAX_FPS:
        raise RenderError(
            f"the results' timestamps are {step_s:.3g} s apart, {fps:.3g} frames per second; "
            f"an MP4 can be given at most {MAX_FPS:.3g}"
        )
    panel = Panel3D(PANEL_SIZE, PANEL_SIZE)
    limits = fit_limits([f["people"] for f in ordered])
    writer = Mp4Writer(target, fps)
    images = iter(video) if video is not None else None
    pending: tuple[int, Image] | None = None
    size: tuple[int, int] | None = None
    try:
        for frame in ordered:
            image: Image | None = None
            if images is not None:
                wanted = int(frame["frame_index"])
                while pending is None or pending[0] < wanted:
                    pending = next(images, None)
                    if pending is None:
                        raise ValueError(f"the video ends before frame {wanted} of the results")
                image = pending[1] if pending[0] == wanted else None
            composed = render_frame(frame, image, panel, limits, random)
            size = size or (composed.shape[1], composed.shape[0])
            if (composed.shape[1], composed.shape[0]) != size:
                composed = np.asarray(cv2.resize(composed, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
            writer.write(composed)
            if progress is not None:
                progress(1)
    finally:
        writer.close()
    assert size is not None
    return VideoRender(frames=writer.frames, width=size[0], height=size[1], fps=fps, codec=writer.codec)
