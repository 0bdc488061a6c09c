"""CSV (one row per frame × person × joint) and JSON lines (one frame per line) exports of a result document."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from service.export.skeleton import H36M_NAMES

CSV_COLUMNS: Final[tuple[str, ...]] = (
    "frame_index", "timestamp_s", "track_id", "joint_index", "joint_name", "x_px", "y_px", "score",
    "x_m", "y_m", "z_m", "camera_x_m", "camera_y_m", "camera_z_m",
)  # fmt: skip
"""2D in image pixels; 3D in metres, camera frame: ``x_m…`` root-relative, ``camera_x_m…`` placed (empty when the
person could not be); ``timestamp_s`` empty when unknown (docs/renders-and-demo.md, "Exports")."""


def _cell(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def export_csv(frames: Sequence[Mapping[str, Any]]) -> str:
    """The CSV text (header row :data:`CSV_COLUMNS`, ``\\r\\n`` line ends as the csv module writes them)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for frame in frames:
        stamp = _cell(frame.get("timestamp_s"))
        for person in frame["people"]:
            joints_3d = person["keypoints_3d"]
            camera = person.get("keypoints_3d_camera")
            for j, name in enumerate(H36M_NAMES):
                placed = camera[j] if camera is not None else (None, None, None)
                values = (*person["keypoints_2d"][j][:2], person["keypoint_scores"][j], *joints_3d[j], *placed)
                row = [int(frame["frame_index"]), stamp, int(person["track_id"]), j, name]
                writer.writerow(row + [_cell(v) for v in values])
    return out.getvalue()


def export_jsonl(frames: Sequence[Mapping[str, Any]]) -> str:
    """One frame document (``frame_index``, ``timestamp_s``, ``people``) per line — what ``pose3d stream`` writes."""
    return "".join(json.dumps(dict(frame), separators=(",", ":")) + "\n" for frame in frames)


def read_results(text: str) -> list[dict[str, Any]]:
    """Frames of a saved result: a ``PoseResponse`` JSON document or JSON lines of frames (ValueError otherwise)."""
    stripped = text.strip()
    if not stripped:
        raise ValueError("empty results file")
    try:
        document = json.loads(stripped)
    except json.JSONDecodeError:
        document = None
    if isinstance(document, dict) and "frames" in document:
        return list(document["frames"])
    if isinstance(document, dict) and "people" in document:
        return [document]
    lines = [json.loads(line) for line in stripped.splitlines() if line.strip()]
    if not all(isinstance(f, dict) and "people" in f for f in lines):
        raise ValueError("not a pose3d result: expected a JSON document with 'frames' or JSON lines of frames")
    return lines
