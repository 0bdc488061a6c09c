"""Writing a result document to ``-o`` by its suffix: ``.json``, ``.jsonl``/``.ndjson``, ``.csv`` or ``.bvh``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from service.export.bvh import export_bvh
from service.export.formats import ExportFormat, export_document
from service.export.tracks import frames_of, track_ids, track_sequence


def write_output(document: Mapping[str, Any], path: Path, compact: bool = False) -> list[str]:
    """Write ``document`` as the format ``path``'s suffix names; the lines to tell the user.

    BVH writes one file per track: ``path`` itself for a single track, else ``<stem>_track<id>.bvh`` beside it.
    An unknown suffix is written as JSON."""
    try:
        fmt = ExportFormat.from_suffix(path.suffix)
    except ValueError:
        fmt = ExportFormat.JSON
    if fmt is ExportFormat.JSON:
        path.write_text(json.dumps(document, indent=None if compact else 2) + "\n")
        return [f"wrote {path}"]
    if fmt is not ExportFormat.BVH:
        path.write_bytes(export_document(document, fmt).content)
        return [f"wrote {path}"]
    frames = frames_of(document)
    ids = track_ids(frames)
    if not ids:
        raise ValueError("no person was found in any frame: nothing to write as BVH")
    notes = []
    for tid in ids:
        target = path if len(ids) == 1 else path.with_name(f"{path.stem}_track{tid}.bvh")
        exported = export_bvh(track_sequence(frames, tid))
        target.write_text(exported.text)
        notes.append(
            f"wrote {target}: track {tid}, {exported.frames} frames, "
            f"max reconstruction error {exported.max_error_m * 1000:.3f} mm (bone-length residual)"
        )
    return notes
