"""Pinhole intrinsics and the camera-space root translation of a lifted pose (numpy only).

Conventions: the camera frame is OpenCV's (x right, y down, z forward, metres); image pixels have their origin
at the top-left corner. A root-relative pose ``X`` ``(17, 3)`` metres (pelvis at the origin) placed at the
translation ``t`` ``(3,)`` is ``X + t`` in the camera frame, and ``|t|`` is the person's distance from the camera.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

DEFAULT_FOV_DEG: Final = 60.0
"""Horizontal field of view assumed when a request gives no intrinsics (a typical webcam / phone main camera).
With the true horizontal FOV ``θ``, depths then come out scaled by ``tan(θ/2) / tan(DEFAULT_FOV_DEG/2)``."""
DEFAULT_FOCAL_WARNING: Final = (
    f"no camera intrinsics given: assumed a {DEFAULT_FOV_DEG:g} degree horizontal field of view with the principal "
    "point at the image centre, so distances and keypoints_3d_camera are only as right as that focal-length guess "
    "(depth scales by tan(true_fov/2) / tan(assumed_fov/2)); pass fx, fy, cx, cy or fov_deg"
)
MIN_CONFIDENT_JOINTS: Final = 6
"""A person with fewer joints of score ≥ :data:`CONFIDENT_SCORE` is flagged: its translation is unreliable."""
CONFIDENT_SCORE: Final = 0.3
EDGE_MARGIN_PX: Final = 2.0
"""A confident joint within this many pixels of the image border marks a person as possibly truncated."""
MIN_FOCAL_PX: Final = 1e-3
MAX_FOCAL_PX: Final = 1e6
"""The focal lengths ``fx, fy`` a request may give (:class:`CameraSpec`), pixels: every focal length ``fov_deg``
in [1, 179] gives on an image 1 to 8192 px wide (0.0044 to 469 000 px) lies inside, and ``(u - cx) / fx`` of any
pixel stays far from overflow — a denormal such as 5e-324 made every normalised coordinate, and so the translation,
infinite."""
MAX_PRINCIPAL_PX: Final = 1e6
"""``|cx|, |cy|`` a request may give, pixels: the principal point may lie outside the image, not at 1e308 (which
overflows the same way)."""


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels: focal lengths ``fx, fy`` and principal point ``cx, cy``."""

    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self) -> None:
        for name in ("fx", "fy", "cx", "cy"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number")
        if self.fx <= 0 or self.fy <= 0:
            raise ValueError("fx and fy must be positive (pixels)")

    @classmethod
    def from_fov(cls, fov_deg: float, image_size: tuple[int, int]) -> Intrinsics:
        """Square pixels, principal point at the image centre, ``fov_deg`` the horizontal field of view."""
        if not 1.0 <= fov_deg <= 179.0:
            raise ValueError("fov_deg must be in [1, 179] degrees")
        w, h = image_size
        f = (w / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
        return cls(f, f, w / 2.0, h / 2.0)


@dataclass(frozen=True)
class CameraSpec:
    """What a request or stream says about its camera: full intrinsics, a horizontal FOV, or nothing (default);
    resolved per frame (the image size may differ between requests) by :meth:`resolve`."""

    fx: float | None = None
    fy: float | None = None
    cx: float | None = None
    cy: float | None = None
    fov_deg: float | None = None

    def __post_init__(self) -> None:
        given = [v is not None for v in (self.fx, self.fy, self.cx, self.cy)]
        if any(given) and not all(given):
            raise ValueError("give all of fx, fy, cx, cy (pixels), or fov_deg, or none")
        if all(given) and self.fov_deg is not None:
            raise ValueError("give either fx, fy, cx, cy or fov_deg, not both")
        self.resolve((2, 2))  # validates the intrinsics, or the FOV's range
        for name in ("fx", "fy"):  # a request's own values (those from fov_deg are finite on any image)
            value = getattr(self, name)
            if value is not None and not MIN_FOCAL_PX <= value <= MAX_FOCAL_PX:
                raise ValueError(
                    f"{name} must be in [{MIN_FOCAL_PX:g}, {MAX_FOCAL_PX:g}] pixels (a positive focal length)"
                )
        for name in ("cx", "cy"):
            value = getattr(self, name)
            if value is not None and abs(value) > MAX_PRINCIPAL_PX:
                raise ValueError(f"{name} must be in [-{MAX_PRINCIPAL_PX:g}, {MAX_PRINCIPAL_PX:g}] pixels")

    @property
    def is_default(self) -> bool:
        return self.fx is None and self.fov_deg is None

    def resolve(self, image_size: tuple[int, int]) -> Intrinsics:
        """The intrinsics for an image of ``image_size`` ``(width, height)`` pixels."""
        if self.fx is not None and self.fy is not None and self.cx is not None and self.cy is not None:
            return Intrinsics(self.fx, self.fy, self.cx, self.cy)
        return Intrinsics.from_fov(self.fov_deg if self.fov_deg is not None else DEFAULT_FOV_DEG, image_size)


@dataclass(frozen=True)
class RobustFit:
    """IRLS settings: ``iterations`` re-weighting passes, Huber threshold ``huber_k`` robust standard deviations
    (MAD-based, at least ``min_scale_px`` pixels)."""

    iterations: int = 5
    huber_k: float = 1.345
    min_scale_px: float = 1.0


def _weighted_solve(u: F64, v: F64, pose: F64, w: F64) -> F64:
    """The weighted least-squares ``t`` ``(3,)`` of the rows ``[1, 0, -u_i]·t = u_i Z_i - X_i`` and
    ``[0, 1, -v_i]·t = v_i Z_i - Y_i`` (weights ``w`` ``(J,)``)."""
    n = len(u)
    a = np.zeros((2 * n, 3))
    a[:n, 0] = 1.0
    a[:n, 2] = -u
    a[n:, 1] = 1.0
    a[n:, 2] = -v
    b = np.concatenate([u * pose[:, 2] - pose[:, 0], v * pose[:, 2] - pose[:, 1]])
    sw = np.sqrt(np.concatenate([w, w]))
    t, *_ = np.linalg.lstsq(a * sw[:, None], b * sw, rcond=None)
    return np.asarray(t, dtype=np.float64)


def solve_translation(
    pose: npt.ArrayLike,
    keypoints_px: npt.ArrayLike,
    scores: npt.ArrayLike,
    k: Intrinsics,
    robust: RobustFit | None = None,
) -> F64:
    """The root translation ``t`` ``(3,)`` metres that best reprojects ``pose + t`` onto ``keypoints_px``.

    ``pose`` ``(J, 3)`` metres, root-relative, camera axes; ``keypoints_px`` ``(J, 2)`` pixels of the same joints;
    ``scores`` ``(J,)`` confidences in [0, 1], the base weights (score 0 = ignored); ``robust``: IRLS settings.
    The perspective equations are linear in ``t``: one weighted least-squares solve, then Huber re-weighting passes
    on the pixel reprojection error (derivation: docs/world-and-smoothing.md, "Solving the root translation").

    Raises ValueError with fewer than 2 joints of positive score, or a degenerate system.
    """
    robust = robust or RobustFit()
    p = np.asarray(pose, np.float64)
    xy = np.asarray(keypoints_px, np.float64)
    base = np.clip(np.asarray(scores, np.float64), 0.0, 1.0)
    keep = base > 0
    if int(keep.sum()) < 2:
        raise ValueError("at least 2 joints with a positive score are needed to place a person")
    p, xy, base = p[keep], xy[keep], base[keep]
    u = (xy[:, 0] - k.cx) / k.fx
    v = (xy[:, 1] - k.cy) / k.fy
    t = _weighted_solve(u, v, p, base)
    focal = np.array([k.fx, k.fy])
    for _ in range(robust.iterations):
        depth = p[:, 2] + t[2]
        if np.any(depth <= 1e-3):  # a joint behind the camera: the algebraic solution is as good as it gets
            break
        proj = (p[:, :2] + t[:2]) / depth[:, None]
        err = np.linalg.norm((proj - np.stack([u, v], 1)) * focal, axis=1)
        scale = max(1.4826 * float(np.median(err)), robust.min_scale_px)
        huber = np.minimum(1.0, robust.huber_k * scale / np.maximum(err, 1e-12))
        t = _weighted_solve(u, v, p, base * huber / depth**2)
    if not np.all(np.isfinite(t)):
        raise ValueError("the translation is undetermined (degenerate keypoints)")
    return t


def person_warnings(
    keypoints_px: npt.ArrayLike, scores: npt.ArrayLike, image_size: tuple[int, int], t_z: float
) -> list[str]:
    """Why one person's placement may be wrong: few confident joints, touching the image border (truncated),
    or behind the camera. ``keypoints_px`` ``(J, 2)`` pixels, ``scores`` ``(J,)``, ``image_size`` ``(w, h)``."""
    out: list[str] = []
    confident = np.asarray(scores, np.float64) >= CONFIDENT_SCORE
    if int(confident.sum()) < MIN_CONFIDENT_JOINTS:
        out.append(
            f"only {int(confident.sum())} of {len(confident)} joints have score >= {CONFIDENT_SCORE}: "
            "translation unreliable"
        )
    w, h = image_size
    xy = np.asarray(keypoints_px, np.float64).reshape(-1, 2)[confident]
    m = EDGE_MARGIN_PX
    if len(xy) and bool(np.any((xy[:, 0] <= m) | (xy[:, 1] <= m) | (xy[:, 0] >= w - m) | (xy[:, 1] >= h - m))):
        out.append(
            "touches the image border (possibly truncated): joints outside the image are guessed, so the translation may be off"
        )
    if t_z <= 0:
        out.append("placed behind the camera: translation invalid")
    return out
