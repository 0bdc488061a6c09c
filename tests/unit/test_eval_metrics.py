"""The evaluation's metrics and tables on hand-computed cases (known answers, no engine)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from service.evaluation import metrics as m
from service.evaluation.aggregate import Average, Scores, score, tabulate
from service.evaluation.runner import Prediction
from service.evaluation.sequences import ACTIONS, PCK_JOINTS, TO_H36M, load_3dhp, qrot, world_to_camera


def _pose(t: int = 5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pose = rng.normal(0, 0.3, (t, 17, 3))
    return pose - pose[:, :1]


def _rotation(seed: int = 1) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return np.asarray(q * np.sign(np.linalg.det(q)), dtype=np.float64)


def test_a_pose_against_itself_is_zero_for_every_metric() -> None:
    gt = _pose()
    for fn in (m.mpjpe, m.p_mpjpe, m.n_mpjpe, m.mpjve):
        assert np.allclose(fn(gt, gt), 0.0, atol=1e-9)
    assert np.all(m.pck(gt, gt) == 1.0)
    assert np.all(m.auc(gt, gt) == 1.0)


def test_a_known_per_joint_offset_gives_exactly_that_mpjpe() -> None:
    gt = _pose()
    offset = np.array([0.03, -0.04, 0.0])  # 50 mm on every joint
    assert np.allclose(m.mpjpe(gt + offset, gt), 0.05)
    varying = np.zeros((17, 3))
    varying[:, 2] = np.arange(17) / 1000.0  # joint j off by j mm
    assert np.allclose(m.mpjpe(gt + varying, gt), np.arange(17).mean() / 1000.0)


def test_rotated_scaled_translated_gives_p_mpjpe_zero_while_mpjpe_is_not() -> None:
    gt = _pose()
    pred = 1.3 * gt @ _rotation().T + np.array([0.2, -0.1, 0.5])
    assert np.allclose(m.p_mpjpe(pred, gt), 0.0, atol=1e-9)
    assert np.all(m.mpjpe(pred, gt) > 0.1)
    # N-MPJPE (VideoPose3D's n_mpjpe) removes the scale only: a scaled prediction scores 0, MPJPE does not
    scaled = 0.8 * gt
    assert np.allclose(m.n_mpjpe(scaled, gt), 0.0, atol=1e-12)
    assert np.all(m.mpjpe(scaled, gt) > 0.01)
    assert np.allclose(m.n_mpjpe(1.3 * gt @ _rotation().T, gt), m.n_mpjpe(gt @ _rotation().T, gt))


def test_a_reflection_is_not_aligned_away() -> None:
    gt = _pose()
    mirrored = gt * np.array([-1.0, 1.0, 1.0])
    assert np.all(m.p_mpjpe(mirrored, gt) > 1e-3)


def test_mpjve_of_a_constant_error_is_zero_and_of_a_drift_its_speed() -> None:
    gt = _pose(t=8)
    constant = gt + np.array([0.0, 0.07, 0.0])
    assert np.allclose(m.mpjve(constant, gt), 0.0)
    assert np.allclose(m.mpjpe(constant, gt), 0.07)
    drift = gt + np.arange(8)[:, None, None] * np.array([0.0, 0.0, 0.002])  # 2 mm more error each frame
    assert np.allclose(m.mpjve(drift, gt), 0.002)


def _scores(group: str, errors_mm: list[float]) -> Scores:
    errors = np.array(errors_mm) / 1000.0
    return Scores(group, {"mpjpe": errors}, np.full(len(errors), np.nan), errors, 0)


def test_the_action_table_weights_frames_within_an_action_and_actions_equally() -> None:
    """P-STMO: an action's entry is the mean over all its frames (recordings and cameras pooled); the average is
    the mean of the action entries."""
    scores = [_scores("Walking", [10, 20]), _scores("Eating", [100]), _scores("Walking", [60])]
    table = tabulate(scores, ACTIONS, Average.ACTIONS)
    assert table.groups == ["Eating", "Walking"]  # the papers' column order
    assert table.rows["mpjpe"]["Walking"] == pytest.approx(30.0)  # (10 + 20 + 60) / 3, not (15 + 60) / 2
    assert table.rows["mpjpe"]["Eating"] == pytest.approx(100.0)
    assert table.average["mpjpe"] == pytest.approx(65.0)  # (30 + 100) / 2, not 190 / 4
    assert table.frames == {"Eating": 1, "Walking": 3}
    pooled = tabulate(scores, (), Average.FRAMES)
    assert pooled.average["mpjpe"] == pytest.approx(47.5)


def test_3dhp_pck_auc_and_mpjpe_on_a_hand_computed_case(tmp_path: Path) -> None:
    """7 scored joints off by 92 mm, 7 by 192 mm, spine and head by 1 m (not scored by PCK): PCK@150 = 50 %,
    AUC = 50 % x 12/31 (thresholds 95..150 mm of 0, 5, ..., 150), MPJPE = (7 x 92 + 7 x 192 + 2 x 1000) / 17 mm."""
    gt = _pose(t=3, seed=4) * 1000.0  # mm, Human3.6M order
    offsets = np.zeros((17, 3))
    scored = list(PCK_JOINTS)
    assert len(scored) == 14
    assert 0 not in scored
    assert 7 not in scored
    assert 9 not in scored
    for k, joint in enumerate(scored):
        offsets[joint, 0] = 92.0 if k < 7 else 192.0
    offsets[7, 1] = offsets[9, 1] = 1000.0
    pred = (gt + offsets) / 1000.0
    to_3dhp = np.argsort(TO_H36M)  # write the file in MPI-INF-3DHP order, as P-STMO's npz has it
    root_shift = np.array([100.0, 200.0, 4000.0])  # absolute camera-frame positions in the file
    data = {"TS1": {"data_3d": (gt + root_shift)[:, to_3dhp].astype(np.float32),
                    "data_2d": np.zeros((3, 17, 2), np.float32), "valid": np.array([1, 1, 0])}}  # fmt: skip
    np.savez(tmp_path / "data_test_3dhp.npz", data=np.array(data, dtype=object))
    (seq,) = load_3dhp(tmp_path / "data_test_3dhp.npz")
    assert np.allclose(seq.gt_3d, gt / 1000.0, atol=1e-6)
    assert seq.image_size == (2048, 2048)
    nan = np.full((3, 17, 3), np.nan)
    result = score(seq, Prediction(pred, nan, nan[..., :2]), PCK_JOINTS)
    table = tabulate([result], (), Average.FRAMES)
    assert table.frames == {"TS1": 2}  # the invalid frame is not scored
    assert table.average["pck150"] == pytest.approx(50.0)
    assert table.average["auc"] == pytest.approx(50.0 * 12 / 31)
    assert table.average["mpjpe"] == pytest.approx((7 * 92 + 7 * 192 + 2000) / 17, rel=1e-6)


def test_world_to_camera_is_videopose3d_s_quaternion_transform() -> None:
    angle = math.pi / 2  # a camera turned 90 degrees about world z, at (1, 2, 3) m
    q = np.array([math.cos(angle / 2), 0.0, 0.0, math.sin(angle / 2)])
    assert np.allclose(qrot(q, np.array([1.0, 0.0, 0.0])), [0.0, 1.0, 0.0])
    point = np.array([[1.0, 3.0, 3.0]], np.float32)  # 1 m along world y from the camera centre
    assert np.allclose(world_to_camera(point, q.tolist(), [1000.0, 2000.0, 3000.0]), [[1.0, 0.0, 0.0]], atol=1e-6)
