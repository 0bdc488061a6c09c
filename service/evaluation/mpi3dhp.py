"""The MPI-INF-3DHP test set in P-STMO's layout (``data_test_3dhp.npz``; docs/evaluation.md, "MPI-INF-3DHP").

Both the 2D input and the 3D ground truth are reordered to Human3.6M-17 with :data:`TO_H36M`, the table the engine
uses to feed a lifter trained in 3DHP order, so the published 3DHP checkpoint sees exactly the file's joints. PCK
and AUC count the 14 joints the official evaluation scores; MPJPE all 17, root-relative to the pelvis.
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
