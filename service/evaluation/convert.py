"""Human3.6M recordings as labelled clips: one (subject, action, camera) of the npz layout → a clip label file.

``pose3d eval h36m-labels`` writes, for the frames of one Human3.6M video (extracted into a folder, or the video
itself), the label file :mod:`service.evaluation.labelled` reads: the mocap joints in that camera's frame, its
intrinsics, and — from a ground-truth 2D file (``data_2d_h36m_gt.npz``) — the 2D labels and a box around them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import numpy as np

from service.evaluation.h36m import load_h36m

BOX_MARGIN: Final = 0.15
"""The box is the 2D labels' extent grown by this fraction of its size on every side."""


def write_h36m_labels(
    data_3d: Path, data_2d: Path, cameras: Path, subject: str, action: str, camera: int, media: Path, out: Path
) -> int:
    """Write ``out`` (a clip label file) for camera ``camera`` (0-3) of ``subject``'s ``action``; returns frames.
    ``media`` is stored relative to ``out``'s folder."""
    sequences = [s for s in load_h36m(data_3d, data_2d, cameras, [subject]) if s.meta["action"] == action]
    if not sequences:
        raise ValueError(f"{subject} has no action {action!r}")
    if not 0 <= camera < len(sequences):
        raise ValueError(f"camera must be 0-{len(sequences) - 1}")
    seq = sequences[camera]
    assert seq.keypoints_2d is not None
    assert seq.gt_camera is not None
    kp = seq.keypoints_2d
    low, high = kp.min(axis=1), kp.max(axis=1)
    margin = BOX_MARGIN * (high - low)
    arrays: dict[str, np.ndarray] = {
        "keypoints_3d_camera": seq.gt_camera.astype(np.float32),
        "media": np.array(os.path.relpath(Path(media).resolve(), out.parent.resolve())),
        "keypoints_2d": kp.astype(np.float32),
        "boxes": np.concatenate([low - margin, high + margin], axis=1).astype(np.float32),
        "action": np.array(seq.group),
    }
    if seq.intrinsics is not None:
        arrays["intrinsics"] = np.array(seq.intrinsics, dtype=np.float32)
    np.savez(out, **arrays)  # type: ignore[arg-type]
    return seq.length
