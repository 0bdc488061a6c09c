"""The committed generated code is what the protos generate, and the engine types round-trip through it."""

from __future__ import annotations

import numpy as np

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
    WindowMode,
)
from service.rpc import codec
from service.rpc.codegen import stale_files


def test_committed_proto_code_is_current() -> None:
    assert stale_files() == [], "run `python -m service.rpc.codegen` (or `make proto`) and commit service/proto_gen"


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


def test_estimate_result_round_trips_bit_exactly() -> None:
    info = ModelInfo("pstmo-27", "pstmo", "1", "random", 27, 1, "h36m", "cpu", False, True)
    result = EstimateResult(
        request_id="r1",
        model=info,
        box_source=BoxSource.DETECTOR,
        frames=[FrameResult(0, 0.0, [_person(1), _person(2)]), FrameResult(1, None, [])],
        timings_ms={"lift": 1.5},
    )
    back = codec.estimate_result_from_pb(codec.estimate_result_to_pb(result, ("a",) * 17))
    assert back.model == info
    assert back.box_source == BoxSource.DETECTOR
    assert back.timings_ms == {"lift": 1.5}
    assert [f.frame_index for f in back.frames] == [0, 1]
    assert back.frames[0].timestamp_s == 0.0
    assert back.frames[1].timestamp_s is None
    for got, want in zip(back.frames[0].people, result.frames[0].people, strict=True):
        assert got.track_id == want.track_id
        assert got.box_score == want.box_score
        for name in ("box", "keypoints_2d", "keypoint_scores", "keypoints_3d"):
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name))


def test_frames_and_options_round_trip() -> None:
    kp = KeypointFrame(
        keypoints=np.arange(34, dtype=np.float32).reshape(17, 2),
        scores=np.linspace(0, 1, 17, dtype=np.float32),
        image_size=(640, 480),
        joint_set=JointSet.H36M,
        frame_index=7,
        timestamp_s=0.25,
    )
    back = codec.frame_from_pb(codec.frame_to_pb(kp))
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
    image = codec.frame_from_pb(codec.frame_to_pb(ImageFrame(raw, frame_index=3)))
    assert isinstance(image, ImageFrame)
    assert not isinstance(image.image, bytes)
    np.testing.assert_array_equal(image.image, raw)
    encoded = codec.frame_from_pb(codec.frame_to_pb(ImageFrame(b"\xff\xd8jpeg")))
    assert isinstance(encoded, ImageFrame)
    assert encoded.image == b"\xff\xd8jpeg"
    options = EstimateOptions(
        model="m", boxes=((1.0, 2.0, 3.0, 4.0),), flip_test=False, max_people=2, mode=WindowMode.CAUSAL
    )
    assert codec.options_from_pb(codec.options_to_pb(options)) == options
    assert codec.options_from_pb(codec.options_to_pb(EstimateOptions())) == EstimateOptions()
