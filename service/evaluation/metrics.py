"""The papers' pose errors, per frame (numpy only; the aggregation lives in :mod:`.aggregate`).

Every function takes ``pred`` and ``gt`` of shape ``(T, J, 3)`` (metres, root-relative unless stated) and returns
one value per frame ``(T,)`` float64 in metres, so that tables can weight frames exactly as the papers' code does.
The formulas are VideoPose3D's ``common/loss.py`` (used unchanged by P-STMO): protocol #1 ``mpjpe``, protocol #2
``p_mpjpe`` (rigid alignment with scale, reflections removed), ``n_mpjpe`` (optimal scale only) and
``mean_velocity_error`` (MPJVE). PCK and AUC follow the MPI-INF-3DHP evaluation (thresholds 0:5:150 mm).
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
ArrayLike = npt.NDArray[np.floating]

PCK_THRESHOLD_M: Final = 0.150
AUC_THRESHOLDS_M: Final = np.linspace(0.0, 0.150, 31)  # 0, 5, ..., 150 mm


def _f64(a: ArrayLike) -> F64:
    return np.asarray(a, dtype=np.float64)


def joint_errors(pred: ArrayLike, gt: ArrayLike) -> F64:
    """``(T, J)`` Euclidean distance per joint, metres."""
    return np.asarray(np.linalg.norm(_f64(pred) - _f64(gt), axis=-1), dtype=np.float64)


def mpjpe(pred: ArrayLike, gt: ArrayLike) -> F64:
    """Protocol #1: mean per-joint position error of each frame ``(T,)``, metres."""
    return np.asarray(joint_errors(pred, gt).mean(axis=-1), dtype=np.float64)


def n_mpjpe(pred: ArrayLike, gt: ArrayLike) -> F64:
    """N-MPJPE ``(T,)``: MPJPE after scaling each predicted frame by the least-squares scale onto ``gt``."""
    p, g = _f64(pred), _f64(gt)
    scale = (p * g).sum(axis=(1, 2)) / np.maximum((p * p).sum(axis=(1, 2)), 1e-12)
    return mpjpe(p * scale[:, None, None], g)


def procrustes_align(pred: ArrayLike, gt: ArrayLike) -> F64:
    """``pred`` ``(T, J, 3)`` rigidly aligned onto ``gt`` per frame (rotation, uniform scale, translation;
    reflections removed), as VideoPose3D's ``p_mpjpe``."""
    p, g = _f64(pred), _f64(gt)
    mu_g, mu_p = g.mean(axis=1, keepdims=True), p.mean(axis=1, keepdims=True)
    g0, p0 = g - mu_g, p - mu_p
    norm_g = np.maximum(np.sqrt((g0**2).sum(axis=(1, 2), keepdims=True)), 1e-12)
    norm_p = np.maximum(np.sqrt((p0**2).sum(axis=(1, 2), keepdims=True)), 1e-12)
    g0, p0 = g0 / norm_g, p0 / norm_p
    u, s, vt = np.linalg.svd(np.matmul(g0.transpose(0, 2, 1), p0))
    v = vt.transpose(0, 2, 1)
    r = np.matmul(v, u.transpose(0, 2, 1))
    sign = np.sign(np.expand_dims(np.linalg.det(r), axis=1))  # no reflections
    v[:, :, -1] *= sign
    s[:, -1] *= sign.flatten()
    r = np.matmul(v, u.transpose(0, 2, 1))
    tr = np.expand_dims(s.sum(axis=1, keepdims=True), axis=2)
    a = tr * norm_g / norm_p
    t = mu_g - a * np.matmul(mu_p, r)
    return np.asarray(a * np.matmul(p, r) + t, dtype=np.float64)


def p_mpjpe(pred: ArrayLike, gt: ArrayLike) -> F64:
    """Protocol #2 ``(T,)``: MPJPE after Procrustes alignment with scale, metres."""
    return mpjpe(procrustes_align(pred, gt), gt)


def mpjve(pred: ArrayLike, gt: ArrayLike) -> F64:
    """MPJVE ``(T - 1,)``: per-joint error of the frame-to-frame velocities, metres per frame."""
    p, g = _f64(pred), _f64(gt)
    return mpjpe(np.diff(p, axis=0), np.diff(g, axis=0))


def pck(pred: ArrayLike, gt: ArrayLike, threshold_m: float = PCK_THRESHOLD_M) -> F64:
    """``(T,)`` fraction of joints within ``threshold_m`` metres of the ground truth, per frame."""
    return np.asarray((joint_errors(pred, gt) <= threshold_m).mean(axis=-1), dtype=np.float64)


def auc(pred: ArrayLike, gt: ArrayLike) -> F64:
    """``(T,)`` area under the PCK curve: the mean PCK over the thresholds 0, 5, ..., 150 mm, per frame."""
    errors = joint_errors(pred, gt)
    return np.asarray(np.mean([(errors <= th).mean(axis=-1) for th in AUC_THRESHOLDS_M], axis=0), dtype=np.float64)


def pck_2d(pred: ArrayLike, gt: ArrayLike, threshold_px: F64) -> F64:
    """``(T,)`` 2D PCK: the fraction of joints within ``threshold_px`` ``(T,)`` pixels (e.g. a fraction of the box
    size) of the labelled ``gt`` ``(T, J, 2)`` pixels."""
    return np.asarray((joint_errors(pred, gt) <= threshold_px[:, None]).mean(axis=-1), dtype=np.float64)
