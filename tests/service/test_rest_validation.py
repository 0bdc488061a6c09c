"""Request validation at the gateway: malformed is 400, unacceptable values 422, too many 413."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.joints import JointSet
from service.api.json_offload import KeypointFrames, parse_keypoints_fields
from service.api.schemas import KeypointsRequest
from service.api.validation import (
    check_boxes_inside,
    keypoint_array,
    parse_bool,
    parse_boxes,
    parse_choice,
    parse_int,
)
from service.config import LimitSettings
from service.engine.types import KeypointFrame, WindowMode
from service.errors import BadRequest, InvalidInput, PayloadTooLarge, Pose3DError

LIMITS = LimitSettings(max_people=3, max_clip_frames=50)
SKELETON = [[100.0 + j, 50.0 + 5 * j] for j in range(17)]


@pytest.mark.parametrize(("text", "value"), [("true", True), ("0", False), (" Yes ", True), ("off", False), ("", None)])
def test_bool_fields(text: str, value: bool | None) -> None:
    assert parse_bool("flip_test", text) is value


def test_bad_bool_and_int_are_400_out_of_range_is_422() -> None:
    with pytest.raises(BadRequest):
        parse_bool("flip_test", "maybe")
    with pytest.raises(BadRequest):
        parse_int("max_people", "two", 1, 3)
    with pytest.raises(InvalidInput):
        parse_int("max_people", "4", 1, 3)
    assert parse_int("max_people", "3", 1, 3) == 3
    with pytest.raises(InvalidInput):
        parse_choice("mode", "sideways", WindowMode, WindowMode.CENTRED)
    assert parse_choice("mode", " Causal ", WindowMode, WindowMode.CENTRED) is WindowMode.CAUSAL
    assert parse_choice("mode", "", WindowMode, WindowMode.CENTRED) is WindowMode.CENTRED


def test_boxes() -> None:
    assert parse_boxes("[[1, 2, 30, 40.5]]", LIMITS) == ((1.0, 2.0, 30.0, 40.5),)
    assert parse_boxes(None, LIMITS) is None
    with pytest.raises(BadRequest):
        parse_boxes("[[1, 2, 3, 4]", LIMITS)
    with pytest.raises(BadRequest):  # json.loads raises a plain ValueError past Python's int digit limit
        parse_boxes("[[1, 2, " + "9" * 5000 + ", 4]]", LIMITS)
    for bad in (
        "{}",
        "[]",
        "[[1, 2, 3]]",
        "[[3, 2, 1, 4]]",
        '[["a", 2, 3, 4]]',
        "[[1, 2, NaN, 4]]",
        "[[true, 1, 2, 3]]",
    ):
        with pytest.raises(InvalidInput):
            parse_boxes(bad, LIMITS)
    with pytest.raises(PayloadTooLarge):
        parse_boxes("[" + ",".join(["[0, 0, 5, 5]"] * 4) + "]", LIMITS)
    with pytest.raises(InvalidInput, match="outside"):
        check_boxes_inside([(200.0, 0.0, 300.0, 10.0)], 100, 100)


def test_keypoints_one_frame_or_sequence_with_optional_scores() -> None:
    xy, scores = keypoint_array(SKELETON, (640, 480), LIMITS)
    assert xy.shape == (1, 17, 2)
    assert xy.dtype == np.float32
    np.testing.assert_array_equal(scores, np.ones((1, 17), np.float32))
    with_scores = [[[x, y, 0.5] for x, y in SKELETON]] * 4
    xy, scores = keypoint_array(with_scores, (640, 480), LIMITS)
    assert xy.shape == (4, 17, 2)
    np.testing.assert_allclose(scores, 0.5)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ([[1.0, 2.0]] * 16, InvalidInput),  # 16 joints
        ([[[1.0, 2.0]] * 17, [[1.0, 2.0, 3.0]] * 17], InvalidInput),  # ragged
        ([[1.0, 2.0, 3.0, 4.0]] * 17, InvalidInput),
        ([[math.nan, 2.0]] * 17, InvalidInput),
        ([[math.inf, 2.0]] * 17, InvalidInput),
        ([[1e300, 2.0]] * 17, InvalidInput),  # finite but absurd
        ([[1.0, 2.0, 1.5]] * 17, InvalidInput),  # score above 1
        ([], InvalidInput),
        ([[[1.0, 2.0]] * 17] * 51, PayloadTooLarge),  # more frames than the limit
    ],
)
def test_bad_keypoints(raw: Any, error: type[Pose3DError]) -> None:
    with pytest.raises(error):
        keypoint_array(raw, (640, 480), LIMITS)


def keypoint_frames(body: KeypointsRequest, limits: LimitSettings) -> list[KeypointFrame]:
    """The frames the application layer makes of a keypoints body (what the REST and job routes run)."""
    _, xy, scores, times = parse_keypoints_fields(body.model_dump_json().encode(), limits)
    return list(KeypointFrames.of(body, xy, scores, times))


def test_keypoint_frames_carry_joint_set_size_and_timestamps() -> None:
    body = KeypointsRequest(keypoints_2d=[SKELETON] * 3, image_size=(640, 480), joint_set=JointSet.H36M)
    frames = keypoint_frames(body, LIMITS)
    assert [f.frame_index for f in frames] == [0, 1, 2]
    assert frames[2].timestamp_s == pytest.approx(2 / 30)
    assert all(f.image_size == (640, 480) and f.joint_set is JointSet.H36M for f in frames)
    body = KeypointsRequest(keypoints_2d=[SKELETON] * 2, image_size=(640, 480), timestamps_s=[0.0])
    with pytest.raises(InvalidInput, match="timestamps"):
        keypoint_frames(body, LIMITS)


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=20),
    max_leaves=200,
)


@settings(max_examples=150, deadline=None)
@given(raw=json_values, width=st.integers(-5, 10_000), height=st.integers(-5, 10_000))
def test_any_json_keypoints_either_validate_or_raise_a_client_error(raw: Any, width: int, height: int) -> None:
    try:
        xy, scores = keypoint_array(raw, (width, height), LIMITS)
    except Pose3DError as exc:
        status = exc.status
    else:
        status = 200
        assert xy.shape[1:] == (17, 2)
        assert np.isfinite(xy).all()
        assert ((scores >= 0) & (scores <= 1)).all()
    assert status == 200 or 400 <= status < 500


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=60) | st.builds(str, json_values))
def test_any_boxes_text_either_parses_or_raises_a_client_error(text: str) -> None:
    try:
        boxes = parse_boxes(text, LIMITS)
    except Pose3DError as exc:
        status = exc.status
    else:
        status = 200
        assert boxes is None or all(b[2] > b[0] and b[3] > b[1] for b in boxes)
    assert status in (200, 400, 413, 422)
