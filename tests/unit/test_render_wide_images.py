"""A render of a very wide, very flat image (the limits accept 8192 x 1): the overlay was scaled to the 3D panel's
height whatever its width, so an 8192 x 1 image became a 3.9-million-pixel-wide frame (5.6 GB, which OpenCV
refuses: a 500, or the gateway's memory gone). Its width is now bounded; the picture keeps its aspect."""

from __future__ import annotations

import numpy as np

from service.render.compose import MAX_OVERLAY_ASPECT, PANEL_SIZE, render_png, side_by_side
from tests.unit.render_samples import decode_png, pose_frames

PANEL = np.full((PANEL_SIZE, PANEL_SIZE, 3), 255, np.uint8)


def test_a_flat_image_is_scaled_to_a_bounded_width() -> None:
    flat = np.full((64, 8192, 3), 90, np.uint8)  # 128:1, drawn 61 920 pixels wide before
    composed = side_by_side(flat, PANEL)
    overlay_w = composed.shape[1] - PANEL_SIZE
    assert composed.shape[0] == PANEL_SIZE
    assert overlay_w <= MAX_OVERLAY_ASPECT * PANEL_SIZE
    rows = np.flatnonzero((composed[:, :overlay_w] == 90).all(axis=(1, 2)))
    assert abs(overlay_w / len(rows) - 8192 / 64) < 2  # the image keeps its aspect (padded above and below)


def test_an_8192_by_1_image_renders() -> None:
    png = render_png(pose_frames(1, (8192, 1))[0], np.full((1, 8192, 3), 90, np.uint8))
    assert decode_png(png).shape[1] <= MAX_OVERLAY_ASPECT * PANEL_SIZE + PANEL_SIZE


def test_ordinary_images_fill_the_panel_height_as_before() -> None:
    for width, height in ((320, 240), (1920, 1080), (1080, 1920), (3840, 1080)):
        composed = side_by_side(np.zeros((height, width, 3), np.uint8), PANEL)
        assert composed.shape == (PANEL_SIZE, (round(width * PANEL_SIZE / height) + PANEL_SIZE) // 2 * 2, 3)
