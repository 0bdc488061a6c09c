"""The MPI-INF-3DHP test set in P-STMO's layout (``data_test_3dhp.npz``), in Human3.6M-17 order.

Layout (P-STMO's ``common/load_data_3dhp_mae.py`` reads it)::

    data: dict sequence ("TS1" ... "TS6") -> dict(
        data_3d=(T, 17, 3) float32 millimetres, camera frame (the "univ_annot3" universal skeleton),
        data_2d=(T, 17, 2) float32 pixels (2048 x 2048 for TS1-TS4, 1920 x 1080 for TS5-TS6),
        valid=(T,) frames that count (the official evaluation skips the others))

Joints are in MPI-INF-3DHP's 17-joint order (0 head top, 1 neck, 2-4 right arm, 5-7 left arm, 8-10 right leg,
11-13 left leg, 14 pelvis, 15 spine, 16 head). The served pipeline speaks Human3.6M-17, so both the 2D input and
the 3D ground truth are reordered (:data:`TO_H36M`, the same table the engine uses to feed a lifter trained in
3DHP order, :data:`model.joints.LIFTER_JOINTS`, so the published 3DHP checkpoint sees exactly the 2D file's
joints and its output is scored against the ground truth joint for joint); PCK and AUC count the 14 joints the
official evaluation scores (all but pelvis, spine and head), MPJPE all 17, root-relative to the pelvis (3DHP
joint 14), as P-STMO reports them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np

from model.joints import MPI_INF_3DHP_TO_H36M
from service.evaluation.sequences import EvalSequence

TO_H36M: Final = MPI_INF_3DHP_TO_H36M
"""Human3.6M-17 joint ``j`` is MPI-INF-3DHP joint ``TO_H36M[j]``."""
PCK_JOINTS: Final = tuple(j for j in range(17) if TO_H36M[j] < 14)
"""The 14 scored joints, as Human3.6M-17 indices."""


def image_size(sequence: str) -> tuple[int, int]:
    """The test sequences' frame size: TS5 and TS6 are 1920 x 1080 outdoor clips, the others 2048 x 2048."""
    return (1920, 1080) if sequence in {"TS5", "TS6"} else (2048, 2048)


def load_3dhp(path: Path) -> list[EvalSequence]:
    """Every test sequence of ``path`` (``data_test_3dhp.npz``), ground truth in metres, root-relative."""
    with np.load(path, allow_pickle=True) as data:
        if "data" not in data:
            raise ValueError(f"{path}: no 'data' array (keys: {', '.join(data.files)})")
        sequences = data["data"].item()
    out = []
    for name in sorted(sequences):
        seq = sequences[name]
        order = list(TO_H36M)
        gt = np.asarray(seq["data_3d"], dtype=np.float32)[:, order] / 1000.0
        kp = np.asarray(seq["data_2d"], dtype=np.float32)[:, order, :2]
        valid = np.asarray(seq["valid"]).astype(np.bool_).reshape(-1)
        out.append(
            EvalSequence(
                name=name,
                group=name,
                gt_3d=gt - gt[:, :1],
                image_size=image_size(name),
                keypoints_2d=kp,
                gt_camera=gt,
                valid=valid,
                meta={"sequence": name},
            )
        )
    return out
