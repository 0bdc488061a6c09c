"""CSV and JSON-lines exports: parsed back with the standard library into the documented columns."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

from service.export.formats import CSV_COLUMNS, ExportFormat, export_document, read_results
from service.export.skeleton import H36M_NAMES
from tests.conftest import REPO
from tests.unit.test_export_bvh import document, synthetic_sequence


def test_csv_has_one_row_per_frame_person_joint() -> None:
    a, b = synthetic_sequence(3, 0), synthetic_sequence(2, 1)
    doc = document({4: a, 7: b}, fps=10.0)
    exported = export_document(doc, ExportFormat.CSV)
    assert exported.media_type.startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.content.decode())))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    assert len(rows) == (3 + 2) * 17
    row = next(r for r in rows if r["frame_index"] == "1" and r["track_id"] == "7" and r["joint_name"] == "l_wrist")
    assert int(row["joint_index"]) == H36M_NAMES.index("l_wrist") == 13
    assert float(row["timestamp_s"]) == pytest.approx(0.1)
    assert [float(row[c]) for c in ("camera_x_m", "camera_y_m", "camera_z_m")] == pytest.approx(b[1, 13].tolist())
    assert [float(row[c]) for c in ("x_m", "y_m", "z_m")] == pytest.approx((b[1, 13] - b[1, 0]).tolist())
    assert (float(row["x_px"]), float(row["y_px"]), float(row["score"])) == (13.0, 1.0, 0.5)


def test_csv_leaves_unknown_timestamps_and_unplaced_people_empty() -> None:
    doc = document({0: synthetic_sequence(1, 2)})
    for frame in doc["frames"]:
        frame["timestamp_s"] = None
        for person in frame["people"]:
            person["keypoints_3d_camera"] = None
    rows = list(csv.DictReader(io.StringIO(export_document(doc, ExportFormat.CSV).content.decode())))
    assert rows[0]["timestamp_s"] == ""
    assert [float(rows[0][c]) for c in ("x_m", "y_m", "z_m")] == [0.0, 0.0, 0.0]  # pelvis, root-relative
    assert [rows[0][c] for c in ("camera_x_m", "camera_y_m", "camera_z_m")] == ["", "", ""]


def test_jsonl_round_trips_and_reads_back_as_results() -> None:
    doc = document({1: synthetic_sequence(3, 3)})
    text = export_document(doc, ExportFormat.JSONL).content.decode()
    lines = [json.loads(line) for line in text.splitlines()]
    assert [f["frame_index"] for f in lines] == [0, 1, 2]
    assert read_results(text) == lines
    assert read_results(json.dumps(doc)) == doc["frames"]
    with pytest.raises(ValueError, match="not a pose3d result"):
        read_results('{"a": 1}\n{"b": 2}')


def test_format_from_suffix() -> None:
    assert ExportFormat.from_suffix(".BVH") is ExportFormat.BVH
    assert ExportFormat.from_suffix(".ndjson") is ExportFormat.JSONL
    with pytest.raises(ValueError, match="xyz"):
        ExportFormat.from_suffix(".xyz")


def test_exports_renders_and_the_client_writer_import_no_torch() -> None:
    code = (
        "import sys, service.export.formats, service.client.estimate_cli, service.render.compose, service.render.cli\n"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
