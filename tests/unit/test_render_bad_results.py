"""``pose3d render`` of a results file that is JSON but no pose3d result (frames without ``frame_index``, ``frames``
not a list, a person without its joints): one line naming the problem and exit 1, as for any other bad input.
Before, each died with a KeyError or TypeError traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from service.cli import main

POSE_2D = [[10.0 + j, 20.0 + j] for j in range(17)]
POSE_3D = [[0.01 * j, 0.02 * j, 0.0] for j in range(17)]
PERSON = {"track_id": 0, "box": [0.0, 0.0, 40.0, 60.0], "keypoints_2d": POSE_2D, "keypoint_scores": [0.9] * 17,
          "keypoints_3d": POSE_3D}  # fmt: skip


def person(**changes: Any) -> dict[str, Any]:
    return {k: v for k, v in {**PERSON, **changes}.items() if v is not None}


BAD: dict[str, str] = {
    "no frame_index": json.dumps({"frames": [{"people": []}]}),
    "frames not a list": json.dumps({"frames": 5}),
    "frames of numbers": json.dumps({"frames": [1, 2]}),
    "people not a list": json.dumps({"frames": [{"frame_index": 0, "people": 3}]}),
    "person without joints": json.dumps({"frames": [{"frame_index": 0, "people": [{"track_id": 0}]}]}),
    "box a number": json.dumps({"frames": [{"frame_index": 0, "people": [person(box=5)]}]}),
    "track id text": json.dumps({"frames": [{"frame_index": 0, "people": [person(track_id="a")]}]}),
    "timestamp text": json.dumps({"frames": [{"frame_index": 0, "timestamp_s": "x", "people": []}]}),
    "lines without frame_index": json.dumps({"people": []}) + "\n" + json.dumps({"people": []}),
}


@pytest.mark.parametrize("suffix", [".png", ".mp4"])
@pytest.mark.parametrize("case", sorted(BAD))
def test_a_file_that_is_no_pose3d_result_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, suffix: str
) -> None:
    results = tmp_path / "results.json"
    results.write_text(BAD[case])
    assert main(["render", str(results), "-o", str(tmp_path / f"out{suffix}"), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("pose3d render: "), err
    assert len(err.splitlines()) == 1, err


def test_a_good_file_still_renders(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"frames": [{"frame_index": 0, "timestamp_s": None, "people": [person()]}]}))
    assert main(["render", str(results), "-o", str(tmp_path / "out.png")]) == 0
