"""The evaluation's sequences (what the engine is given and the ground truth its answer is scored against) and the
datasets' readers; their keys, shapes and units are in docs/evaluation.md.

- Human3.6M in the VideoPose3D / P-STMO npz layout, and its cameras JSON. The npz files hold pickled dicts, read
  with ``allow_pickle=True``: only open files you trust.
- MPI-INF-3DHP's test set in P-STMO's layout (``data_test_3dhp.npz``). Both the 2D input and the 3D ground truth
  are reordered to Human3.6M-17 with :data:`TO_H36M`, the table the engine uses to feed a lifter trained in 3DHP
  order, so the published 3DHP checkpoint sees exactly the file's joints. PCK and AUC count the 14 joints the
  official evaluation scores; MPJPE all 17, root-relative to the pelvis.
- A user's own labelled clips, and Human3.6M recordings converted to them (``pose3d eval h36m-labels``). A clip is
  one ``.npz`` of per-frame 3D labels (``keypoints_3d_camera`` ``(T, 17, 3)`` metres, camera frame, and optional
  intrinsics, boxes, 2D labels, action) beside its media. Row ``t`` labels frame ``t`` of the media.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from model.joints import MPI_INF_3DHP_TO_H36M

FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class ImageSource:
    """A clip's frames: a video file, or a folder of images taken in name order. Yields ``(H, W, 3) uint8 RGB``."""

    path: Path

    def frames(self) -> Iterator[npt.NDArray[np.uint8]]:
        import cv2  # only the image datasets decode

        if self.path.is_dir():
            names = sorted(p for p in self.path.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".webp"})
            for name in names:
                image = cv2.imread(str(name), cv2.IMREAD_COLOR)
                if image is None:
                    raise ValueError(f"{name}: not a readable image")
                yield np.ascontiguousarray(image[:, :, ::-1])
            return
        capture = cv2.VideoCapture(str(self.path))
        try:
            while True:
                ok, image = capture.read()
                if not ok:
                    return
                yield np.ascontiguousarray(image[:, :, ::-1])
        finally:
            capture.release()


@dataclass(frozen=True)
class EvalSequence:
    """One sequence (one subject, action and camera) to evaluate.

    ``gt_3d``: ``(T, 17, 3) float32`` metres, camera frame, root-relative (pelvis at 0), Human3.6M-17 order.
    Input is either ``keypoints_2d`` ``(T, 17, 2) float32`` pixels (Human3.6M-17 order, for the lifter directly,
    as ``POST /v1/pose3d`` with ``joint_set: "h36m"``) or ``images`` (the whole pipeline, detector included).
    ``image_size``: ``(width, height)`` pixels. Optional: ``gt_camera`` ``(T, 17, 3)`` metres in the camera frame
    (not root-relative; scores ``keypoints_3d_camera`` and gives each frame's distance), ``intrinsics``
    ``(fx, fy, cx, cy)`` pixels, ``boxes`` ``(T, 4)`` xyxy pixels, ``labels_2d`` ``(T, 17, 2)`` pixels (2D PCK),
    ``valid`` ``(T,)`` (frames scored; all when ``None``). ``group`` names its column in the per-action table.
    """

    name: str
    group: str
    gt_3d: FloatArray
    image_size: tuple[int, int]
    keypoints_2d: FloatArray | None = None
    images: ImageSource | None = None
    gt_camera: FloatArray | None = None
    intrinsics: tuple[float, float, float, float] | None = None
    boxes: FloatArray | None = None
    labels_2d: FloatArray | None = None
    valid: BoolArray | None = None
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return int(self.gt_3d.shape[0])

    @property
    def scored(self) -> BoolArray:
        """``(T,)`` the frames that count."""
        return self.valid if self.valid is not None else np.ones(self.length, dtype=np.bool_)


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


TO_H36M: Final = MPI_INF_3DHP_TO_H36M
"""Human3.6M-17 joint ``j`` is MPI-INF-3DHP joint ``TO_H36M[j]``."""
PCK_JOINTS: Final = tuple(j for j in range(17) if TO_H36M[j] < 14)
"""The 14 scored joints, as Human3.6M-17 indices."""


def image_size(sequence: str) -> tuple[int, int]:
    """The test sequences' frame size: TS5 and TS6 are 1920 x 1080 outdoor clips, the others 2048 x 2048."""
    return (1920, 1080) if sequence in {"TS5", "TS6"} else (2048, 2048)


def load_3dhp(path: Path) -> list[EvalSequence]:
    """Every test sequence of ``path`` (``data_test_3dhp.npz``), ground truth in metres, root-relative."""
    sequences = _pickled(path, "data")
    out = []
    order = list(TO_H36M)
    for name, seq in sorted(sequences.items()):
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
