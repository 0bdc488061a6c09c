"""Lifters trained in another joint order: the tables, and the served P-STMO mapping its input and output both ways.

P-STMO's MPI-INF-3DHP checkpoint reads and writes MPI-INF-3DHP-17 order (pelvis 14) in millimetres; the engine
speaks Human3.6M-17 metres. A network that records its input and answers a known pose shows the mapping.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.joints import (
    H36M_FLIP_PERM,
    H36M_JOINT_NAMES,
    LIFTER_JOINTS,
    MPI_INF_3DHP_JOINT_NAMES,
    JointOrder,
    LifterJoints,
)
from model.pstmo import PSTMO, PSTMO_PRESETS
from service.config import LifterKind, ModelSpec
from service.engine.lifters import LiftWindow, PSTMOLifter

HP = LIFTER_JOINTS[JointOrder.MPI_INF_3DHP]

# Human3.6M name → the MPI-INF-3DHP joint standing for it (same name unless listed)
_COUNTERPART = {"thorax": "neck", "neck": "head", "head": "head_top"}


def test_the_3dhp_table_pairs_joints_by_name_and_is_p_stmo_s() -> None:
    for j, name in enumerate(H36M_JOINT_NAMES):
        assert MPI_INF_3DHP_JOINT_NAMES[HP.to_h36m[j]] == _COUNTERPART.get(name, name)
    assert HP.root == 14
    assert MPI_INF_3DHP_JOINT_NAMES[14] == "pelvis"
    # P-STMO's run_3dhp.py: joints_left = [5, 6, 7, 11, 12, 13], joints_right = [2, 3, 4, 8, 9, 10]
    left, right = [5, 6, 7, 11, 12, 13], [2, 3, 4, 8, 9, 10]
    assert [HP.flip_perm[i] for i in left + right] == right + left
    assert all(MPI_INF_3DHP_JOINT_NAMES[i].startswith("l_") for i in left)
    assert all(MPI_INF_3DHP_JOINT_NAMES[i].startswith("r_") for i in right)
    # the common H36M → 3DHP index list (e.g. PoseAug's cross-dataset evaluation)
    assert HP.from_h36m == (10, 8, 14, 15, 16, 11, 12, 13, 1, 2, 3, 4, 5, 6, 0, 7, 9)
    assert LIFTER_JOINTS[JointOrder.H36M].to_h36m == tuple(range(17))


def test_flipping_commutes_with_the_reordering() -> None:
    """Mirror in Human3.6M order then reorder == reorder then mirror with the 3DHP pairs."""
    x = np.random.default_rng(0).normal(size=(3, 17, 2)).astype(np.float32)

    def mirror(a: np.ndarray, perm: tuple[int, ...] | list[int]) -> np.ndarray:
        out = a[..., list(perm), :].copy()
        out[..., 0] *= -1
        return out

    np.testing.assert_array_equal(HP.to_network(mirror(x, H36M_FLIP_PERM)), mirror(HP.to_network(x), HP.flip_perm))


def test_a_table_must_be_a_permutation_sending_its_root_to_the_pelvis() -> None:
    with pytest.raises(ValueError, match="permutation"):
        LifterJoints(JointOrder.MPI_INF_3DHP, (0,) * 17, tuple(range(17)), 0)
    with pytest.raises(ValueError, match="pelvis"):
        LifterJoints(JointOrder.MPI_INF_3DHP, tuple(range(17)), tuple(range(17)), 3)


class RecordingPSTMO(PSTMO):
    """Records what :meth:`lift` gets and answers joint ``i`` of its own order at ``(i, 100 i, -i)`` mm (root 0)."""

    def __init__(self) -> None:
        super().__init__(PSTMO_PRESETS["pstmo-tiny-9"])
        self.seen: list[tuple[np.ndarray, bool, list[int], int]] = []

    def lift(self, kp, flip_test=False, flip_perm=H36M_FLIP_PERM, root=0):  # type: ignore[no-untyped-def]
        self.seen.append((kp.numpy().copy(), flip_test, list(flip_perm), root))
        i = torch.arange(17, dtype=torch.float32)
        pose = torch.stack([i, 100 * i, -i], dim=1).expand(kp.shape[0], 17, 3).clone()
        pose[:, root] = 0
        return pose


def test_the_served_lifter_maps_a_hand_made_order_both_ways() -> None:
    # a hand-made order: the network's joint 5 is the pelvis, the rest reversed (Human3.6M's joint 11 is joint 0)
    to_h36m = (5, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 0, 4, 3, 2, 1)
    made = LifterJoints(JointOrder.MPI_INF_3DHP, to_h36m, tuple(range(17)), 5)
    spec = ModelSpec(kind=LifterKind.PSTMO, arch="pstmo-tiny-9", frames=9, output_unit="mm")
    net = RecordingPSTMO()
    lifter = PSTMOLifter("m", spec, "random", torch.device("cpu"), net)
    lifter.joints = made
    kp = np.zeros((9, 17, 2), np.float32)
    kp[..., 0] = np.arange(17)  # x = the Human3.6M joint index
    kp[..., 1] = np.arange(9)[:, None]  # y = the frame
    (pose,) = lifter.lift([LiftWindow(kp, np.zeros((9, 0, 17, 0), np.float32), True)])
    seen, flip, perm, root = net.seen[0]
    np.testing.assert_array_equal(seen[0, :, :, 0], np.broadcast_to(made.from_h36m, (9, 17)))  # input mapped in
    np.testing.assert_array_equal(seen[0, :, :, 1], np.broadcast_to(np.arange(9)[:, None], (9, 17)))
    assert (flip, perm, root) == (True, list(made.flip_perm), 5)
    for j in range(17):  # Human3.6M joint j is network joint to_h36m[j], in metres
        i = to_h36m[j]
        expected = [0.0, 0.0, 0.0] if i == 5 else [i / 1000, i / 10, -i / 1000]
        np.testing.assert_allclose(pose[j], expected, rtol=1e-6)
    np.testing.assert_array_equal(pose[0], 0.0)  # the network's root is Human3.6M's pelvis


def test_a_3dhp_spec_uses_the_3dhp_table_and_h36m_is_the_identity() -> None:
    for order, unit, scale in ((JointOrder.MPI_INF_3DHP, "mm", 1e-3), (JointOrder.H36M, "m", 1.0)):
        spec = ModelSpec(kind=LifterKind.PSTMO, arch="pstmo-tiny-9", frames=9, joint_order=order, output_unit=unit)
        net = RecordingPSTMO()
        lifter = PSTMOLifter("m", spec, "random", torch.device("cpu"), net)
        kp = np.tile(np.arange(17, dtype=np.float32)[None, :, None], (9, 1, 2))
        (pose,) = lifter.lift([LiftWindow(kp, np.zeros((9, 0, 17, 0), np.float32), False)])
        table = LIFTER_JOINTS[order]
        np.testing.assert_array_equal(net.seen[0][0][0, 0, :, 0], table.from_h36m)
        assert net.seen[0][3] == table.root
        np.testing.assert_allclose(pose[:, 1], np.array(table.to_h36m) * 100 * scale * (np.arange(17) > 0))


def test_capf_cannot_declare_another_joint_order() -> None:
    with pytest.raises(ValueError, match="P-STMO only"):
        ModelSpec(kind=LifterKind.CAPF, arch="capf-tiny", joint_order=JointOrder.MPI_INF_3DHP)
