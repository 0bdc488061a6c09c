"""The 3D panel: H36M-17 skeletons drawn with matplotlib (Agg, no pyplot: safe in worker threads).

Orientation: the data are in the camera frame — x right, y down, z forward (away from the camera), metres. The
panel plots ``(x, z, -y)`` so that up is up: its horizontal axes are x (right) and z (depth), its vertical axis is
-y. Axes are fixed (±``HALF_RANGE_M`` around the origin; the skeletons are root-relative) so frames of a video
compare. Several people are placed side by side by their 2D box centres (see :func:`person_offsets`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from service.export.skeleton import H36M_BONES, LEFT_JOINTS
from service.render.overlay import lighter, track_colour

HALF_RANGE_M = 1.0
ASSUMED_HEIGHT_M = 1.7


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


class Panel3D:
    """A reusable ``width × height`` pixel 3D panel; :meth:`draw` returns ``(height, width, 3) uint8 RGB``."""

    def __init__(self, width: int = 480, height: int = 480, title: str = "3D (camera frame, m)") -> None:
        dpi = 100
        self.figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor="white")
        self.canvas = FigureCanvasAgg(self.figure)
        self.axes: Any = self.figure.add_subplot(projection="3d")
        self.figure.subplots_adjust(left=0.0, right=0.94, bottom=0.03, top=0.95)
        self.title = title

    def _frame_axes(self) -> None:
        ax, r = self.axes, HALF_RANGE_M
        ax.cla()
        ax.set_xlim(-r, r)
        ax.set_ylim(-r, r)
        ax.set_zlim(-r, r)
        ax.set_box_aspect((1, 1, 1), zoom=0.92)
        for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
            axis.set_ticks([-r, -r / 2, 0.0, r / 2, r])
        ax.tick_params(labelsize=7, pad=0)
        ax.set_xlabel("x right (m)", fontsize=8)
        ax.set_ylabel("z forward (m)", fontsize=8)
        ax.set_zlabel("-y up (m)", fontsize=8)
        ax.view_init(elev=12.0, azim=-72.0)
        ax.set_title(self.title, fontsize=9)

    def draw(self, people: Sequence[Mapping[str, Any]]) -> npt.NDArray[np.uint8]:
        """Each person's root-relative ``keypoints_3d (17, 3)`` metres as bones in its track colour."""
        self._frame_axes()
        for person, dx in zip(people, person_offsets(people), strict=True):
            joints = np.asarray(person["keypoints_3d"], dtype=np.float64).reshape(17, 3)
            if not np.isfinite(joints).all():
                continue
            x, y, z = joints[:, 0] + dx, joints[:, 2], -joints[:, 1]
            colour = track_colour(int(person["track_id"]))
            for parent, child in H36M_BONES:
                bone = lighter(colour) if child in LEFT_JOINTS else colour
                self.axes.plot([x[parent], x[child]], [y[parent], y[child]], [z[parent], z[child]],
                               color=_rgb(bone), linewidth=2.5)  # fmt: skip
            self.axes.scatter(x, y, z, color=_rgb(colour), s=8, depthshade=False)
        canvas: Any = self.canvas
        canvas.draw()
        rgba = np.asarray(canvas.buffer_rgba())
        return np.ascontiguousarray(rgba[:, :, :3])
