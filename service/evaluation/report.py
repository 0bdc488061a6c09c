"""An evaluation's outputs: the terminal table, JSON for machines, and a PNG (per-group bars, error vs distance),
with the papers' published numbers printed beside the evaluator's own (millimetres; PCK / AUC in percent).

Human3.6M rows are P-STMO Table 1 (ECCV 2022), per action in its column order then the average; MPI-INF-3DHP is its
Table 2; CA-PF is its supplementary material (Table 2: single frame, HRNet-W32 2D-pose backbone; Table 1 has only
the small model CA-PF-S, so no per-action row). A row is matched by the served model's architecture (``version``)
and the dataset's 2D input (``"cpn"`` or ``"gt"``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from service.evaluation.aggregate import METRICS, Scores, Table
from service.evaluation.sequences import ACTIONS

HEADINGS: Final = "Dir. Disc. Eat Greet Phone Photo Pose Purch. Sit SitD. Smoke Wait WalkD. Walk WalkT."
LABELS: Final = dict(zip(ACTIONS, HEADINGS.split(), strict=True))
"""P-STMO Table 1's column headings, by action."""


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


# P-STMO Table 1: the HEADINGS' actions, then the average
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


@dataclass
class Evaluation:
    """One model's (or profile's) evaluation of one dataset: its table, its throughput and what ran."""

    label: str  # the profile, settings file or model it ran
    dataset: str
    model: dict[str, Any]  # the served model's ModelInfo as JSON (name, version, weights sha256 or "random", ...)
    table: Table
    frames: int
    seconds: float
    scores: list[Scores]
    config: str = ""  # the engine knobs the throughput was measured with
    load_avg: tuple[float, float, float] = (0.0, 0.0, 0.0)  # the machine's 1/5/15-minute load when the run ended
    paper: PaperRow | None = None  # the published row for this model and input, printed beside

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")

    def to_json(self) -> dict[str, Any]:
        t = self.table
        return {
            "label": self.label, "dataset": self.dataset, "model": self.model,
            "frames": self.frames, "seconds": round(self.seconds, 3), "frames_per_s": round(self.frames_per_s, 2),
            "config": self.config, "load_avg": list(self.load_avg),
            "missed_frames": t.missed, "average": t.weighting.value,
            "metrics": {k: {"groups": {g: round(v, 3) for g, v in row.items()}, "average": round(t.average[k], 3)}
                        for k, row in t.rows.items()},
            "frames_per_group": t.frames,
            "paper": None if self.paper is None else asdict(self.paper),
        }  # fmt: skip


def _fmt(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.1f}"


def table_text(ev: Evaluation) -> str:
    """The per-group table (the papers' column order), one row per metric, then the run's facts."""
    t = ev.table
    heads = [LABELS.get(g, g) for g in t.groups] + ["Avg"]
    width = max([7, *(len(h) for h in heads)])
    lines = [f"{ev.dataset} — {ev.label} (model {ev.model.get('name')}, weights {_weights(ev.model)})"]
    lines.append(f"{'':<18}" + "".join(f"{h:>{width + 1}}" for h in heads))
    paper = ev.paper
    for metric, row in t.rows.items():
        cells = [_fmt(row.get(g)) for g in t.groups] + [_fmt(t.average[metric])]
        lines.append(f"{METRICS[metric]:<18}" + "".join(f"{c:>{width + 1}}" for c in cells))
        if paper is not None and metric in paper.average:
            published = paper.groups.get(metric, {})
            cells = [_fmt(published.get(g)) for g in t.groups] + [_fmt(paper.average[metric])]
            lines.append(f"{'  paper':<18}" + "".join(f"{c:>{width + 1}}" for c in cells))
    if paper is not None:
        lines.append(f"paper = {paper.source} (its average is over all 15 actions)")
    lines.append(
        f"{ev.frames} frames in {ev.seconds:.2f} s = {ev.frames_per_s:.1f} frames/s ({ev.config}; {_load(ev)}); "
        f"missed (nobody found) {t.missed}; average = mean over {t.weighting.value}"
    )
    return "\n".join(lines)


def _load(ev: Evaluation) -> str:
    return "load avg " + " ".join(f"{v:.2f}" for v in ev.load_avg)


def _weights(model: dict[str, Any]) -> str:
    weights = str(model.get("weights", "?"))
    if weights == "random":
        return "RANDOM (not a published checkpoint: these numbers say nothing of accuracy)"
    return weights[:12]


def compare_text(evaluations: Sequence[Evaluation]) -> str:
    """One row per evaluated profile / model: accuracy and measured throughput side by side."""
    metrics = [k for k in ("mpjpe", "p_mpjpe", "n_mpjpe", "mpjve", "pck150", "auc", "camera_error")
               if any(k in e.table.average for e in evaluations)]  # fmt: skip
    width = max([10, *(len(e.label) for e in evaluations)])
    head = f"{'profile/model':<{width}} {'model':<14}" + "".join(f"{METRICS[k]:>18}" for k in metrics)
    lines = [head + f"{'frames/s':>12}{'frames':>9}  configuration; machine load"]
    for e in evaluations:
        cells = "".join(f"{_fmt(e.table.average.get(k)):>18}" for k in metrics)
        lines.append(
            f"{e.label:<{width}} {e.model.get('name', '?')!s:<14}{cells}{e.frames_per_s:>12.1f}{e.frames:>9}"
            f"  {e.config}; {_load(e)}"
        )
    return "\n".join(lines)


def plot(evaluations: Sequence[Evaluation], path: Path) -> None:
    """PNG: MPJPE per group (bars, one colour per profile/model) and MPJPE against the subject's distance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (bars, dist) = plt.subplots(1, 2, figsize=(14, 4.8), gridspec_kw={"width_ratios": [2, 1]})
    groups = list(dict.fromkeys(g for e in evaluations for g in e.table.groups))
    step = 0.8 / max(1, len(evaluations))
    for i, e in enumerate(evaluations):
        row = e.table.rows.get("mpjpe", {})
        xs = np.arange(len(groups)) + i * step
        bars.bar(xs, [row.get(g, np.nan) for g in groups], width=step, label=e.label)
        if e.paper is not None and e.paper.groups.get("mpjpe"):
            published = e.paper.groups["mpjpe"]
            source = f"paper ({e.paper.source})" if i == 0 else None
            marks = [published.get(g, np.nan) for g in groups]
            bars.scatter(xs, marks, marker="_", s=300, color="black", label=source, zorder=3)
        d = np.concatenate([s.distance_m for s in e.scores]) if e.scores else np.zeros(0)
        err = np.concatenate([s.mpjpe_m for s in e.scores]) * 1000.0 if e.scores else np.zeros(0)
        ok = np.isfinite(d)
        dist.scatter(d[ok], err[ok], s=4, alpha=0.5, label=e.label)
    bars.set_xticks(np.arange(len(groups)) + 0.4 - step / 2, [LABELS.get(g, g) for g in groups], rotation=45)
    bars.set_ylabel("MPJPE (mm)")
    bars.set_title(f"{evaluations[0].dataset}: MPJPE per action")
    bars.legend()
    dist.set_xlabel("distance of the pelvis from the camera (m)")
    dist.set_ylabel("MPJPE (mm)")
    dist.set_title("error vs distance (one dot per frame)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
