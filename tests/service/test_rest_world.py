"""Poses in the camera frame and smoothing through the REST API (a real gateway, tiny random-weight models)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from service.geometry.camera import DEFAULT_FOCAL_WARNING
from service.geometry.synthetic import CAMERA, moving_sequence, project
from tests.service.media_samples import encode_image, person_image
from tests.service.rest_support import assert_problem, live_server, tiny_settings

pytestmark = pytest.mark.slow

WIDTH, HEIGHT = 320, 256
BOXES = [[10.0, 8.0, 150.0, 250.0], [170.0, 40.0, 300.0, 220.0]]


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with live_server(tiny_settings()) as live, live.client() as http:
        yield http


def _two_people_image() -> dict[str, Any]:
    image = np.concatenate([person_image(160, HEIGHT, seed=1), person_image(160, HEIGHT, seed=2)], axis=1)
    return {"file": ("two.png", encode_image(image, ".png"), "image/png")}


def _check_placed(person: dict[str, Any]) -> None:
    rel, cam = np.asarray(person["keypoints_3d"]), np.asarray(person["keypoints_3d_camera"])
    assert cam.shape == (17, 3)
    t = cam - rel
    np.testing.assert_allclose(t, np.broadcast_to(t[0], t.shape), atol=1e-4)  # one translation for all joints
    assert person["distance_m"] == pytest.approx(float(np.linalg.norm(t[0])), rel=1e-4)


def test_two_person_image_gives_both_people_in_one_camera_frame(client: httpx.Client) -> None:
    data = {"boxes": str(BOXES), "fx": "400", "fy": "400", "cx": "160", "cy": "128"}
    response = client.post("/v1/pose3d", files=_two_people_image(), data=data)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["coordinate_frame"].startswith("camera")
    (frame,) = body["frames"]
    assert len(frame["people"]) == 2
    for person in frame["people"]:
        _check_placed(person)
    assert DEFAULT_FOCAL_WARNING not in body["warnings"]
    default = client.post("/v1/pose3d", files=_two_people_image(), data={"boxes": str(BOXES)}).json()
    assert DEFAULT_FOCAL_WARNING in default["warnings"]
    assert len(default["frames"][0]["people"]) == 2
    for person in default["frames"][0]["people"]:
        _check_placed(person)


def _keypoint_sequence(frames: int) -> list[list[list[float]]]:
    """A walking person's H36M keypoints (pixels, scores 0.9) in a 1920×1080 image."""
    seq = moving_sequence(np.random.default_rng(0), frames)
    px = project(seq[:, :17] + seq[:, 17:18], CAMERA)
    return [[[float(x), float(y), 0.9] for x, y in frame] for frame in px]


@pytest.mark.parametrize(
    ("smoothing", "params"), [("none", None), ("one_euro", {"min_cutoff_hz": 2.0}), ("savgol", {"half_window": 3})]
)
def test_stream_equals_clip_for_each_smoothing_mode(
    client: httpx.Client, smoothing: str, params: dict[str, float] | None
) -> None:
    frames, times = _keypoint_sequence(16), [i / 30 for i in range(16)]
    world = {"fov_deg": 65.0, "smoothing": smoothing, "smoothing_params": params}
    clip = client.post(
        "/v1/pose3d",
        json={"keypoints_2d": frames, "image_size": [1920, 1080], "joint_set": "h36m", "model": "pstmo-9",
              "timestamps_s": times, **world},
    )  # fmt: skip
    assert clip.status_code == 200, clip.text
    opened = client.post("/v1/streams", json={"model": "pstmo-9", **world})
    assert opened.status_code == 201, opened.text
    sid = opened.json()["stream_id"]
    streamed: list[dict[str, Any]] = []
    first_result_at = None
    for i, kp in enumerate(frames):
        frame = {"keypoints_2d": kp, "image_size": [1920, 1080], "joint_set": "h36m", "frame_index": i, "timestamp_s": times[i]}  # fmt: skip
        got = client.post(f"/v1/streams/{sid}/frames", json=frame).json()["frames"]
        if got and first_result_at is None:
            first_result_at = i
        streamed += got
    streamed += client.delete(f"/v1/streams/{sid}").json()["frames"]
    assert first_result_at == 4 + (3 if smoothing == "savgol" else 0)  # the model's lag, plus the half window
    whole = clip.json()["frames"]
    assert [f["frame_index"] for f in streamed] == [f["frame_index"] for f in whole] == list(range(16))
    for a, b in zip(streamed, whole, strict=True):
        (pa,), (pb,) = a["people"], b["people"]
        _check_placed(pa)
        for key in ("keypoints_3d", "keypoints_3d_camera"):
            np.testing.assert_allclose(pa[key], pb[key], atol=1e-4)


def test_smoothing_changes_the_poses_and_bad_options_are_refused(client: httpx.Client) -> None:
    body = {"keypoints_2d": _keypoint_sequence(12), "image_size": [1920, 1080], "joint_set": "h36m", "model": "pstmo-9"}
    plain = client.post("/v1/pose3d", json=body).json()["frames"]
    smooth = client.post("/v1/pose3d", json={**body, "smoothing": "savgol"}).json()["frames"]
    assert not np.allclose(plain[5]["people"][0]["keypoints_3d"], smooth[5]["people"][0]["keypoints_3d"])
    assert_problem(client.post("/v1/pose3d", json={**body, "fx": 500.0}), 422)
    assert_problem(client.post("/v1/pose3d", json={**body, "fov_deg": 200.0}), 422)
    assert_problem(client.post("/v1/pose3d", json={**body, "smoothing": "kalman"}), 422)
    assert_problem(client.post("/v1/pose3d", json={**body, "smoothing_params": {"window": 3}}), 422)
    assert_problem(client.post("/v1/pose3d", json={**body, "smoothing_params": {"half_window": 1.5}}), 422)
    nan = '{"half_window": NaN}'
    form = {"boxes": str(BOXES), "smoothing": "savgol", "smoothing_params": nan}
    assert_problem(client.post("/v1/pose3d", files=_two_people_image(), data=form), 422)
    form = {"boxes": str(BOXES), "smoothing": "sometimes"}
    assert_problem(client.post("/v1/pose3d", files=_two_people_image(), data=form), 422)
    form = {"boxes": str(BOXES), "smoothing_params": "[1]"}
    assert_problem(client.post("/v1/pose3d", files=_two_people_image(), data=form), 400)
