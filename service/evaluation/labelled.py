"""A user's own labelled clips (and Human3.6M videos converted to them): one ``.npz`` of per-frame 3D labels
(``keypoints_3d_camera`` ``(T, 17, 3)`` metres, camera frame, and optional intrinsics, boxes, 2D labels, action)
beside its media; the keys are in docs/evaluation.md, "Labelled clips". Row ``t`` labels frame ``t`` of the media.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

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
