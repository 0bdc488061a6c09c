"""Rotation helpers for the BVH export: 3x3 matrices, swing between vectors, Kabsch fit, ZXY Euler angles."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]

_EPS = 1e-12


def rotation_between(a: Array, b: Array) -> Array:
    """The smallest rotation ``(3, 3)`` taking direction ``a (3,)`` to direction ``b (3,)``; identity when
    either is (near) zero. Antiparallel vectors turn by 180° about an axis perpendicular to ``a``."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na < _EPS or nb < _EPS:
        return np.eye(3)
    u, v = a / na, b / nb
    axis = np.cross(u, v)
    s, c = float(np.linalg.norm(axis)), float(np.dot(u, v))
    if s < 1e-9:
        if c > 0:
            return np.eye(3)
        perp = np.cross(u, [1.0, 0.0, 0.0] if abs(u[0]) < 0.9 else [0.0, 1.0, 0.0])
        perp /= np.linalg.norm(perp)
        return 2.0 * np.outer(perp, perp) - np.eye(3)
    k = axis / s
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    out: Array = np.eye(3) + s * kx + (1.0 - c) * (kx @ kx)
    return out


def kabsch(rest: Array, target: Array) -> Array:
    """The rotation ``R (3, 3)`` minimising ``sum |R @ rest_i - target_i|^2`` for ``rest, target (N, 3)``."""
    h = rest.T @ target
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    out: Array = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return out


def _about(axis: int, degrees: float) -> Array:
    """The rotation ``(3, 3)`` by ``degrees`` about axis x (0), y (1) or z (2), right-handed."""
    i, j = (axis + 1) % 3, (axis + 2) % 3
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    out = np.eye(3)
    out[i, i], out[i, j], out[j, i], out[j, j] = c, -s, s, c
    return out


def euler_zxy_degrees(r: Array) -> tuple[float, float, float]:
    """``(z, x, y)`` degrees with ``r = Rz(z) @ Rx(x) @ Ry(y)`` (BVH channels ``Zrotation Xrotation Yrotation``)."""
    x = np.arctan2(r[2, 1], np.hypot(r[2, 0], r[2, 2]))
    if np.hypot(r[2, 0], r[2, 2]) < 1e-9:  # gimbal lock: fold the y turn into z
        y = 0.0
        z = np.arctan2(r[1, 0], r[0, 0])
    else:
        y = np.arctan2(-r[2, 0], r[2, 2])
        z = np.arctan2(-r[0, 1], r[1, 1])
    return float(np.degrees(z)), float(np.degrees(x)), float(np.degrees(y))


def matrix_zxy_degrees(z: float, x: float, y: float) -> Array:
    """Inverse of :func:`euler_zxy_degrees`."""
    return _about(2, z) @ _about(0, x) @ _about(1, y)
