"""The Human3.6M-17 skeleton as exports and renders need it (no torch: the client imports this).

Joint order is the service's output order (``model.skeleton.H36M_JOINT_NAMES``; a test checks they agree).
"""

from __future__ import annotations

from typing import Final

H36M_NAMES: Final[tuple[str, ...]] = (
    "pelvis", "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "spine",
    "thorax", "neck", "head", "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist",
)  # fmt: skip

H36M_PARENTS: Final[tuple[int, ...]] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)
"""Parent of each joint (``-1`` for the pelvis, the root)."""

H36M_BONES: Final[tuple[tuple[int, int], ...]] = tuple((p, j) for j, p in enumerate(H36M_PARENTS) if p >= 0)
"""16 ``(parent, child)`` pairs."""

LEFT_JOINTS: Final[frozenset[int]] = frozenset({4, 5, 6, 11, 12, 13})
