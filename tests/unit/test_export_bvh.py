"""BVH export: parse the written file with an independent reader, run FK, compare with the input joints."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from model.skeleton import H36M_JOINT_NAMES
from service.export.bvh import CAMERA_TO_BVH, export_bvh
from service.export.formats import ExportError, ExportFormat, export_document
from service.export.skeleton import H36M_NAMES, H36M_PARENTS
from service.export.tracks import track_sequence
from tests.unit.bvh_reader import forward_kinematics, parse_bvh


def synthetic_sequence(frames: int, seed: int, length_jitter: float = 0.0) -> npt.NDArray[np.float64]:
    """``(T, 17, 3)`` metres camera frame: fixed bone lengths (times ``1 + jitter`` noise per frame), random bone
    directions each frame (so the pelvis and thorax children move independently), the root wandering."""
    rng = np.random.default_rng(seed)
    lengths = rng.uniform(0.08, 0.5, size=17)
    joints = np.zeros((frames, 17, 3))
    for t in range(frames):
        joints[t, 0] = rng.normal(size=3) * [0.5, 0.2, 1.0] + [0, 0, 4.0]
        for j in range(1, 17):
            direction = rng.normal(size=3)
            scale = 1.0 + length_jitter * rng.uniform(-1, 1)
            joints[t, j] = joints[t, H36M_PARENTS[j]] + lengths[j] * scale * direction / np.linalg.norm(direction)
    return joints


def document(joints_per_track: dict[int, npt.NDArray[np.float64]], fps: float = 25.0) -> dict[str, Any]:
    frames = max(len(j) for j in joints_per_track.values())
    return {
        "frames": [
            {
                "frame_index": t,
                "timestamp_s": t / fps,
                "people": [
                    {
                        "track_id": tid,
                        "box": [0.0, 0.0, 16.0, float(t)],  # as every result person has one
                        "keypoints_2d": [[float(j), float(t)] for j in range(17)],
                        "keypoint_scores": [0.5] * 17,
                        "keypoints_3d": (joints[t] - joints[t, 0]).tolist(),
                        "keypoints_3d_camera": joints[t].tolist(),
                    }
                    for tid, joints in joints_per_track.items()
                    if t < len(joints)
                ],
            }
            for t in range(frames)
        ]
    }


def reconstruction_error(text: str, joints: npt.NDArray[np.float64]) -> float:
    bvh = parse_bvh(text)
    assert len(bvh.motion) == len(joints)
    worst = 0.0
    for t in range(len(joints)):
        positions = forward_kinematics(bvh, t)
        rebuilt = np.stack([positions[name] for name in H36M_NAMES]) @ CAMERA_TO_BVH  # back to the camera frame
        worst = max(worst, float(np.linalg.norm(rebuilt - joints[t], axis=-1).max()))
    return worst


def test_skeleton_matches_the_model_joint_order() -> None:
    assert H36M_NAMES == H36M_JOINT_NAMES


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_round_trip_reproduces_joints_within_a_millimetre(seed: int) -> None:
    joints = synthetic_sequence(40, seed)
    exported = export_bvh(track_sequence(document({3: joints})["frames"], 3))
    error = reconstruction_error(exported.text, joints)
    print(
        f"seed {seed}: max reconstruction error {error * 1000:.6f} mm (exporter reports {exported.max_error_m:.2e} m)"
    )
    assert error < 1e-3
    assert exported.max_error_m < 1e-3
    assert abs(exported.max_error_m - error) < 1e-5


def test_bone_length_variation_is_the_reported_residual() -> None:
    """Per-frame lengths differ by up to ±5 %: bones keep the median length, so the error is the length residual."""
    joints = synthetic_sequence(30, 7, length_jitter=0.05)
    exported = export_bvh(track_sequence(document({0: joints})["frames"], 0))
    error = reconstruction_error(exported.text, joints)
    assert error > 1e-3  # lengths really vary …
    assert abs(exported.max_error_m - error) < 1e-5  # … and the exporter reports exactly that residual
    bvh = parse_bvh(exported.text)
    head = next(j for j in bvh.joints if j.name == "head")
    lengths = np.linalg.norm(joints[:, 10] - joints[:, 9], axis=-1)
    assert np.linalg.norm(head.offset) == pytest.approx(np.median(lengths), abs=1e-6)


def test_header_frame_time_and_root_translation() -> None:
    joints = synthetic_sequence(5, 3)
    bvh = parse_bvh(export_bvh(track_sequence(document({0: joints}, fps=25.0)["frames"], 0)).text)
    assert bvh.frame_time == pytest.approx(0.04)
    assert bvh.joints[0].name == "pelvis"
    assert bvh.joints[0].channels[:3] == ["Xposition", "Yposition", "Zposition"]
    np.testing.assert_allclose(bvh.motion[:, :3], joints[:, 0] * [1, -1, -1], atol=1e-6)  # y up, z to camera
    names = {j.name for j in bvh.joints}
    assert set(H36M_NAMES) <= names


def test_one_bvh_per_track_zipped_or_picked() -> None:
    doc = document({1: synthetic_sequence(6, 4), 2: synthetic_sequence(4, 5)})
    both = export_document(doc, ExportFormat.BVH)
    assert both.media_type == "application/zip"
    with zipfile.ZipFile(io.BytesIO(both.content)) as archive:
        assert sorted(archive.namelist()) == ["pose3d_track1.bvh", "pose3d_track2.bvh"]
        assert len(parse_bvh(archive.read("pose3d_track2.bvh").decode()).motion) == 4
    one = export_document(doc, ExportFormat.BVH, track=2)
    assert one.media_type == "application/x-bvh"
    assert one.filename == "pose3d_track2.bvh"
    assert set(both.bvh_max_error_m) == {1, 2}
    with pytest.raises(ExportError, match="track 9"):
        export_document(doc, ExportFormat.BVH, track=9)
    with pytest.raises(ExportError, match="no person"):
        export_document({"frames": [{"frame_index": 0, "timestamp_s": None, "people": []}]}, ExportFormat.BVH)


def test_missing_frames_hold_the_previous_pose() -> None:
    joints = synthetic_sequence(4, 6)
    doc = document({5: joints})
    doc["frames"][2]["people"] = []
    track = track_sequence(doc["frames"], 5)
    assert track.present.tolist() == [True, True, False, True]
    np.testing.assert_array_equal(track.joints_3d[2], joints[1])


def test_a_track_with_an_unplaced_frame_is_written_root_relative() -> None:
    joints = synthetic_sequence(3, 8)
    doc = document({0: joints})
    doc["frames"][1]["people"][0]["keypoints_3d_camera"] = None
    track = track_sequence(doc["frames"], 0)
    np.testing.assert_allclose(track.joints_3d, joints - joints[:, :1])
