"""service.engine.tracking: greedy IoU track ids, stable through crossings, never reused, serialisable."""

from __future__ import annotations

import numpy as np
import pytest

from service.engine.tracking import Track, TrackState, assign_tracks, iou_matrix


def test_iou_matrix() -> None:
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 5]])
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30]])
    iou = iou_matrix(a, b)
    assert iou.shape == (2, 3)
    np.testing.assert_allclose(iou[0], [50 / 150, 1.0, 0.0])
    np.testing.assert_allclose(iou[1], [0.0, 0.0, 0.0])  # empty box


def _crossing_clip(frames: int = 60) -> list[np.ndarray]:
    """Two people walking past each other: A (tall, near) left→right, B (smaller, farther) right→left;
    their boxes overlap heavily in the middle frames. Boxes are listed in a shuffled order each frame."""
    rng = np.random.default_rng(0)
    clip = []
    for t in range(frames):
        ax = 20 + 6 * t
        bx = 380 - 6 * t
        a = [ax, 100, ax + 60, 280]
        b = [bx, 130, bx + 45, 265]
        boxes = [a, b] if rng.random() < 0.5 else [b, a]
        clip.append(np.array(boxes, dtype=np.float64))
    return clip


def test_two_people_crossing_keep_their_ids() -> None:
    state = TrackState()
    clip = _crossing_clip()
    seen: dict[int, list[float]] = {}
    for t, boxes in enumerate(clip):
        ids, state = assign_tracks(state, boxes, t)
        state = TrackState.from_bytes(state.to_bytes())  # as the engine keeps it in the frame buffer
        for tid, box in zip(ids, boxes, strict=True):
            seen.setdefault(tid, []).append(float(box[3] - box[1]))  # box height identifies the person
    assert sorted(seen) == [0, 1]
    for heights in seen.values():
        assert len(set(heights)) == 1, "a track switched people"
        assert len(heights) == len(clip)


def test_new_person_gets_new_id_and_ids_are_never_reused() -> None:
    state = TrackState()
    ids0, state = assign_tracks(state, [[0, 0, 10, 10]], 0)
    assert ids0 == [0]
    ids1, state = assign_tracks(state, [[1, 0, 11, 10], [100, 100, 120, 140]], 1)
    assert ids1 == [0, 1]
    # person 0 leaves for longer than max_age; when someone appears at the same place, it is a new id
    for t in range(2, 6):
        ids, state = assign_tracks(state, [[100, 100, 120, 140]], t, max_age=2)
        assert ids == [1]
    assert [t.track_id for t in state.tracks] == [1]
    ids, state = assign_tracks(state, [[1, 0, 11, 10]], 6, max_age=2)
    assert ids == [2]
    assert state.next_id == 3


def test_track_survives_a_short_gap() -> None:
    state = TrackState()
    _, state = assign_tracks(state, [[0, 0, 10, 10]], 0)
    _, state = assign_tracks(state, [], 1)
    _, state = assign_tracks(state, [], 2)
    ids, state = assign_tracks(state, [[0, 0, 10, 10]], 3, max_age=5)
    assert ids == [0]


def test_greedy_prefers_highest_iou() -> None:
    state = TrackState(next_id=2, tracks=(Track(0, (0, 0, 10, 10), 0), Track(1, (4, 0, 14, 10), 0)))
    ids, _ = assign_tracks(state, [[4, 0, 14, 10], [0, 0, 10, 10]], 1)
    assert ids == [1, 0]


def test_below_threshold_is_a_new_track() -> None:
    state = TrackState(next_id=1, tracks=(Track(0, (0, 0, 10, 10), 0),))
    ids, state = assign_tracks(state, [[8, 8, 18, 18]], 1, iou_threshold=0.3)
    assert ids == [1]
    assert state.next_id == 2


def test_state_round_trip_and_bad_bytes() -> None:
    state = TrackState(next_id=7, tracks=(Track(3, (1.5, 2.0, 30.0, 40.25), 12), Track(6, (0, 0, 1, 1), 13)))
    assert TrackState.from_bytes(state.to_bytes()) == state
    assert len(state.to_bytes()) < 200
    for bad in (b"", b"{}", b'{"v": 99, "next_id": 0, "tracks": []}', b"\xff"):
        with pytest.raises(ValueError, match="track state"):
            TrackState.from_bytes(bad)
