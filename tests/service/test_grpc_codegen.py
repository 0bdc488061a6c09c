"""The committed generated code is what the protos generate, and the engine types round-trip through the worker
link's codec (packed arrays: bit-exact)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from model.joints import JointSet
from service.engine.types import (
    BoxSource,
    EstimateOptions,
    EstimateResult,
    FrameResult,
    ImageFrame,
    KeypointFrame,
    ModelInfo,
    PersonResult,
    Progress,
    Summary,
    WindowMode,
)
from service.rpc import link
from service.rpc.codegen import stale_files


def test_committed_proto_code_is_current() -> None:
    assert stale_files() == [], "run `python -m service.rpc.codegen` (or `make proto`) and commit service/proto_gen"


placed_rng = np.random.default_rng(9)


def _person(seed: int) -> PersonResult:
    rng = np.random.default_rng(seed)
    return PersonResult(
        track_id=seed,
        box=rng.uniform(0, 500, 4).astype(np.float32),
        box_score=float(np.float32(rng.uniform())),
        keypoints_2d=rng.uniform(0, 500, (17, 2)).astype(np.float32),
        keypoint_scores=rng.uniform(0, 1, 17).astype(np.float32),
        keypoints_3d=rng.normal(0, 0.5, (17, 3)).astype(np.float32),
    )


placed = replace(_person(3), keypoints_3d_camera=placed_rng.normal(0, 3, (17, 3)).astype(np.float32),
                 distance_m=3.25, warnings=("low", "far"))  # fmt: skip


def test_a_worker_progress_page_round_trips_bit_exactly_through_packed_arrays() -> None:
    info = ModelInfo("pstmo-27", "pstmo", "1", "random", 27, 1, "h36m", "cpu", False, True)
    result = EstimateResult(
        request_id="r1",
        model=info,
        box_source=BoxSource.DETECTOR,
        frames=[FrameResult(0, 0.0, [_person(1), _person(2)]), FrameResult(1, None, []), FrameResult(2, 0.5, [placed])],
        timings_ms={"lift": 1.5},
    )
    summary = Summary(info, result.box_source, result.timings_ms)
    step = link.progress_from_pb(link.progress_to_pb(Progress(result.frames, 3, summary)))
    assert step.summary == summary
    assert step.frames_decoded == 3
    back = EstimateResult("r1", info, summary.box_source, step.results, summary.timings_ms)
    assert back.model == info
    assert back.box_source == BoxSource.DETECTOR
    assert back.timings_ms == {"lift": 1.5}
    assert [f.frame_index for f in back.frames] == [0, 1, 2]
    assert back.frames[0].timestamp_s == 0.0
    assert back.frames[1].timestamp_s is None
    got_people = [p for f in back.frames for p in f.people]
    for got, want in zip(got_people, [p for f in result.frames for p in f.people], strict=True):
        assert (got.track_id, got.box_score, got.distance_m, got.warnings) == (
            want.track_id, want.box_score, want.distance_m, want.warnings
        )  # fmt: skip
        for name in ("box", "keypoints_2d", "keypoint_scores", "keypoints_3d", "keypoints_3d_camera"):
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name))  # bit-exact, NaN never leaks
    assert [len(f.people) for f in back.frames] == [2, 0, 1]


def test_a_malformed_packed_array_is_refused() -> None:
    msg = link.results_to_pb([FrameResult(0, None, [_person(1)])])
    msg.person.shape[:] = [1, 150]
    with pytest.raises(ValueError, match="shape"):
        link.results_from_pb(msg)
    msg = link.results_to_pb([FrameResult(0, None, [_person(1)])])
    msg.people[:] = [2]
    with pytest.raises(ValueError, match="counts"):
        link.results_from_pb(msg)


def test_frames_and_options_round_trip() -> None:
    kp = KeypointFrame(
        keypoints=np.arange(34, dtype=np.float32).reshape(17, 2),
        scores=np.linspace(0, 1, 17, dtype=np.float32),
        image_size=(640, 480),
        joint_set=JointSet.H36M,
        frame_index=7,
        timestamp_s=0.25,
    )
    back = link.frame_from_pb(link.frame_to_pb(kp))
    assert isinstance(back, KeypointFrame)
    np.testing.assert_array_equal(back.keypoints, kp.keypoints)
    np.testing.assert_array_equal(back.scores, kp.scores)
    assert (back.image_size, back.joint_set, back.frame_index, back.timestamp_s) == (
        (640, 480),
        JointSet.H36M,
        7,
        0.25,
    )
    raw = np.random.default_rng(0).integers(0, 255, (4, 6, 3), dtype=np.uint8)
    image = link.frame_from_pb(link.frame_to_pb(ImageFrame(raw, frame_index=3)))
    assert isinstance(image, ImageFrame)
    assert not isinstance(image.image, bytes)
    np.testing.assert_array_equal(image.image, raw)
    encoded = link.frame_from_pb(link.frame_to_pb(ImageFrame(b"\xff\xd8jpeg")))
    assert isinstance(encoded, ImageFrame)
    assert encoded.image == b"\xff\xd8jpeg"
    options = EstimateOptions(
        model="m", boxes=((1.0, 2.0, 3.0, 4.0),), flip_test=False, max_people=2, mode=WindowMode.CAUSAL
    )
    assert link.options_from_pb(link.options_to_pb(options)) == options
    assert link.options_from_pb(link.options_to_pb(EstimateOptions())) == EstimateOptions()
