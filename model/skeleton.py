"""Torch helpers over the joint sets of :mod:`model.joints` (re-exported here for model code).

The tables (names, joint sets, flip pairs, COCO→H36M, 2D normalisation) live in the torch-free
:mod:`model.joints` so that the gateway, client and CLI can use them without loading PyTorch.
"""

from __future__ import annotations

import torch

from model.joints import (
    COCO_FLIP_PERM,
    COCO_JOINT_NAMES,
    COCO_LEFT,
    COCO_RIGHT,
    H36M_FLIP_PERM,
    H36M_JOINT_NAMES,
    H36M_LEFT,
    H36M_RIGHT,
    NUM_JOINTS,
    JointSet,
    coco_scores_to_h36m,
    coco_to_h36m,
    coco_to_h36m_matrix,
    denormalize_screen_coordinates,
    flip_permutation,
    normalize_screen_coordinates,
)

__all__ = [
    "COCO_FLIP_PERM",
    "COCO_JOINT_NAMES",
    "COCO_LEFT",
    "COCO_RIGHT",
    "H36M_FLIP_PERM",
    "H36M_JOINT_NAMES",
    "H36M_LEFT",
    "H36M_RIGHT",
    "NUM_JOINTS",
    "JointSet",
    "coco_scores_to_h36m",
    "coco_to_h36m",
    "coco_to_h36m_matrix",
    "denormalize_screen_coordinates",
    "flip_permutation",
    "flip_pose",
    "normalize_screen_coordinates",
]


def flip_pose(pose: torch.Tensor, perm: list[int], joint_dim: int = -2, x_dim: int = -1) -> torch.Tensor:
    """Mirror a pose about the vertical axis in normalised coordinates: negate x, swap L/R joints.

    Args:
        pose: tensor whose ``joint_dim`` indexes 17 joints and whose ``x_dim`` index 0 is x
            (e.g. ``(B, T, 17, 2)`` or ``(B, 17, 3)``), normalised or root-relative coordinates.
        perm: :data:`H36M_FLIP_PERM` or :data:`COCO_FLIP_PERM`.
    Returns:
        A new tensor of the same shape; the input is not modified.
    """
    out = pose.index_select(joint_dim, torch.as_tensor(perm, device=pose.device)).clone()
    out.select(x_dim, 0).neg_()
    return out
