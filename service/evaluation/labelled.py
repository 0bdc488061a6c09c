"""A user's own labelled clips, and Human3.6M recordings converted to them (``pose3d eval h36m-labels``).

A clip is one ``.npz`` of per-frame 3D labels (``keypoints_3d_camera`` ``(T, 17, 3)`` metres, camera frame, and
optional intrinsics, boxes, 2D labels, action) beside its media; the keys are in docs/evaluation.md, "Labelled
clips". Row ``t`` labels frame ``t`` of the media.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import numpy as np

from service.evaluation.h36m import load_h36m
from service.evaluation.sequences import EvalSequence, ImageSource

LAYOUT_KEYS = ("keypoints_3d_camera", "media")


def load_clip(path: Path) -> EvalSequence:
    """The labelled clip ``path`` (see the module docstring). Raises ValueError naming the fault."""
    with np.load(path, allow_pickle=False) as data:
        missing = [key for key in LAYOUT_KEYS if key not in data]
        if missing:
            raise ValueError(f"{path}: missing {', '.join(missing)} (see docs/evaluation.md, 'Your own clips')")
        camera = np.asarray(data["keypoints_3d_camera"], dtype=np.float32)
        if camera.ndim != 3 or camera.shape[1:] != (17, 3):
            raise ValueError(f"{path}: keypoints_3d_camera must be (T, 17, 3), not {camera.shape}")
        media = path.parent / str(data["media"])
        intrinsics = tuple(float(v) for v in data["intrinsics"]) if "intrinsics" in data else None
        boxes = np.asarray(data["boxes"], dtype=np.float32) if "boxes" in data else None
        labels = np.asarray(data["keypoints_2d"], dtype=np.float32) if "keypoints_2d" in data else None
        group = str(data["action"]) if "action" in data else path.stem
    if not media.exists():
        raise ValueError(f"{path}: its media {media} does not exist")
    first = next(ImageSource(media).frames(), None)
    if first is None:
        raise ValueError(f"{media}: no frames")
    return EvalSequence(
        name=path.stem,
        group=group,
        gt_3d=camera - camera[:, :1],
        image_size=(int(first.shape[1]), int(first.shape[0])),
        images=ImageSource(media),
        gt_camera=camera,
        intrinsics=(intrinsics[0], intrinsics[1], intrinsics[2], intrinsics[3]) if intrinsics else None,
        boxes=boxes,
        labels_2d=labels,
        meta={"clip": str(path)},
    )


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
