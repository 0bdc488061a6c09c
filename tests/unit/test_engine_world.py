"""Placement and smoothing of engine results (service.engine.world): clips, streams, metadata, edge cases."""

from __future__ import annotations

import numpy as np

from service.engine.framebuffer import AppendStatus, Emission, StreamMeta
from service.engine.framebuffer.base import snapshot_for
from service.engine.types import FrameResult, PersonResult, WindowMode
from service.engine.world import (
    SmoothingUpdate,
    decode_smoother,
    encode_smoother,
    place_clip,
    place_frame,
    smooth_stream,
    world_from_json,
    world_to_json,
)
from service.geometry.camera import CameraSpec
from service.geometry.smoothing import SmoothingMethod, SmoothingSpec, TrackSmoother
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


class Stored:
    """A stream's smoothing state as the frame buffer keeps it (the current one and the one it replaced)."""

    def __init__(self) -> None:
        self.current: tuple[int, bytes] = (0, b"")
        self.previous: tuple[int, bytes] | None = None

    def emission(self, start: int, stop: int) -> Emission:
        return Emission(
            AppendStatus.ADDED, range(start, stop), smoothing=snapshot_for(start, self.current, self.previous)
        )

    def store(self, update: SmoothingUpdate | None) -> None:
        if update is not None and update.expected == self.current[0]:
            self.previous, self.current = self.current, (update.cursor, update.state)


def _stream(frames: list[FrameResult], meta: str, stored: Stored) -> list[FrameResult]:
    """Each frame pushed alone (emitting itself) through the stored state, then the close."""
    out: list[FrameResult] = []
    for f in frames:
        got, update = smooth_stream(meta, [stored.emission(f.frame_index, f.frame_index + 1)], [f])
        stored.store(update)
        out += got
    end = len(frames)
    return out + smooth_stream(meta, [stored.emission(end, end)], [], final=True)[0]


def _assert_same(got: list[FrameResult], want: list[FrameResult]) -> None:
    assert [f.frame_index for f in got] == [f.frame_index for f in want]
    for a, b in zip(got, want, strict=True):
        for pa, pb in zip(a.people, b.people, strict=True):
            assert pa.keypoints_3d_camera is not None
            assert pb.keypoints_3d_camera is not None
            np.testing.assert_array_equal(pa.keypoints_3d_camera, pb.keypoints_3d_camera)
            np.testing.assert_array_equal(pa.keypoints_3d, pb.keypoints_3d)
            assert pa.distance_m == pb.distance_m


def test_a_stream_smoothed_through_its_stored_state_equals_place_clip_for_each_method() -> None:
    frames = _frames(20)
    for method in SmoothingMethod:
        smoothing = SmoothingSpec(method)
        clip = place_clip(frames, K, smoothing)
        meta = world_to_json(K, smoothing)
        stored = Stored()
        streamed = _stream(frames, meta, stored)  # every step resumes from bytes: any worker could have served it
        assert len(streamed) == 20
        _assert_same(streamed, clip)
        for a in streamed:
            for pa in a.people:
                assert pa.keypoints_3d_camera is not None
                t = pa.keypoints_3d_camera - pa.keypoints_3d
                np.testing.assert_allclose(t, np.broadcast_to(t[0], t.shape), atol=1e-5)


def test_the_smoother_survives_its_bytes_exactly() -> None:
    frames = [place_frame(f, K) for f in _frames(7)]
    for method in (SmoothingMethod.ONE_EURO, SmoothingMethod.SAVGOL):
        spec = SmoothingSpec(method, half_window=3)
        smoother: TrackSmoother[FrameResult] = TrackSmoother(spec)
        for f in frames[:5]:
            smoother.push(
                f.frame_index, f.timestamp_s, {p.track_id: p.keypoints_3d.astype(np.float64) for p in f.people}, f
            )
        data = encode_smoother(smoother)
        back = decode_smoother(spec, data)
        assert encode_smoother(back) == data
        assert encode_smoother(decode_smoother(spec, b"")) == encode_smoother(TrackSmoother(spec))


def test_a_replayed_push_is_answered_as_the_first_time_and_a_lost_one_restarts_smoothing() -> None:
    frames = _frames(10)
    meta = world_to_json(K, SmoothingSpec(SmoothingMethod.SAVGOL, half_window=2))
    stored = Stored()
    first = _stream(frames[:6], meta, stored)[:4]  # frames 0-3 released (4, 5 held)
    replay = stored.emission(5, 6)  # frame 5 retried after its state was stored: the state before it is kept
    again, update = smooth_stream(meta, [replay], [frames[5]])
    assert [f.frame_index for f in again] == [3]
    _assert_same(again, first[3:4])
    stored.store(update)  # refused: the stored state is already past it
    assert stored.current[0] == 6
    old, update = smooth_stream(meta, [stored.emission(2, 3)], [frames[2]])  # too old to smooth again
    assert update is None
    assert old[0].people[0].keypoints_3d_camera is not None
    lost = stored.emission(7, 8)  # frame 6's push never stored its state: smoothing restarts at frame 7
    assert lost.smoothing.cursor == 6
    restarted, update = smooth_stream(meta, [lost], [frames[7]])
    assert restarted == []
    assert update is not None
    assert (update.expected, update.cursor) == (6, 8)


def test_unplaceable_people_pass_through() -> None:
    frames = _frames(6)
    weak = frames[2].people[0]
    frames[2].people[0] = PersonResult(
        weak.track_id, weak.box, 0.1, weak.keypoints_2d, np.zeros(17, np.float32), weak.keypoints_3d
    )
    meta = world_to_json(CameraSpec(), SmoothingSpec(SmoothingMethod.ONE_EURO))
    out, _ = smooth_stream(meta, [Stored().emission(0, 4)], frames[:4])
    (unplaced,) = [p for p in out[2].people if p.track_id == weak.track_id]
    assert unplaced.keypoints_3d_camera is None
    assert "not placed" in unplaced.warnings[0]


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
