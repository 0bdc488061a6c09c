"""Scores per sequence and the papers' tables: per-frame errors grouped into columns and averaged.

Human3.6M is averaged as P-STMO's ``print_error``: an action's entry is the mean over its frames (subjects,
cameras and recordings pooled), the average the mean of the 15 entries. Other datasets pool every scored frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import numpy as np
import numpy.typing as npt

from service.evaluation import metrics as m
from service.evaluation.runner import Prediction
from service.evaluation.sequences import EvalSequence

F64 = npt.NDArray[np.float64]
PCK_2D_FRACTION: Final = 0.2
"""2D PCK counts a joint within this fraction of the labelled box's longer side (or of the 2D labels' extent)."""


METRICS: Final = {
    "mpjpe": "MPJPE (P1) mm", "p_mpjpe": "P-MPJPE (P2) mm", "n_mpjpe": "N-MPJPE mm", "mpjve": "MPJVE mm/frame",
    "pck150": "PCK@150mm %", "auc": "AUC %", "camera_error": "camera error mm", "camera_error_pct": "camera error %",
    "pck2d": "2D PCK@0.2 %",
}  # fmt: skip
"""Every metric :func:`score` gives, in the tables' row order, with its heading."""


class Average(StrEnum):
    """How a table's average column weighs its groups."""

    ACTIONS = "actions"  # mean of the groups' means (P-STMO / VideoPose3D on Human3.6M)
    FRAMES = "frames"  # mean over every scored frame


@dataclass
class Scores:
    """One sequence's per-frame scores: metric name → ``(n,)`` values (metres, or fractions for PCK/AUC), and for
    the error-vs-distance plot the distance (m) and MPJPE (m) of each scored frame."""

    group: str
    values: dict[str, F64]
    distance_m: F64
    mpjpe_m: F64
    missed: int


def score(seq: EvalSequence, pred: Prediction, pck_joints: Sequence[int] | None = None) -> Scores:
    """Scores of ``pred`` against ``seq``'s ground truth on its scored frames where the engine found someone."""
    keep = seq.scored & pred.found
    gt, p = seq.gt_3d[keep].astype(np.float64), pred.keypoints_3d[keep]
    values = {"mpjpe": m.mpjpe(p, gt), "p_mpjpe": m.p_mpjpe(p, gt), "n_mpjpe": m.n_mpjpe(p, gt)}
    both = keep[1:] & keep[:-1]  # velocity of consecutive scored frames
    values["mpjve"] = m.mpjve(pred.keypoints_3d, seq.gt_3d)[both] if len(keep) > 1 else np.zeros(0)
    if pck_joints is not None:
        joints = list(pck_joints)
        values["pck150"] = m.pck(p[:, joints], gt[:, joints])
        values["auc"] = m.auc(p[:, joints], gt[:, joints])
    distance = np.full(int(keep.sum()), np.nan)
    if seq.gt_camera is not None:
        cam = seq.gt_camera[keep].astype(np.float64)
        distance = np.linalg.norm(cam[:, 0], axis=-1)
        placed = np.isfinite(pred.keypoints_3d_camera[keep]).all(axis=(1, 2))
        if seq.images is not None and placed.any():
            err = m.mpjpe(pred.keypoints_3d_camera[keep][placed], cam[placed])
            values["camera_error"] = err
            values["camera_error_pct"] = 100.0 * err / distance[placed]
    if seq.labels_2d is not None:
        labels = seq.labels_2d[keep].astype(np.float64)
        sides = seq.boxes[keep, 2:] - seq.boxes[keep, :2] if seq.boxes is not None else np.ptp(labels, axis=1)
        values["pck2d"] = m.pck_2d(pred.keypoints_2d[keep], labels, PCK_2D_FRACTION * np.max(sides, axis=1))
    return Scores(seq.group, values, distance, values["mpjpe"], int((seq.scored & ~pred.found).sum()))


@dataclass
class Table:
    """Rows = metrics, columns = groups (papers' order) + the average. Values in millimetres (errors) or percent
    (PCK, AUC, camera error %); ``frames``: scored frames per group."""

    groups: list[str]
    rows: dict[str, dict[str, float]]
    average: dict[str, float]
    frames: dict[str, int]
    missed: int = 0
    weighting: Average = Average.ACTIONS


PERCENT_METRICS: Final = frozenset({"pck150", "auc", "pck2d", "camera_error_pct"})


def _unit(metric: str, value: float) -> float:
    """Metres → millimetres; fractions → percent; percentages as they are."""
    if metric == "camera_error_pct":
        return value
    return value * 100.0 if metric in PERCENT_METRICS else value * 1000.0


def tabulate(scores: Sequence[Scores], order: Sequence[str], weighting: Average) -> Table:
    """The table of ``scores`` with groups in ``order`` first (then any other group, by name)."""
    present = {s.group for s in scores}
    groups = [g for g in order if g in present] + sorted(present - set(order))
    metrics = sorted({k for s in scores for k in s.values}, key=list(METRICS).index)
    rows: dict[str, dict[str, float]] = {}
    average: dict[str, float] = {}
    for metric in metrics:
        sums = {g: _pooled([s.values[metric] for s in scores if s.group == g and metric in s.values]) for g in groups}
        rows[metric] = {g: _unit(metric, float(v.mean())) for g, v in sums.items() if v.size}
        if weighting is Average.ACTIONS:
            average[metric] = float(np.mean(list(rows[metric].values()))) if rows[metric] else float("nan")
        else:
            pooled = np.concatenate(list(sums.values()))
            average[metric] = _unit(metric, float(pooled.mean())) if pooled.size else float("nan")
    frames = {g: sum(len(s.mpjpe_m) for s in scores if s.group == g) for g in groups}
    return Table(groups, rows, average, frames, sum(s.missed for s in scores), weighting)


def _pooled(parts: list[F64]) -> F64:
    return np.concatenate(parts) if parts else np.zeros(0)
