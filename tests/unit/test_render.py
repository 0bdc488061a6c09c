"""Renders checked as images: non-empty panels, skeleton pixels at the projected joints, MP4 decoded back."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import numpy.typing as npt
import pytest

from service.cli import main
from service.render.compose import PANEL_SIZE, render_mp4, render_png
from service.render.overlay import draw_overlay, plan_person, track_colour
from service.render.panel3d import Panel3D, fit_limits, plotted_points
from service.render.video import Mp4Writer
from tests.unit.render_samples import decode_png, grey_frame, pose_frames

SIZE = (320, 240)


def near_colour(image: npt.NDArray[np.uint8], colour: tuple[int, int, int], tol: int = 40) -> npt.NDArray[np.bool_]:
    return np.asarray(np.abs(image.astype(np.int32) - np.asarray(colour)).max(axis=-1) <= tol)


def test_png_has_the_overlay_at_the_projected_joints_and_a_drawn_3d_panel(tmp_path: Path) -> None:
    frame = pose_frames(1, SIZE)[0]
    png = render_png(frame, grey_frame(SIZE))
    (tmp_path / "render.png").write_bytes(png)
    image = decode_png(png)
    scale = PANEL_SIZE / SIZE[1]
    overlay_w = round(SIZE[0] * scale)
    assert image.shape == (PANEL_SIZE, overlay_w + PANEL_SIZE, 3)
    overlay, panel = image[:, :overlay_w], image[:, overlay_w:]
    for person in frame["people"]:
        colour = track_colour(person["track_id"])
        drawn = near_colour(overlay, colour) | near_colour(overlay, (255, 255, 255), 10)
        for x, y in np.asarray(person["keypoints_2d"]) * scale:  # every joint has skeleton pixels around it
            patch = drawn[int(y) - 4 : int(y) + 5, int(x) - 4 : int(x) + 5]
            assert patch.mean() > 0.3, (person["track_id"], x, y)
        assert near_colour(panel, colour, 30).sum() > 300  # the person's bones in the 3D panel
    background = overlay[5:40, 5:40]
    assert (np.abs(background.astype(int) - 60) <= 3).all()  # the input shows through away from the skeleton
    assert (panel > 250).all(axis=-1).mean() > 0.5  # a white panel with axes, not an empty or black image


def test_png_without_a_source_image_is_the_3d_panel_alone() -> None:
    png = render_png(pose_frames(1, SIZE)[0], None)
    image = decode_png(png)
    assert image.shape == (PANEL_SIZE, PANEL_SIZE, 3)


def test_mp4_frame_count_size_and_codec_decoded_back(tmp_path: Path) -> None:
    frames = pose_frames(6, SIZE, fps=10.0)
    source = ((i, grey_frame(SIZE, level=40 + 10 * i)) for i in range(8))
    out = tmp_path / "render.mp4"
    steps: list[int] = []
    info = render_mp4(frames, source, out, progress=steps.append)
    assert info.frames == 6
    assert sum(steps) == 6
    scale = PANEL_SIZE / SIZE[1]
    with av.open(str(out), mode="r") as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == ("h264" if info.codec in ("libx264", "h264") else "mpeg4")
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 6
    assert decoded[0].shape == (PANEL_SIZE, round(SIZE[0] * scale) + PANEL_SIZE, 3)
    assert abs(float(decoded[1][10:30, 10:30].mean()) - 50) < 6  # frame 1 over source frame 1 (grey level 50)
    assert abs(float(decoded[5][10:30, 10:30].mean()) - 90) < 6
    assert info.fps == 10.0


def test_mp4_to_a_file_object_without_video() -> None:
    buffer = io.BytesIO()
    info = render_mp4(pose_frames(3, SIZE), None, buffer)
    buffer.seek(0)
    with av.open(buffer, mode="r") as container:
        assert sum(1 for _ in container.decode(video=0)) == 3
    assert (info.width, info.height) == (PANEL_SIZE, PANEL_SIZE)


def test_render_command_png_and_mp4_with_progress(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frames = pose_frames(5, SIZE)
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(f) + "\n" for f in frames))
    clip = tmp_path / "clip.mp4"
    writer = Mp4Writer(clip, 10.0)
    for i in range(5):
        writer.write(grey_frame(SIZE, level=40 + 10 * i))
    writer.close()
    assert main(["render", str(results), "--video", str(clip), "-o", str(tmp_path / "out.mp4")]) == 0
    err = capsys.readouterr().err
    assert "5/5" in err  # the progress bar
    assert "5 frames" in err
    assert main(["render", str(results), "--frame", "2", "-o", str(tmp_path / "out.png")]) == 0
    assert decode_png((tmp_path / "out.png").read_bytes()).shape == (PANEL_SIZE, PANEL_SIZE, 3)
    assert main(["render", str(results), "-o", str(tmp_path / "out.gif")]) == 1
    assert "png or .mp4" in capsys.readouterr().err


def junk_people(rng: np.random.Generator, size: tuple[int, int]) -> list[dict[str, Any]]:
    """What random weights give: 2D joints up to two image sizes off the image, 3D joints metres apart."""
    w, h = size
    return [
        {
            "track_id": t,
            "box": [float(v) for v in rng.uniform(-w, 2 * w, 4)],
            "box_score": 1.0,
            "keypoints_2d": np.stack([rng.uniform(-2 * w, 3 * w, 17), rng.uniform(-2 * h, 3 * h, 17)], 1).tolist(),
            "keypoint_scores": [0.5] * 17,
            "keypoints_3d": rng.normal(0.0, 3.0, (17, 3)).tolist(),
        }
        for t in range(3)
    ]


@pytest.mark.parametrize("seed", range(5))
def test_junk_joints_are_drawn_inside_the_image_and_the_axes(seed: int, tmp_path: Path) -> None:
    rng = np.random.default_rng(seed)
    people = junk_people(rng, SIZE)
    for person in people:
        plan = plan_person(person, *SIZE, scale=1)
        assert plan is not None
        for ((x1, y1), (x2, y2)), _ in plan.bones:
            assert 0 <= min(x1, x2) <= max(x1, x2) <= SIZE[0] - 1
            assert 0 <= min(y1, y2) <= max(y1, y2) <= SIZE[1] - 1
        for x, y in plan.marks:
            assert x in (0, SIZE[0] - 1) or y in (0, SIZE[1] - 1)
        (tw, _), _ = cv2.getTextSize(plan.label, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        assert plan.label_at[0] >= 0
        assert plan.label_at[0] + tw <= SIZE[0]
    limits = fit_limits([people])
    for points in plotted_points(people):
        for axis, (low, high) in enumerate(limits):
            assert low <= points[:, axis].min()
            assert points[:, axis].max() <= high
    overlay = draw_overlay(grey_frame(SIZE), people)
    assert overlay.shape == (SIZE[1], SIZE[0], 3)
    png = render_png({"frame_index": 0, "people": people}, grey_frame(SIZE), random=True)
    (tmp_path / f"junk{seed}.png").write_bytes(png)


def test_the_panel_axes_hold_every_drawn_point() -> None:
    """Read back from matplotlib: the axes' own limits contain every joint drawn, with equal sides."""
    rng = np.random.default_rng(7)
    people = junk_people(rng, SIZE)
    panel = Panel3D(240, 240)
    panel.draw(people)
    ax = panel.axes
    drawn = [ax.get_xlim(), ax.get_ylim(), ax.get_zlim()]
    for points in plotted_points(people):
        for axis, (low, high) in enumerate(drawn):
            assert low <= points[:, axis].min()
            assert points[:, axis].max() <= high
    assert np.allclose([h - lo for lo, h in drawn], drawn[0][1] - drawn[0][0])


def test_a_clip_fits_its_axes_once_over_all_frames() -> None:
    frames = pose_frames(4, SIZE)
    frames[2]["people"][0]["keypoints_3d"] = (np.asarray(frames[2]["people"][0]["keypoints_3d"]) * 5).tolist()
    limits = fit_limits([f["people"] for f in frames])
    assert limits[0][1] - limits[0][0] > 5.0  # frame 2's big skeleton sets the cube of every frame
    assert fit_limits([]) == ((-0.5, 0.5), (-0.5, 0.5), (-0.5, 0.5))


def test_render_command_stamps_documents_that_say_random(tmp_path: Path) -> None:
    frame = pose_frames(1, SIZE)[0]
    document = {"model": {"name": "capf", "weights": "random", "random_weights": True}, "frames": [frame]}
    results = tmp_path / "r.json"
    results.write_text(json.dumps(document))
    assert main(["render", str(results), "-o", str(tmp_path / "r.png")]) == 0
    plain = tmp_path / "p.jsonl"
    plain.write_text(json.dumps(frame) + "\n")
    assert main(["render", str(plain), "-o", str(tmp_path / "p.png")]) == 0
    assert main(["render", str(plain), "--random-weights", "-o", str(tmp_path / "s.png")]) == 0

    def red_band(path: Path) -> float:
        band = decode_png(path.read_bytes())[:12, :120].reshape(-1, 3).astype(int)
        return float(((band[:, 0] > 150) & (band[:, 1] < 60)).mean())

    assert red_band(tmp_path / "r.png") > 0.5
    assert red_band(tmp_path / "s.png") > 0.5
    assert red_band(tmp_path / "p.png") == 0.0
