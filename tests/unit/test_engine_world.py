"""Placement and smoothing of engine results (service.engine.world): clips, streams, metadata, edge cases."""

from __future__ import annotations

import numpy as np

from service.engine.framebuffer import StreamMeta
from service.engine.types import FrameResult, PersonResult, WindowMode
from service.engine.world import StreamWorld, place_clip, place_frame, world_from_json, world_to_json
from service.geometry.camera import CameraSpec
from service.geometry.smoothing import SmoothingMethod, SmoothingSpec
from service.geometry.synthetic import CAMERA, IMAGE_SIZE, moving_sequence, project

K = CameraSpec(fx=CAMERA.fx, fy=CAMERA.fy, cx=CAMERA.cx, cy=CAMERA.cy)


def _frames(length: int, seed: int = 0, jitter: float = 0.01) -> list[FrameResult]:
    """Two people (tracks 4 and 9) walking; poses jittered, 2D keypoints exact."""
    rng = np.random.default_rng(seed)
    seqs = [moving_sequence(np.random.default_rng(seed + i), length) for i in range(2)]
    seqs[1][:, 17] += [1.5, 0.0, 2.0]
    out = []
    for k in range(length):
        people = []
        for tid, seq in zip((4, 9), seqs, strict=True):
            kp = project(seq[k, :17] + seq[k, 17], CAMERA).astype(np.float32)
            pose = (seq[k, :17] + rng.normal(0, jitter, (17, 3))).astype(np.float32)
            pose -= pose[0]
            box = np.array([0, 0, 1, 1], np.float32)
            people.append(PersonResult(tid, box, 1.0, kp, np.ones(17, np.float32), pose))
        out.append(FrameResult(k, k / 30, people, IMAGE_SIZE))
    return out


def test_every_person_is_placed_in_one_camera_frame() -> None:
    frame = place_frame(_frames(1, jitter=0.0)[0], K)
    seqs = [moving_sequence(np.random.default_rng(i), 1) for i in range(2)]
    for person, seq, shift in zip(frame.people, seqs, (0.0, 2.0), strict=True):
        assert person.keypoints_3d_camera is not None
        np.testing.assert_allclose(person.keypoints_3d_camera[0], seq[0, 17] + [0.75 * shift, 0, shift], atol=1e-3)
        assert person.distance_m is not None
        assert abs(person.distance_m - float(np.linalg.norm(person.keypoints_3d_camera[0]))) < 1e-5
        assert person.warnings == ()


def test_stream_world_equals_place_clip_for_each_method() -> None:
    frames = _frames(20)
    for method in SmoothingMethod:
        smoothing = SmoothingSpec(method)
        clip = place_clip(frames, K, smoothing)
        world = StreamWorld(max_streams=4)
        meta = world_to_json(K, smoothing)
        streamed = [r for f in frames for r in world.step("s", meta, [f])]
        assert len(streamed) == 20 - smoothing.lag_frames
        streamed += world.step("s", meta, [], final=True)
        assert [f.frame_index for f in streamed] == list(range(20))
        for a, b in zip(streamed, clip, strict=True):
            for pa, pb in zip(a.people, b.people, strict=True):
                assert pa.keypoints_3d_camera is not None
                assert pb.keypoints_3d_camera is not None
                np.testing.assert_array_equal(pa.keypoints_3d_camera, pb.keypoints_3d_camera)
                np.testing.assert_array_equal(pa.keypoints_3d, pb.keypoints_3d)
                t = pa.keypoints_3d_camera - pa.keypoints_3d
                np.testing.assert_allclose(t, np.broadcast_to(t[0], t.shape), atol=1e-5)


def test_unplaceable_people_and_late_frames_pass_through() -> None:
    frames = _frames(6)
    weak = frames[2].people[0]
    frames[2].people[0] = PersonResult(
        weak.track_id, weak.box, 0.1, weak.keypoints_2d, np.zeros(17, np.float32), weak.keypoints_3d
    )
    world = StreamWorld(max_streams=4)
    meta = world_to_json(CameraSpec(), SmoothingSpec(SmoothingMethod.ONE_EURO))
    out = world.step("s", meta, frames[:4])
    (unplaced,) = [p for p in out[2].people if p.track_id == weak.track_id]
    assert unplaced.keypoints_3d_camera is None
    assert "not placed" in unplaced.warnings[0]
    late = world.step("s", meta, [frames[3]])  # frame 3 again: older than the newest smoothed frame
    assert late[0].people[0].keypoints_3d_camera is not None


def test_world_options_survive_the_stream_metadata() -> None:
    smoothing = SmoothingSpec(SmoothingMethod.SAVGOL, half_window=6, polyorder=3)
    camera = CameraSpec(fov_deg=72.5)
    meta = StreamMeta("s", "capf", WindowMode.CAUSAL, False, world=world_to_json(camera, smoothing))
    back = StreamMeta.from_json(meta.to_json())
    assert back == meta
    assert world_from_json(back.world) == (camera, smoothing)
    assert world_to_json(CameraSpec(), SmoothingSpec()) == ""
    assert world_from_json("") == (CameraSpec(), SmoothingSpec())
    legacy = StreamMeta.from_json('{"stream_id": "s", "model": "m", "mode": "centred", "flip_test": true}')
    assert legacy.world == ""
