"""Root translation from 2D keypoints and a root-relative pose: accuracy on synthetic scenes, FOV errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from service.geometry.camera import (
    DEFAULT_FOCAL_WARNING,
    DEFAULT_FOV_DEG,
    CameraSpec,
    Intrinsics,
    RobustFit,
    person_warnings,
    solve_translation,
)
from service.geometry.synthetic import CAMERA, IMAGE_SIZE, project, random_pose, random_scene


def _solve_scene(noise_px: float, seed: int, k: Intrinsics = CAMERA) -> tuple[np.ndarray, np.ndarray]:
    scene = random_scene(np.random.default_rng(seed), people=4, noise_px=noise_px)
    found = np.stack(
        [
            solve_translation(scene.poses[p].astype(np.float32), scene.keypoints[p], scene.scores[p], k)
            for p in range(len(scene.poses))
        ]
    )
    return found, scene.translations


@pytest.mark.parametrize(("noise_px", "tolerance"), [(0.0, 0.01), (1.0, 0.03), (2.0, 0.03)])
def test_translation_within_tolerance_of_depth_and_depth_order_kept(noise_px: float, tolerance: float) -> None:
    worst = 0.0
    for seed in range(60):
        found, true = _solve_scene(noise_px, seed)
        worst = max(worst, float(np.max(np.linalg.norm(found - true, axis=1) / true[:, 2])))
        assert np.array_equal(np.argsort(found[:, 2]), np.argsort(true[:, 2])), f"depth order wrong, seed {seed}"
    assert worst < tolerance


def test_exact_keypoints_without_outliers_give_exact_translation() -> None:
    rng = np.random.default_rng(3)
    pose, t = random_pose(rng), np.array([0.4, -0.2, 6.5])
    kp = project(pose + t, CAMERA)
    found = solve_translation(pose.astype(np.float32), kp, np.ones(17), CAMERA)
    np.testing.assert_allclose(found, t, rtol=0, atol=1e-5)


def test_outlier_joints_are_down_weighted_by_the_robust_passes() -> None:
    rng = np.random.default_rng(4)
    pose, t = random_pose(rng), np.array([-0.5, 0.1, 8.0])
    kp = project(pose + t, CAMERA)
    kp[[3, 13, 16]] += [[80.0, -40.0], [-60.0, 70.0], [90.0, 90.0]]  # confident but wrong joints
    plain = solve_translation(pose.astype(np.float32), kp, np.ones(17), CAMERA, robust=None)
    no_irls = solve_translation(pose.astype(np.float32), kp, np.ones(17), CAMERA, robust=RobustFit(iterations=0))
    assert abs(plain[2] - 8.0) < 0.05
    assert abs(no_irls[2] - 8.0) > 1.0


def test_fov_off_by_ten_percent_scales_depth_by_the_documented_factor_and_warns() -> None:
    """A scene shot with a FOV 10% narrower than the default, solved with the default (no intrinsics given):
    depths scale by tan(true/2) / tan(default/2), and the spec says it is a default (the warning's trigger)."""
    true_fov = DEFAULT_FOV_DEG / 1.1
    true_k = Intrinsics.from_fov(true_fov, IMAGE_SIZE)
    spec = CameraSpec()
    assert spec.is_default
    guess = spec.resolve(IMAGE_SIZE)
    factor = math.tan(math.radians(true_fov) / 2) / math.tan(math.radians(DEFAULT_FOV_DEG) / 2)
    for seed in range(10):
        scene = random_scene(np.random.default_rng(seed), people=3, noise_px=0.0, low_score_joints=0, k=true_k)
        for p in range(3):
            t = solve_translation(scene.poses[p].astype(np.float32), scene.keypoints[p], scene.scores[p], guess)
            assert t[2] / scene.translations[p, 2] == pytest.approx(factor, rel=0.01)
    assert "tan(true_fov/2) / tan(assumed_fov/2)" in DEFAULT_FOCAL_WARNING


def test_camera_spec_resolves_and_validates() -> None:
    assert CameraSpec(fx=1000, fy=1001, cx=320, cy=240).resolve((640, 480)) == Intrinsics(1000, 1001, 320, 240)
    k = CameraSpec(fov_deg=90).resolve((640, 480))
    assert k.fx == pytest.approx(320.0)
    assert (k.cx, k.cy) == (320.0, 240.0)
    assert CameraSpec().resolve((640, 480)).fx == pytest.approx(320 / math.tan(math.radians(DEFAULT_FOV_DEG / 2)))
    with pytest.raises(ValueError, match="all of fx"):
        CameraSpec(fx=1000.0)
    with pytest.raises(ValueError, match="not both"):
        CameraSpec(fx=1.0, fy=1.0, cx=1.0, cy=1.0, fov_deg=50.0)
    with pytest.raises(ValueError, match="fov_deg"):
        CameraSpec(fov_deg=0.5)
    with pytest.raises(ValueError, match="positive"):
        CameraSpec(fx=-1.0, fy=1.0, cx=1.0, cy=1.0)


def test_too_few_joints_is_an_error_and_warnings_flag_weak_or_truncated_people() -> None:
    pose = random_pose(np.random.default_rng(5))
    kp = project(pose + np.array([0.0, 0.0, 5.0]), CAMERA)
    scores = np.zeros(17)
    scores[0] = 1.0
    with pytest.raises(ValueError, match="at least 2 joints"):
        solve_translation(pose.astype(np.float32), kp, scores, CAMERA)
    scores[:4] = 1.0
    assert any("joints have score" in w for w in person_warnings(kp, scores, IMAGE_SIZE, 5.0))
    edge = kp.copy()
    edge[3] = [IMAGE_SIZE[0] - 1.0, 700.0]
    assert any("border" in w for w in person_warnings(edge, np.ones(17), IMAGE_SIZE, 5.0))
    assert person_warnings(kp, np.ones(17), IMAGE_SIZE, 5.0) == []
