"""A tiny synthetic Human3.6M in the VideoPose3D / P-STMO npz layout, to check the evaluation pipeline without the
dataset: ``pose3d eval synthetic DIR`` (and the tests) write the same keys, shapes and dtypes as the real files,
a cameras file of four Human3.6M-like cameras per subject, and one recording rendered as frames with its clip labels.
The people are random poses swaying in place; the numbers a model scores on them say nothing about its accuracy."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from service.evaluation.sequences import KEEP_JOINTS, load_h36m, world_to_camera, write_h36m_labels
from service.geometry.camera import Intrinsics
from service.geometry.synthetic import project

CAMERA_IDS = ("54138969", "55011271", "58860488", "60457274")
RESOLUTIONS = ((1000, 1002), (1000, 1000), (1000, 1000), (1000, 1002))  # as Human3.6M's four cameras
FOCAL, CENTRE = (1145.0, 1144.0), (512.0, 515.0)
INTRINSICS = Intrinsics(*FOCAL, *CENTRE)
F32 = npt.NDArray[np.float32]


def quaternion(r: npt.NDArray[np.floating]) -> list[float]:
    """(w, x, y, z) of the rotation matrix ``r`` (Shepperd's method)."""
    w = np.sqrt(max(0.0, 1.0 + r[0, 0] + r[1, 1] + r[2, 2])) / 2.0
    x = np.copysign(np.sqrt(max(0.0, 1.0 + r[0, 0] - r[1, 1] - r[2, 2])) / 2.0, r[2, 1] - r[1, 2])
    y = np.copysign(np.sqrt(max(0.0, 1.0 - r[0, 0] + r[1, 1] - r[2, 2])) / 2.0, r[0, 2] - r[2, 0])
    z = np.copysign(np.sqrt(max(0.0, 1.0 - r[0, 0] - r[1, 1] + r[2, 2])) / 2.0, r[1, 0] - r[0, 1])
    return [float(w), float(x), float(y), float(z)]


def looking_at_origin(azimuth_deg: float) -> tuple[npt.NDArray[np.floating], npt.NDArray[np.floating]]:
    """A camera 1.5 m up and 5 m out at ``azimuth_deg`` around the world's z axis (up), looking at (0, 0, 1) m: its
    rotation (camera → world, columns x right, y down, z forward) and centre (m)."""
    a = np.radians(azimuth_deg)
    centre = np.array([5.0 * np.cos(a), 5.0 * np.sin(a), 1.5])
    forward = np.array([0.0, 0.0, 1.0]) - centre
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return np.stack([right, down, forward], axis=1), centre


def cameras(subjects: Sequence[str], identity: bool = False) -> dict[str, list[dict[str, object]]]:
    """The cameras file's content: four cameras per subject around the scene (or all at the world origin with the
    world's axes, ``identity``: then camera frame = world frame)."""
    out: dict[str, list[dict[str, object]]] = {}
    for subject in subjects:
        cams = []
        for i, (cid, (w, h)) in enumerate(zip(CAMERA_IDS, RESOLUTIONS, strict=True)):
            rot, centre = (np.eye(3), np.zeros(3)) if identity else looking_at_origin(45.0 + 90.0 * i)
            w, h = (1000, 1000) if identity else (w, h)  # the same 2D input in every camera
            cams.append({"id": cid, "res_w": w, "res_h": h, "center": list(CENTRE), "focal_length": list(FOCAL),
                         "orientation": quaternion(rot), "translation": (centre * 1000.0).tolist()})  # fmt: skip
        out[subject] = cams
    return out


def skeleton_motion(frames: int, seed: int) -> npt.NDArray[np.floating]:
    """``(T, 17, 3) float32`` metres: a person-sized random pose swaying in place around (0, 0, 1) m."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0.0, 0.25, (17, 3)) + np.array([0.0, 0.0, 1.0])
    t = np.arange(frames)[:, None, None]
    sway = 0.05 * np.sin(t / 3.0 + rng.uniform(0, 6, (1, 17, 3)))
    return np.asarray(base + sway, dtype=np.float32)


@dataclass(frozen=True)
class H36MFiles:
    data_3d: Path
    data_2d: Path
    cameras: Path


def write_h36m(
    folder: Path,
    subjects: Sequence[str] = ("S9", "S11"),
    actions: Sequence[str] = ("Walking", "Walking 1", "Eating"),
    frames: int = 12,
    identity: bool = False,
) -> H36MFiles:
    """The three files: world 3D ``(T, 32, 3)`` float32 m per subject and action, GT 2D (four cameras, two frames
    longer than the mocap as in the real CPN file) ``(T + 2, 17, 2)`` float32 px, and the cameras JSON."""
    cams = cameras(subjects, identity)
    positions_3d: dict[str, dict[str, npt.NDArray[np.floating]]] = {}
    positions_2d: dict[str, dict[str, list[npt.NDArray[np.floating]]]] = {}
    for s, subject in enumerate(subjects):
        positions_3d[subject], positions_2d[subject] = {}, {}
        for a, action in enumerate(actions):
            world17 = skeleton_motion(frames + 2, seed=10 * s + a)
            world32 = np.zeros((frames, 32, 3), np.float32)
            world32[:, list(KEEP_JOINTS)] = world17[:frames]
            positions_3d[subject][action] = world32
            per_camera = []
            for cam in cams[subject]:
                in_camera = world_to_camera(world17, cam["orientation"], cam["translation"])  # type: ignore[arg-type]
                if identity:
                    in_camera = in_camera + np.array([0.0, 0.0, 5.0], np.float32)
                per_camera.append(project(in_camera.astype(np.float64), INTRINSICS).astype(np.float32))
            positions_2d[subject][action] = per_camera
    files = H36MFiles(folder / "data_3d_h36m.npz", folder / "data_2d_h36m_gt.npz", folder / "cameras.json")
    save_3d(files.data_3d, positions_3d)
    metadata = {"num_joints": 17, "keypoints_symmetry": [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]],
                "layout_name": "h36m"}  # fmt: skip
    np.savez_compressed(
        files.data_2d, positions_2d=np.array(positions_2d, dtype=object), metadata=np.array(metadata, dtype=object)
    )
    files.cameras.write_text(json.dumps(cams))
    return files


def save_3d(path: Path, positions_3d: dict[str, dict[str, npt.NDArray[np.floating]]]) -> None:
    """``data_3d_h36m.npz`` as VideoPose3D writes it: one pickled dict under ``positions_3d``."""
    np.savez_compressed(path, positions_3d=np.array(positions_3d, dtype=object))


def render_frames(folder: Path, keypoints_2d: npt.NDArray[np.floating], size: tuple[int, int]) -> Path:
    """PNG frames (``size`` = (w, h)) with a light figure drawn at the 2D keypoints ``(T, 17, 2)`` pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    for t, kp in enumerate(keypoints_2d):
        image = np.full((h, w, 3), 30, np.uint8)
        for x, y in kp:
            cv2.circle(image, (int(x), int(y)), 6, (230, 220, 200), -1)
        cv2.imwrite(str(folder / f"{t:06d}.png"), image)
    return folder


def write_demo(folder: Path, frames: int = 12) -> H36MFiles:
    """Everything ``docs/evaluation.md`` runs without the dataset: the Human3.6M-layout files for S9 and S11
    (Walking, Walking 1, Eating) and S9 "Walking 1" camera 0 as a labelled clip (``clips/S9_Walking_1.npz`` +
    its rendered frames in ``clips/S9_Walking_1/``)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = write_h36m(folder, frames=frames)
    seq = load_h36m(files.data_3d, files.data_2d, files.cameras, ["S9"])
    (walk,) = [s for s in seq if s.meta["action"] == "Walking 1"][:1]
    assert walk.keypoints_2d is not None
    media = render_frames(folder / "clips" / "S9_Walking_1", walk.keypoints_2d, walk.image_size)
    labels = folder / "clips" / "S9_Walking_1.npz"
    write_h36m_labels(files.data_3d, files.data_2d, files.cameras, "S9", "Walking 1", 0, media, labels)
    return files
