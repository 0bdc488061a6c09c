"""Joint sets, COCO-17 → Human3.6M-17 conversion, flip pairs and the lifters' 2D normalisation (no torch).

The one module of ``model`` the gateway, client and CLI may import: numpy only, never torch
(checked by the import-linter contracts in pyproject.toml).

Human3.6M-17 order (the output of every lifter)::

    0 pelvis, 1 r_hip, 2 r_knee, 3 r_ankle, 4 l_hip, 5 l_knee, 6 l_ankle, 7 spine,
    8 thorax, 9 neck/nose, 10 head, 11 l_shoulder, 12 l_elbow, 13 l_wrist,
    14 r_shoulder, 15 r_elbow, 16 r_wrist

COCO-17 order (the detector's output)::

    0 nose, 1 l_eye, 2 r_eye, 3 l_ear, 4 r_ear, 5 l_shoulder, 6 r_shoulder, 7 l_elbow,
    8 r_elbow, 9 l_wrist, 10 r_wrist, 11 l_hip, 12 r_hip, 13 l_knee, 14 r_knee,
    15 l_ankle, 16 r_ankle

MPI-INF-3DHP-17 order (the test set's 17 joints; P-STMO's 3DHP loader trains in it)::

    0 head_top, 1 neck, 2 r_shoulder, 3 r_elbow, 4 r_wrist, 5 l_shoulder, 6 l_elbow, 7 l_wrist,
    8 r_hip, 9 r_knee, 10 r_ankle, 11 l_hip, 12 l_knee, 13 l_ankle, 14 pelvis, 15 spine, 16 head

A lifter network may be trained in either order (:class:`JointOrder`); :data:`LIFTER_JOINTS` says how the
engine maps its Human3.6M-17 input to the network's order and the network's output back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import numpy as np
import numpy.typing as npt

NUM_JOINTS: Final = 17

H36M_JOINT_NAMES: Final[tuple[str, ...]] = (
    "pelvis", "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "spine",
    "thorax", "neck", "head", "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist",
)  # fmt: skip

COCO_JOINT_NAMES: Final[tuple[str, ...]] = (
    "nose", "l_eye", "r_eye", "l_ear", "r_ear", "l_shoulder", "r_shoulder", "l_elbow",
    "r_elbow", "l_wrist", "r_wrist", "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle",
)  # fmt: skip

# Left/right joint index lists, as the published P-STMO and CA-PF code use them for flip TTA.
H36M_LEFT: Final[tuple[int, ...]] = (4, 5, 6, 11, 12, 13)
H36M_RIGHT: Final[tuple[int, ...]] = (1, 2, 3, 14, 15, 16)
COCO_LEFT: Final[tuple[int, ...]] = (1, 3, 5, 7, 9, 11, 13, 15)
COCO_RIGHT: Final[tuple[int, ...]] = (2, 4, 6, 8, 10, 12, 14, 16)


class JointSet(StrEnum):
    """The 2D joint sets a request may carry."""

    COCO = "coco"
    H36M = "h36m"


def flip_permutation(left: tuple[int, ...], right: tuple[int, ...], n: int = NUM_JOINTS) -> list[int]:
    """Index permutation that swaps left and right joints (an involution)."""
    perm = list(range(n))
    for a, b in zip(left, right, strict=True):
        perm[a], perm[b] = b, a
    return perm


H36M_FLIP_PERM: Final[list[int]] = flip_permutation(H36M_LEFT, H36M_RIGHT)
COCO_FLIP_PERM: Final[list[int]] = flip_permutation(COCO_LEFT, COCO_RIGHT)

# COCO → H36M: joints copied directly (h36m index ← coco index).
_DIRECT: Final[dict[int, int]] = {
    1: 12, 2: 14, 3: 16, 4: 11, 5: 13, 6: 15, 9: 0, 11: 5, 12: 7, 13: 9, 14: 6, 15: 8, 16: 10,
}  # fmt: skip


def coco_to_h36m_matrix() -> npt.NDArray[np.float32]:
    """(17, 17) float32 matrix ``M`` with ``h36m = M @ coco`` along the joint axis.

    pelvis = mid-hips, thorax = mid-shoulders, spine = mid(pelvis, thorax), head = mid-eyes,
    neck = nose; every other joint is copied. Being linear, it also converts scores.
    """
    m = np.zeros((NUM_JOINTS, NUM_JOINTS), dtype=np.float32)
    for h, c in _DIRECT.items():
        m[h, c] = 1.0
    m[0, [11, 12]] = 0.5  # pelvis
    m[8, [5, 6]] = 0.5  # thorax
    m[7] = 0.5 * (m[0] + m[8])  # spine
    m[10, [1, 2]] = 0.5  # head
    return m


_COCO_TO_H36M: Final = coco_to_h36m_matrix()


def coco_to_h36m(keypoints: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """Convert COCO-17 to Human3.6M-17.

    Args:
        keypoints: ``(..., 17, C)`` COCO-17 values (pixels, scores, any per-joint quantity).
    Returns:
        ``(..., 17, C)`` float32 in Human3.6M-17 order.
    """
    kp = np.asarray(keypoints, dtype=np.float32)
    if kp.shape[-2] != NUM_JOINTS:
        raise ValueError(f"expected 17 COCO joints on axis -2, got shape {kp.shape}")
    out: npt.NDArray[np.float32] = np.einsum("hc,...cd->...hd", _COCO_TO_H36M, kp).astype(np.float32)
    return out


def coco_scores_to_h36m(scores: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """``(..., 17)`` COCO scores → ``(..., 17)`` H36M scores (averaged where joints are averaged)."""
    return coco_to_h36m(np.asarray(scores)[..., None])[..., 0]


def normalize_screen_coordinates(xy: npt.NDArray[np.floating], width: float, height: float) -> npt.NDArray[np.float32]:
    """Pixels → lifter input: ``X / w * 2 - [1, h / w]`` (both axes divided by the width).

    Args:
        xy: ``(..., 2)`` pixel coordinates (x right, y down).
        width, height: image size in pixels.
    Returns:
        ``(..., 2)`` float32; x in [-1, 1], y in [-h/w, h/w] for points inside the image.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    arr = np.asarray(xy, dtype=np.float32)
    return (arr / np.float32(width) * 2 - np.array([1.0, height / width], dtype=np.float32)).astype(np.float32)


def denormalize_screen_coordinates(
    xy: npt.NDArray[np.floating], width: float, height: float
) -> npt.NDArray[np.float32]:
    """Inverse of :func:`normalize_screen_coordinates`: ``(..., 2)`` normalised → pixels."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    arr = np.asarray(xy, dtype=np.float32)
    return ((arr + np.array([1.0, height / width], dtype=np.float32)) * np.float32(width) / 2).astype(np.float32)


# -- the joint orders lifter networks are trained in ---------------------------------------------


class JointOrder(StrEnum):
    """The joint order a lifter network reads its 2D input in and writes its 3D output in."""

    H36M = "h36m"
    MPI_INF_3DHP = "mpi-inf-3dhp"


MPI_INF_3DHP_JOINT_NAMES: Final[tuple[str, ...]] = (
    "head_top", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "pelvis", "spine", "head",
)  # fmt: skip

# P-STMO's 3DHP loader and test (common/load_data_3dhp_mae.py, run_3dhp.py): kps/joints left and right.
MPI_INF_3DHP_LEFT: Final[tuple[int, ...]] = (5, 6, 7, 11, 12, 13)
MPI_INF_3DHP_RIGHT: Final[tuple[int, ...]] = (2, 3, 4, 8, 9, 10)

MPI_INF_3DHP_TO_H36M: Final[tuple[int, ...]] = (14, 8, 9, 10, 11, 12, 13, 15, 1, 16, 0, 5, 6, 7, 2, 3, 4)
"""Human3.6M-17 joint ``j`` is MPI-INF-3DHP-17 joint ``MPI_INF_3DHP_TO_H36M[j]``: pelvis, hips, knees, ankles,
spine, shoulders, elbows and wrists are the same joints; thorax ↔ neck, neck/nose ↔ head, head ↔ head_top (the
usual cross-dataset correspondence, e.g. PoseAug's evaluation)."""


def _inverse(perm: tuple[int, ...]) -> tuple[int, ...]:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


@dataclass(frozen=True)
class LifterJoints:
    """How a network trained in ``order`` sees the engine's Human3.6M-17 joints.

    Attributes:
        order: the network's joint order.
        to_h36m: Human3.6M-17 joint ``j`` is the network's joint ``to_h36m[j]`` (maps outputs back).
        flip_perm: the network's left/right swap, as its published flip test uses it.
        root: the network's pelvis index (the joint set to 0 in root-relative output).
    """

    order: JointOrder
    to_h36m: tuple[int, ...]
    flip_perm: tuple[int, ...]
    root: int

    def __post_init__(self) -> None:
        if sorted(self.to_h36m) != list(range(NUM_JOINTS)):
            raise ValueError(f"{self.order}: to_h36m must be a permutation of 0..{NUM_JOINTS - 1}")
        if self.to_h36m[0] != self.root:
            raise ValueError(f"{self.order}: its root {self.root} must map to the Human3.6M pelvis")

    @property
    def from_h36m(self) -> tuple[int, ...]:
        """The network's joint ``i`` is Human3.6M-17 joint ``from_h36m[i]`` (maps inputs in)."""
        return _inverse(self.to_h36m)

    def to_network(self, h36m: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        """``(..., 17, C)`` in Human3.6M-17 order → the same values in the network's order."""
        return np.asarray(h36m, dtype=np.float32)[..., self.from_h36m, :]

    def to_h36m_order(self, network: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        """``(..., 17, C)`` in the network's order → Human3.6M-17 order."""
        return np.asarray(network, dtype=np.float32)[..., self.to_h36m, :]


LIFTER_JOINTS: Final[Mapping[JointOrder, LifterJoints]] = {
    JointOrder.H36M: LifterJoints(JointOrder.H36M, tuple(range(NUM_JOINTS)), tuple(H36M_FLIP_PERM), 0),
    JointOrder.MPI_INF_3DHP: LifterJoints(
        JointOrder.MPI_INF_3DHP,
        MPI_INF_3DHP_TO_H36M,
        tuple(flip_permutation(MPI_INF_3DHP_LEFT, MPI_INF_3DHP_RIGHT)),
        14,
    ),
}
