"""A user's own labelled clips (and Human3.6M videos converted to the same layout): images + per-frame 3D labels.

One ``.npz`` per clip, beside its media (a video file, or a folder of images taken in name order)::

    keypoints_3d_camera  (T, 17, 3) float32  metres, camera frame (x right, y down, z forward), Human3.6M-17 order
    media                ()  str             the clip's video file or frame folder, relative to the npz
    intrinsics           (4,) float32        optional: fx, fy, cx, cy in pixels (else the served 60° FOV guess)
    boxes                (T, 4) float32      optional: the person's box per frame, xyxy pixels
    keypoints_2d         (T, 17, 2) float32  optional: 2D labels in pixels, Human3.6M-17 order (gives 2D PCK)
    action               ()  str             optional: the column the clip counts in (default: the file's stem)

Frame ``t`` of the media is labelled by row ``t``; the clip is scored on the frames both have.
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
