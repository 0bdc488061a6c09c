"""The example inputs of the README and docs: ``python examples/make_examples.py [NAME ...]``.

Committed (small; ``python examples/make_examples.py`` redraws them):

- ``person.jpg``: 640×480, two drawn people at different depths (a synthetic scene: no photo licence involved).
- ``walk.mp4``: 2 s at 25 fps, 320×240 H.264 (MPEG-4 Part 2 where PyAV has no H.264 encoder), one person walking.
- ``keypoints.json``: 27 frames of one walking person's H36M-17 2D keypoints (pixels, with scores) in the
  body ``POST /v1/pose3d`` takes as JSON.

Generated on demand (named on the command line, e.g. ``python examples/make_examples.py long.mp4 two_people.png``;
git ignores them):

- ``long.mp4``: 60 s at 25 fps (1 500 frames), 320×240, the same walk for a job with a progress bar.
- ``two_people.png``: the scene of ``person.jpg``, 640×480, lossless.

Everything is drawn from :mod:`service.geometry.synthetic` (a fixed adult skeleton, metres, projected through a
pinhole camera), so the files are deterministic and small.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt

from service.geometry.camera import Intrinsics
from service.geometry.synthetic import REST_POSE, moving_sequence, project, rotation

HERE = Path(__file__).resolve().parent
BONES = [(0, 1), (1, 2), (2, 3), (0, 4), (4, 5), (5, 6), (0, 7), (7, 8), (8, 9), (9, 10), (8, 11), (11, 12),
         (12, 13), (8, 14), (14, 15), (15, 16)]  # fmt: skip
Image = npt.NDArray[np.uint8]


def _camera(width: int, height: int, fov_deg: float = 60.0) -> Intrinsics:
    f = width / 2 / math.tan(math.radians(fov_deg) / 2)
    return Intrinsics(fx=f, fy=f, cx=width / 2, cy=height / 2)


def _background(width: int, height: int, seed: int) -> Image:
    rng = np.random.default_rng(seed)
    image = np.empty((height, width, 3), np.uint8)
    image[:] = np.linspace(70, 150, height, dtype=np.uint8)[:, None, None]
    image[height * 2 // 3 :] = (90, 110, 80)  # floor
    noise = rng.integers(-12, 12, image.shape)
    return np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8)


def _draw_person(image: Image, points: npt.NDArray[np.float64], colour: tuple[int, int, int]) -> None:
    """Draw limbs and a head for ``points`` ``(17, 2)`` pixels (H36M-17) on ``image`` (RGB)."""
    scale = float(np.linalg.norm(points[10] - points[0]))
    thick = max(2, round(scale / 9))
    for a, b in BONES:
        pa, pb = (round(points[a][0]), round(points[a][1])), (round(points[b][0]), round(points[b][1]))
        cv2.line(image, pa, pb, colour, thick, cv2.LINE_AA)
    head = (round(points[10][0]), round(points[10][1]))
    cv2.circle(image, head, max(3, round(scale / 6)), (235, 200, 170), -1, cv2.LINE_AA)


def two_people(width: int = 640, height: int = 480) -> Image:
    k = _camera(width, height)
    image = _background(width, height, seed=1)
    people = [(rotation(0.5, 0.0, 0.0), np.array([0.9, 0.25, 5.5]), (60, 90, 200)),
              (rotation(-0.3, 0.0, 0.0), np.array([-0.6, 0.2, 3.0]), (200, 70, 60))]  # fmt: skip
    for r, t, colour in people:  # the farther one first
        _draw_person(image, project(REST_POSE @ r.T + t, k), colour)
    return image


def walking(frames: int, width: int = 320, height: int = 240) -> tuple[npt.NDArray[np.float64], Intrinsics]:
    """``(T, 17, 2)`` pixels of one walking person, and the camera."""
    k = _camera(width, height)
    seq = moving_sequence(np.random.default_rng(7), frames=frames, fps=25.0)
    return project(seq[:, :17] + seq[:, 17:18], k), k


def write_clip(path: Path, frames: int = 50, width: int = 320, height: int = 240) -> None:
    points, _ = walking(frames, width, height)
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=25)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            image = _background(width, height, seed=100 + i)
            _draw_person(image, points[i], (200, 70, 60))
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def keypoints_body(frames: int = 27, width: int = 320, height: int = 240) -> dict[str, object]:
    points, _ = walking(frames, width, height)
    scored = [[[round(float(x), 2), round(float(y), 2), 0.9] for x, y in frame] for frame in points]
    return {"keypoints_2d": scored, "image_size": [width, height], "joint_set": "h36m"}


def _encoded(suffix: str, image: Image, *params: int) -> bytes:
    ok, data = cv2.imencode(suffix, image[:, :, ::-1], list(params))
    assert ok
    return bytes(data)


LONG_CLIP_FRAMES = 1500  # 60 s at 25 fps
WRITERS: dict[str, Callable[[Path], object]] = {
    "person.jpg": lambda path: path.write_bytes(_encoded(".jpg", two_people(), cv2.IMWRITE_JPEG_QUALITY, 90)),
    "walk.mp4": write_clip,
    "keypoints.json": lambda path: path.write_text(json.dumps(keypoints_body()) + "\n"),
    "long.mp4": lambda path: write_clip(path, frames=LONG_CLIP_FRAMES),
    "two_people.png": lambda path: path.write_bytes(_encoded(".png", two_people())),
}
COMMITTED = ("person.jpg", "walk.mp4", "keypoints.json")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"any of {', '.join(WRITERS)} (default: {', '.join(COMMITTED)})"
    )
    names = parser.parse_args(argv).names or list(COMMITTED)
    if unknown := [name for name in names if name not in WRITERS]:
        parser.error(f"unknown example(s) {', '.join(unknown)}: choose from {', '.join(WRITERS)}")
    for name in names:
        WRITERS[name](HERE / name)
    print("wrote " + ", ".join(f"examples/{name}" for name in names))


if __name__ == "__main__":
    main()
