"""``format=json|jsonl|csv|bvh``: one result document turned into the bytes of a file, with its media type; CSV (one
row per frame × person × joint) and JSON lines (one frame per line) as text, and saved results read back."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from service.export.bvh import export_bvh
from service.export.skeleton import H36M_NAMES
from service.export.tracks import frames_of, track_ids, track_sequence


class ExportFormat(StrEnum):
    JSON = "json"
    JSONL = "jsonl"
    CSV = "csv"
    BVH = "bvh"

    @classmethod
    def from_suffix(cls, suffix: str) -> ExportFormat:
        """``.bvh`` → BVH … (``.ndjson`` counts as JSON lines); ValueError for anything else."""
        name = suffix.lower().lstrip(".")
        return cls("jsonl" if name == "ndjson" else name)


CSV_COLUMNS: Final[tuple[str, ...]] = (
    "frame_index", "timestamp_s", "track_id", "joint_index", "joint_name", "x_px", "y_px", "score",
    "x_m", "y_m", "z_m", "camera_x_m", "camera_y_m", "camera_z_m",
)  # fmt: skip
"""2D in image pixels; 3D in metres, camera frame: ``x_m…`` root-relative, ``camera_x_m…`` placed (empty when the
person could not be); ``timestamp_s`` empty when unknown (docs/renders-and-demo.md, "Exports")."""


def _cell(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def export_csv(frames: Sequence[Mapping[str, Any]], check: Callable[[], None] | None = None) -> str:
    """The CSV text (header row :data:`CSV_COLUMNS`, ``\\r\\n`` line ends as the csv module writes them);
    ``check()`` before each frame (it raises to stop)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for frame in frames:
        if check is not None:
            check()
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


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _points(value: Any, width: int) -> bool:
    """``value`` is 17 points of at least ``width`` numbers."""
    return isinstance(value, list) and len(value) == 17 and all(
        isinstance(p, list) and len(p) >= width and all(map(_number, p)) for p in value
    )  # fmt: skip


def _person_problem(person: Any) -> str | None:
    if not isinstance(person, dict):
        return "a person that is not an object"
    if not isinstance(person.get("track_id"), int):
        return "a person without an integer track_id"
    box = person.get("box")
    if not (isinstance(box, list) and len(box) == 4 and all(map(_number, box))):
        return "a person without a box of 4 numbers"
    if not _points(person.get("keypoints_2d"), 2) or not _points(person.get("keypoints_3d"), 3):
        return "a person without keypoints_2d (17 x 2) and keypoints_3d (17 x 3)"
    return None


def _frame_problem(frame: Any) -> str | None:
    """Why ``frame`` is no result frame as the renders and exports read it (None when it is one)."""
    if not isinstance(frame, dict) or not isinstance(frame.get("frame_index"), int):
        return "no object with an integer frame_index"
    stamp = frame.get("timestamp_s")
    if stamp is not None and not _number(stamp):
        return "a timestamp_s that is not a number"
    people = frame.get("people")
    if not isinstance(people, list):
        return "no list of people"
    return next((why for why in map(_person_problem, people) if why is not None), None)


def read_results(text: str) -> list[dict[str, Any]]:
    """Frames of a saved result: a ``PoseResponse`` JSON document or JSON lines of frames (ValueError otherwise,
    naming the first frame that is no result frame)."""
    stripped = text.strip()
    if not stripped:
        raise ValueError("empty results file")
    try:
        document = json.loads(stripped)
    except json.JSONDecodeError:
        document = None
    if isinstance(document, dict) and "frames" in document:
        frames = document["frames"]
    elif isinstance(document, dict) and "people" in document:
        frames = [document]
    else:
        frames = [json.loads(line) for line in stripped.splitlines() if line.strip()]
        if not all(isinstance(f, dict) and "people" in f for f in frames):
            raise ValueError("not a pose3d result: expected a JSON document with 'frames' or JSON lines of frames")
    if not isinstance(frames, list):
        raise ValueError("not a pose3d result: its 'frames' is not a list")
    for n, frame in enumerate(frames):
        if (why := _frame_problem(frame)) is not None:
            raise ValueError(f"not a pose3d result: frame {n} has {why}")
    return frames


class ExportError(ValueError):
    """The export cannot be made (no person to write as BVH, unknown track)."""


@dataclass(frozen=True)
class Exported:
    """A file: ``content``, its ``media_type`` and a suggested ``filename``; ``bvh_max_error_m`` per track id
    for BVH (metres, see :mod:`service.export.bvh`)."""

    content: bytes
    media_type: str
    filename: str
    bvh_max_error_m: dict[int, float] = field(default_factory=dict)


def _bvh(frames: list[Mapping[str, Any]], track: int | None, stem: str, check: Callable[[], None] | None) -> Exported:
    ids = track_ids(frames)
    if not ids:
        raise ExportError("no person was found in any frame, so there is no skeleton to write as BVH")
    if track is not None and track not in ids:
        raise ExportError(f"track {track} is not in the result (tracks: {ids})")
    chosen = [track] if track is not None else ids
    exports = [export_bvh(track_sequence(frames, t), check) for t in chosen]
    errors = {e.track_id: e.max_error_m for e in exports}
    if len(exports) == 1:
        return Exported(exports[0].text.encode(), "application/x-bvh", f"{stem}_track{chosen[0]}.bvh", errors)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for e in exports:
            archive.writestr(f"{stem}_track{e.track_id}.bvh", e.text)
    return Exported(buffer.getvalue(), "application/zip", f"{stem}_bvh.zip", errors)


def export_document(
    document: Mapping[str, Any],
    fmt: ExportFormat,
    track: int | None = None,
    stem: str = "pose3d",
    check: Callable[[], None] | None = None,
) -> Exported:
    """``document`` (a ``PoseResponse`` as JSON) as ``fmt``. BVH: one file per track id — a single ``.bvh`` when
    there is one track or ``track`` picks one, else a zip of ``<stem>_track<id>.bvh``. CSV and BVH call ``check()``
    before each frame (it raises to stop the export)."""
    frames = frames_of(document)
    if fmt is ExportFormat.JSON:
        return Exported((json.dumps(document, indent=2) + "\n").encode(), "application/json", f"{stem}.json")
    if fmt is ExportFormat.JSONL:
        lines = "".join(json.dumps(dict(f), separators=(",", ":")) + "\n" for f in frames)  # as `pose3d stream`
        return Exported(lines.encode(), "application/x-ndjson", f"{stem}.jsonl")
    if fmt is ExportFormat.CSV:
        return Exported(export_csv(frames, check).encode(), "text/csv; charset=utf-8", f"{stem}.csv")
    return _bvh(frames, track, stem, check)
