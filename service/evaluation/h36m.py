"""Human3.6M in the VideoPose3D / P-STMO npz layout, and its cameras JSON (keys, shapes, units: docs/evaluation.md,
"Human3.6M"). The npz files hold pickled dicts, read with ``allow_pickle=True``: only open files you trust.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from service.evaluation.sequences import EvalSequence, FloatArray

TEST_SUBJECTS: Final = ("S9", "S11")
KEEP_JOINTS: Final = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)
"""The 17 of the 32 mocap joints VideoPose3D keeps (it removes 4, 5, 9, 10, 11, 16, 20-24, 28-31)."""
ACTIONS: Final = (
    "Directions", "Discussion", "Eating", "Greeting", "Phoning", "Photo", "Posing", "Purchases", "Sitting",
    "SittingDown", "Smoking", "Waiting", "WalkDog", "Walking", "WalkTogether",
)  # fmt: skip
"""The papers' column order (P-STMO Table 1: Dir. Disc. Eat Greet Phone Photo Pose Purch. Sit SitD. Smoke Wait
WalkD. Walk WalkT.)."""


def qrot(q: npt.NDArray[np.float64], v: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Rotate vectors ``v`` ``(..., 3)`` by the unit quaternion ``q`` ``(4,)`` (w, x, y, z)."""
    qvec = np.broadcast_to(q[1:], v.shape)
    uv = np.cross(qvec, v)
    uuv = np.cross(qvec, uv)
    return np.asarray(v + 2.0 * (q[0] * uv + uuv), dtype=np.float64)


def world_to_camera(x: FloatArray, orientation: Sequence[float], translation_mm: Sequence[float]) -> FloatArray:
    """World points ``(..., 3)`` metres into the camera frame (metres), as VideoPose3D's ``world_to_camera``."""
    q = np.asarray(orientation, dtype=np.float64)
    q_inv = q * np.array([1.0, -1.0, -1.0, -1.0])
    t = np.asarray(translation_mm, dtype=np.float64) / 1000.0
    return qrot(q_inv, np.asarray(x, dtype=np.float64) - t).astype(np.float32)


def action_group(action: str) -> str:
    """``"Walking 1"`` → ``"Walking"``: the column an action's recording counts in (as P-STMO splits at a space)."""
    return action.split(" ")[0]


def load_cameras(path: Path) -> dict[str, list[dict[str, Any]]]:
    """The cameras file (see the module docstring). Raises ValueError naming what is missing."""
    cameras: dict[str, list[dict[str, Any]]] = json.loads(path.read_text())
    for subject, cams in cameras.items():
        for cam in cams:
            missing = {"res_w", "res_h", "orientation", "translation"} - set(cam)
            if missing:
                raise ValueError(f"{path}: camera {cam.get('id', '?')} of {subject} lacks {', '.join(sorted(missing))}")
    return cameras


def _pickled(path: Path, key: str) -> dict[str, Any]:
    with np.load(path, allow_pickle=True) as data:
        if key not in data:
            raise ValueError(f"{path}: no {key!r} array (keys: {', '.join(data.files)})")
        value: dict[str, Any] = data[key].item()
    return value


def load_h36m(
    data_3d: Path, data_2d: Path, cameras: Path, subjects: Sequence[str] = TEST_SUBJECTS
) -> list[EvalSequence]:
    """Every (subject, action, camera) of ``subjects``: the 2D keypoints as input, the 3D in the camera frame
    (root-relative, and absolute for the distance) as ground truth."""
    positions_3d, positions_2d = _pickled(data_3d, "positions_3d"), _pickled(data_2d, "positions_2d")
    cams = load_cameras(cameras)
    sequences = []
    for subject in subjects:
        if subject not in positions_3d or subject not in positions_2d or subject not in cams:
            raise ValueError(f"subject {subject} is missing from the 3D file, the 2D file or the cameras file")
        for action in sorted(positions_3d[subject]):
            world = np.asarray(positions_3d[subject][action], dtype=np.float32)
            if world.shape[1] == 32:
                world = world[:, KEEP_JOINTS]
            if action not in positions_2d[subject]:
                raise ValueError(f"{subject} {action!r} is in the 3D file but not in the 2D file")
            if len(positions_2d[subject][action]) != len(cams[subject]):
                raise ValueError(f"{subject} {action!r}: the 2D file and the cameras file list different cameras")
            for cam, keypoints in zip(cams[subject], positions_2d[subject][action], strict=True):
                sequences.append(_sequence(subject, action, cam, world, np.asarray(keypoints, np.float32)))
    return sequences


def _sequence(subject: str, action: str, cam: dict[str, Any], world: FloatArray, kp: FloatArray) -> EvalSequence:
    length = world.shape[0]
    if kp.shape[0] < length:
        raise ValueError(f"{subject} {action} camera {cam.get('id')}: {kp.shape[0]} 2D frames < {length} 3D frames")
    camera = world_to_camera(world, cam["orientation"], cam["translation"])
    intrinsics = None
    if "focal_length" in cam and "center" in cam:
        (fx, fy), (cx, cy) = cam["focal_length"], cam["center"]
        intrinsics = (float(fx), float(fy), float(cx), float(cy))
    return EvalSequence(
        name=f"{subject} {action} {cam.get('id', '')}".strip(),
        group=action_group(action),
        gt_3d=camera - camera[:, :1],
        image_size=(int(cam["res_w"]), int(cam["res_h"])),
        keypoints_2d=kp[:length, :, :2],
        gt_camera=camera,
        intrinsics=intrinsics,
        meta={"subject": subject, "action": action, "camera": str(cam.get("id", ""))},
    )
