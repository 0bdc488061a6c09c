from __future__ import annotations

import numpy as np
import torch

from model import skeleton as sk


def test_joint_sets_have_17_names() -> None:
    assert len(sk.H36M_JOINT_NAMES) == 17
    assert len(sk.COCO_JOINT_NAMES) == 17


def test_flip_permutations_are_involutions_that_swap_sides() -> None:
    for perm, names in ((sk.H36M_FLIP_PERM, sk.H36M_JOINT_NAMES), (sk.COCO_FLIP_PERM, sk.COCO_JOINT_NAMES)):
        assert [perm[p] for p in perm] == list(range(17))
        for i, j in enumerate(perm):
            a, b = names[i], names[j]
            if a.startswith(("l_", "r_")):
                assert a[2:] == b[2:]
                assert a[0] != b[0]
            else:
                assert i == j


def test_coco_to_h36m_follows_the_documented_rules() -> None:
    rng = np.random.default_rng(0)
    coco = rng.uniform(0, 100, size=(3, 17, 2)).astype(np.float32)
    h = sk.coco_to_h36m(coco)
    c = dict(zip(sk.COCO_JOINT_NAMES, np.moveaxis(coco, 1, 0), strict=True))
    hj = dict(zip(sk.H36M_JOINT_NAMES, np.moveaxis(h, 1, 0), strict=True))
    pelvis = (c["l_hip"] + c["r_hip"]) / 2
    thorax = (c["l_shoulder"] + c["r_shoulder"]) / 2
    np.testing.assert_allclose(hj["pelvis"], pelvis, rtol=1e-6)
    np.testing.assert_allclose(hj["thorax"], thorax, rtol=1e-6)
    np.testing.assert_allclose(hj["spine"], (pelvis + thorax) / 2, rtol=1e-6)
    np.testing.assert_allclose(hj["head"], (c["l_eye"] + c["r_eye"]) / 2, rtol=1e-6)
    np.testing.assert_allclose(hj["neck"], c["nose"], rtol=1e-6)
    for name in ("r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "l_shoulder", "l_elbow",
                 "l_wrist", "r_shoulder", "r_elbow", "r_wrist"):  # fmt: skip
        np.testing.assert_array_equal(hj[name], c[name])
    scores = sk.coco_scores_to_h36m(np.ones((17,), np.float32))
    np.testing.assert_allclose(scores, 1.0)


def test_normalisation_matches_formula_and_round_trips() -> None:
    w, h = 1000.0, 1002.0
    xy = np.array([[0.0, 0.0], [w, h], [500.0, 501.0]], np.float32)
    n = sk.normalize_screen_coordinates(xy, w, h)
    np.testing.assert_allclose(n, xy / w * 2 - np.array([1, h / w]), atol=1e-6)
    np.testing.assert_allclose(n[0], [-1, -h / w], rtol=1e-6)
    np.testing.assert_allclose(sk.denormalize_screen_coordinates(n, w, h), xy, atol=1e-3)


def test_flip_pose_negates_x_and_swaps_sides_without_mutating() -> None:
    pose = torch.randn(2, 17, 3)
    before = pose.clone()
    f = sk.flip_pose(pose, sk.H36M_FLIP_PERM)
    assert torch.equal(pose, before)
    assert torch.allclose(f[:, 1, 0], -pose[:, 4, 0])
    assert torch.allclose(f[:, 1, 1:], pose[:, 4, 1:])
    assert torch.allclose(sk.flip_pose(f, sk.H36M_FLIP_PERM), pose)
