"""The 3D panel: H36M-17 skeletons drawn with matplotlib (Agg, no pyplot: safe in worker threads).

Camera-frame metres (x right, y down, z forward) are plotted as ``(x, z, -y)`` so that up is up, in one cube fitted
to the data (:func:`fit_limits`; docs/renders-and-demo.md, "Renders"); people side by side by their box centres.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from service.render.overlay import bone_colours, track_colour

MIN_HALF_RANGE_M = 0.5
"""The cube's half side is at least this (a real skeleton, ~1.7 m tall, fills about two thirds of it)."""
MARGIN = 1.1
ASSUMED_HEIGHT_M = 1.7
Limits = tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
"""Plot axes ``(x, depth, up)`` ranges in metres."""


def _rgb(colour: tuple[int, int, int]) -> tuple[float, float, float]:
    return colour[0] / 255.0, colour[1] / 255.0, colour[2] / 255.0


def person_offsets(people: Sequence[Mapping[str, Any]]) -> list[float]:
    """Metres along x for each person: box-centre distance from the people's mean centre, in units of an assumed
    1.7 m box height (one person: 0)."""
    if len(people) < 2:
        return [0.0] * len(people)
    centres = [(p["box"][0] + p["box"][2]) / 2.0 for p in people]
    heights = [max(1.0, p["box"][3] - p["box"][1]) for p in people]
    mean = float(np.mean(centres))
    return [(c - mean) / h * ASSUMED_HEIGHT_M for c, h in zip(centres, heights, strict=True)]


def plotted_points(people: Sequence[Mapping[str, Any]]) -> list[npt.NDArray[np.float64]]:
    """Each person's joints as plotted, ``(17, 3)`` metres ``(x + offset, z, -y)`` (people with non-finite
    joints left out)."""
    plotted = []
    for person, dx in zip(people, person_offsets(people), strict=True):
        joints = np.asarray(person["keypoints_3d"], dtype=np.float64).reshape(17, 3)
        if np.isfinite(joints).all():
            plotted.append(np.stack([joints[:, 0] + dx, joints[:, 2], -joints[:, 1]], axis=-1))
    return plotted


def fit_limits(frames: Sequence[Sequence[Mapping[str, Any]]]) -> Limits:
    """One cube around every plotted joint of ``frames`` (each a list of people): centred on their bounding box,
    half side the largest half extent x ``MARGIN`` (at least ``MIN_HALF_RANGE_M``)."""
    points = [p for people in frames for p in plotted_points(people)]
    if not points:
        r = MIN_HALF_RANGE_M
        return (-r, r), (-r, r), (-r, r)
    stacked = np.concatenate(points)
    low, high = stacked.min(axis=0), stacked.max(axis=0)
    centre, half = (low + high) / 2.0, max(MIN_HALF_RANGE_M, float((high - low).max()) / 2.0 * MARGIN)
    x, y, z = (float(c) for c in centre)
    return (x - half, x + half), (y - half, y + half), (z - half, z + half)


class Panel3D:
    """A reusable ``width × height`` pixel 3D panel; :meth:`draw` returns ``(height, width, 3) uint8 RGB``."""

    def __init__(self, width: int = 480, height: int = 480) -> None:
        dpi = 100
        self.figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor="white")
        self.canvas = FigureCanvasAgg(self.figure)
        self.axes: Any = self.figure.add_subplot(projection="3d")
        self.figure.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.94)

    def _frame_axes(self, limits: Limits) -> None:
        ax = self.axes
        ax.cla()
        ax.set_xlim(*limits[0])
        ax.set_ylim(*limits[1])
        ax.set_zlim(*limits[2])
        ax.set_box_aspect((1, 1, 1), zoom=0.88)  # equal aspect; room for the tick labels inside the canvas
        for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
            axis.set_major_locator(MaxNLocator(4))
        ax.tick_params(labelsize=7, pad=0)
        ax.set_xlabel("x right (m)", fontsize=8, labelpad=-2)
        ax.set_ylabel("z forward (m)", fontsize=8, labelpad=-2)
        ax.set_zlabel("-y up (m)", fontsize=8, labelpad=-2)
        ax.view_init(elev=12.0, azim=-72.0)
        self.figure.suptitle("3D (camera frame, m)", fontsize=9, y=0.98)

    def draw(self, people: Sequence[Mapping[str, Any]], limits: Limits | None = None) -> npt.NDArray[np.uint8]:
        """Each person's root-relative ``keypoints_3d (17, 3)`` metres as bones in its track colour, in axes
        ``limits`` (default: fitted to these people)."""
        self._frame_axes(limits or fit_limits([people]))
        finite = [p for p in people if np.isfinite(np.asarray(p["keypoints_3d"], dtype=np.float64)).all()]
        for person, (x, y, z) in zip(finite, (p.T for p in plotted_points(people)), strict=True):
            colour = track_colour(int(person["track_id"]))
            for parent, child, bone in bone_colours(colour):
                self.axes.plot([x[parent], x[child]], [y[parent], y[child]], [z[parent], z[child]],
                               color=_rgb(bone), linewidth=2.5)  # fmt: skip
            self.axes.scatter(x, y, z, color=_rgb(colour), s=8, depthshade=False)
        canvas: Any = self.canvas
        canvas.draw()
        rgba = np.asarray(canvas.buffer_rgba())
        return np.ascontiguousarray(rgba[:, :, :3])
