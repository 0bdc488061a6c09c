"""The papers' published numbers, printed beside the evaluator's own (millimetres; PCK / AUC in percent).

Human3.6M rows are P-STMO Table 1 (ECCV 2022), per action in its column order then the average; MPI-INF-3DHP is its
Table 2; CA-PF is its supplementary material (Table 2: single frame, HRNet-W32 2D-pose backbone; Table 1 has only
the small model CA-PF-S, so no per-action row). A row is matched by the served model's architecture (``version``)
and the dataset's 2D input (``"cpn"`` or ``"gt"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from service.evaluation.sequences import ACTIONS


@dataclass(frozen=True)
class PaperRow:
    """One published row: ``source`` names the table; ``groups`` per action (may be empty); ``average`` per metric."""

    source: str
    groups: dict[str, dict[str, float]]
    average: dict[str, float]


def _h36m(source: str, **metrics: tuple[float, ...]) -> PaperRow:
    """A Table 1 row: per metric, the 15 actions in the papers' order, then the average."""
    groups = {k: dict(zip(ACTIONS, v[:-1], strict=True)) for k, v in metrics.items()}
    return PaperRow(source, groups, {k: v[-1] for k, v in metrics.items()})


# P-STMO Table 1: Dir. Disc. Eat Greet Phone Photo Pose Purch. Sit SitD. Smoke Wait WalkD. Walk WalkT. | Avg
PSTMO_243_CPN = (38.9, 42.7, 40.4, 41.1, 45.6, 49.7, 40.9, 39.9, 55.5, 59.4, 44.9, 42.2, 42.2, 29.4, 29.4, 42.8)
PSTMO_243_CPN_P2 = (31.3, 35.2, 32.9, 33.9, 35.4, 39.3, 32.5, 31.5, 44.6, 48.2, 36.3, 32.9, 34.4, 23.8, 23.9, 34.4)
PSTMO_243_GT = (28.5, 30.1, 28.6, 27.9, 29.8, 33.2, 31.3, 27.8, 36.0, 37.4, 29.7, 29.5, 28.1, 21.0, 21.0, 29.3)
PSTMO_S_243_CPN = (40.0, 42.5, 38.3, 41.5, 45.8, 50.8, 41.6, 40.9, 54.2, 59.3, 44.4, 41.9, 43.6, 30.3, 30.1, 43.0)
PSTMO_S_81_CPN = (41.7, 44.5, 41.0, 42.9, 46.0, 51.3, 42.8, 41.3, 54.9, 61.8, 45.1, 42.8, 43.8, 30.8, 30.7, 44.1)

PAPERS: Final[dict[tuple[str, str, str], PaperRow]] = {
    ("Human3.6M", "pstmo-243", "cpn"): _h36m(
        "P-STMO Table 1, N=243, CPN 2D", mpjpe=PSTMO_243_CPN, p_mpjpe=PSTMO_243_CPN_P2
    ),
    ("Human3.6M", "pstmo-243", "gt"): _h36m("P-STMO Table 1, N=243, ground-truth 2D", mpjpe=PSTMO_243_GT),
    ("Human3.6M", "pstmo-243-small", "cpn"): _h36m("P-STMO Table 1, P-STMO-S N=243, CPN 2D", mpjpe=PSTMO_S_243_CPN),
    ("Human3.6M", "pstmo-81", "cpn"): _h36m("P-STMO Table 1, P-STMO-S N=81, CPN 2D", mpjpe=PSTMO_S_81_CPN),
    ("MPI-INF-3DHP", "pstmo-81", "gt"): PaperRow(
        "P-STMO Table 2, N=81, ground-truth 2D", {}, {"pck150": 97.9, "auc": 75.8, "mpjpe": 32.2}
    ),
    ("Human3.6M", "capf-w32", "images"): PaperRow(
        "CA-PF supplementary Table 2, single frame, HRNet-W32 2D-pose backbone", {}, {"mpjpe": 41.4}
    ),
}


def paper_row(dataset: str, arch: str, input_2d: str) -> PaperRow | None:
    """The published row for ``arch`` on ``dataset`` with ``input_2d`` (``cpn``, ``gt`` or ``images``), if any."""
    return PAPERS.get((dataset, arch, input_2d))
