"""Synthetic H36M-17 people and cameras for the tests and benches of :mod:`service.geometry` (numpy only).

Poses are a fixed adult skeleton (metres, camera axes: x right, y down, z forward, pelvis at the origin) with
random per-joint perturbations and a random rotation; scenes place several of them at known translations and
project them through known intrinsics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from service.geometry.camera import Intrinsics

F64 = npt.NDArray[np.float64]

REST_POSE: Final = np.array(
    [
        [0.0, 0.0, 0.0],  # pelvis
        [-0.13, 0.0, 0.0],  # r_hip
        [-0.14, 0.45, 0.02],  # r_knee
        [-0.14, 0.88, 0.05],  # r_ankle
        [0.13, 0.0, 0.0],  # l_hip
        [0.14, 0.45, 0.02],  # l_knee
        [0.14, 0.88, 0.05],  # l_ankle
        [0.0, -0.23, -0.02],  # spine
        [0.0, -0.48, -0.03],  # thorax
        [0.0, -0.58, -0.09],  # neck / nose
        [0.0, -0.70, -0.03],  # head
        [0.18, -0.45, -0.01],  # l_shoulder
        [0.22, -0.18, 0.02],  # l_elbow
        [0.22, 0.07, -0.04],  # l_wrist
        [-0.18, -0.45, -0.01],  # r_shoulder
        [-0.22, -0.18, 0.02],  # r_elbow
        [-0.22, 0.07, -0.04],  # r_wrist
    ]
)
"""``(17, 3)`` metres: a standing adult, H36M-17 order."""

CAMERA: Final = Intrinsics(fx=1500.0, fy=1490.0, cx=955.0, cy=545.0)
"""The synthetic camera of a 1920×1080 image (horizontal FOV ≈ 65°)."""
IMAGE_SIZE: Final = (1920, 1080)


def rotation(yaw: float, pitch: float, roll: float) -> F64:
    """``(3, 3)`` rotation: ``roll`` about z, then ``pitch`` about x, then ``yaw`` about y (radians)."""
    cy, sy, cp, sp, cr, sr = (math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch), math.cos(roll), math.sin(roll))  # fmt: skip
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return np.asarray(ry @ rx @ rz, np.float64)


def random_pose(rng: np.random.Generator, jitter_m: float = 0.04) -> F64:
    """``(17, 3)`` metres, root-relative: the rest pose, every joint moved by N(0, ``jitter_m``), turned by a
    random yaw (any) and pitch/roll (±15°)."""
    pose = REST_POSE + rng.normal(0.0, jitter_m, REST_POSE.shape)
    pose[0] = 0.0
    r = rotation(rng.uniform(-math.pi, math.pi), *rng.uniform(-0.26, 0.26, 2))
    return np.asarray(pose @ r.T, np.float64)


def project(points: F64, k: Intrinsics) -> F64:
    """``(..., 3)`` camera-frame metres → ``(..., 2)`` pixels."""
    z = points[..., 2:3]
    return np.concatenate([k.fx * points[..., :1] / z + k.cx, k.fy * points[..., 1:2] / z + k.cy], axis=-1)


@dataclass(frozen=True)
class Scene:
    """People ``P`` in one image: ``poses`` ``(P, 17, 3)`` root-relative metres, ``translations`` ``(P, 3)``
    metres, ``keypoints`` ``(P, 17, 2)`` noisy pixels, ``scores`` ``(P, 17)``."""

    poses: F64
    translations: F64
    keypoints: F64
    scores: F64


def random_scene(
    rng: np.random.Generator,
    people: int = 3,
    noise_px: float = 0.0,
    low_score_joints: int = 2,
    depth_range: tuple[float, float] = (1.5, 10.0),
    min_separation_m: float = 0.5,
    k: Intrinsics = CAMERA,
) -> Scene:
    """``people`` random poses at depths drawn from ``depth_range`` (at least ``min_separation_m`` apart),
    pelvis within the middle 60% of the image; 2D noise N(0, ``noise_px``) per coordinate; per person
    ``low_score_joints`` joints scored 0.1 and moved 20–60 px (the detector's unsure outliers), the rest
    scored 0.6–1."""
    while True:
        depths = np.sort(rng.uniform(*depth_range, people))
        if people < 2 or np.min(np.diff(depths)) >= min_separation_m:
            break
    w, h = IMAGE_SIZE
    u0 = rng.uniform(-0.3 * w, 0.3 * w, people) / k.fx
    v0 = rng.uniform(-0.15 * h, 0.15 * h, people) / k.fy
    t = np.stack([u0 * depths, v0 * depths, depths], 1)
    poses = np.stack([random_pose(rng) for _ in range(people)])
    kp = project(poses + t[:, None, :], k) + rng.normal(0.0, noise_px, (people, 17, 2))
    scores = rng.uniform(0.6, 1.0, (people, 17))
    for p in range(people):
        bad = rng.choice(np.arange(1, 17), low_score_joints, replace=False)
        scores[p, bad] = 0.1
        angle = rng.uniform(0, 2 * math.pi, len(bad))
        kp[p, bad] += rng.uniform(20, 60, (len(bad), 1)) * np.stack([np.cos(angle), np.sin(angle)], 1)
    return Scene(poses, t, kp, scores)


def moving_sequence(rng: np.random.Generator, frames: int = 150, fps: float = 30.0) -> F64:
    """``(T, 18, 3)`` metres: a clean, smoothly moving person — rows 0–16 the root-relative pose (limbs swinging
    at about 1 Hz, body turning), row 17 the translation (walking about 0.4 m/s across at 3–5 m)."""
    base = random_pose(rng, jitter_m=0.02)
    time_s = np.arange(frames) / fps
    out = np.zeros((frames, 18, 3))
    phase = rng.uniform(0, 2 * math.pi, 17)
    swing = np.zeros((17, 3))
    swing[[2, 3, 5, 6, 12, 13, 15, 16], 2] = [0.12, 0.2, -0.12, -0.2, -0.1, -0.18, 0.1, 0.18]
    for i, s in enumerate(time_s):
        r = rotation(0.4 * math.sin(2 * math.pi * 0.2 * s), 0.0, 0.0)
        limbs = swing * np.sin(2 * math.pi * 1.0 * s + phase[0])
        pose = (base + limbs) @ r.T
        out[i, :17] = pose - pose[0]
        out[i, 17] = [-0.8 + 0.4 * s, 0.1, 4.0 + 0.5 * math.sin(2 * math.pi * 0.15 * s)]
    return out
