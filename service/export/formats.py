"""``format=json|jsonl|csv|bvh``: one result document turned into the bytes of a file, with its media type."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from service.export.bvh import export_bvh
from service.export.tables import export_csv, export_jsonl
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


def _bvh(frames: list[Mapping[str, Any]], track: int | None, stem: str) -> Exported:
    ids = track_ids(frames)
    if not ids:
        raise ExportError("no person was found in any frame, so there is no skeleton to write as BVH")
    if track is not None and track not in ids:
        raise ExportError(f"track {track} is not in the result (tracks: {ids})")
    chosen = [track] if track is not None else ids
    exports = [export_bvh(track_sequence(frames, t)) for t in chosen]
    errors = {e.track_id: e.max_error_m for e in exports}
    if len(exports) == 1:
        return Exported(exports[0].text.encode(), "application/x-bvh", f"{stem}_track{chosen[0]}.bvh", errors)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for e in exports:
            archive.writestr(f"{stem}_track{e.track_id}.bvh", e.text)
    return Exported(buffer.getvalue(), "application/zip", f"{stem}_bvh.zip", errors)


def export_document(
    document: Mapping[str, Any], fmt: ExportFormat, track: int | None = None, stem: str = "pose3d"
) -> Exported:
    """``document`` (a ``PoseResponse`` as JSON) as ``fmt``. BVH: one file per track id — a single ``.bvh`` when
    there is one track or ``track`` picks one, else a zip of ``<stem>_track<id>.bvh``."""
    frames = frames_of(document)
    if fmt is ExportFormat.JSON:
        return Exported((json.dumps(document, indent=2) + "\n").encode(), "application/json", f"{stem}.json")
    if fmt is ExportFormat.JSONL:
        return Exported(export_jsonl(frames).encode(), "application/x-ndjson", f"{stem}.jsonl")
    if fmt is ExportFormat.CSV:
        return Exported(export_csv(frames).encode(), "text/csv; charset=utf-8", f"{stem}.csv")
    return _bvh(frames, track, stem)
