"""Pose-guided boxes: the person detector runs on <= 1 in k frames of a steady clip, a person who leaves and
comes back is found again, and a stream pushed frame by frame gives the clip's poses."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from service.config import CommonSettings, DetectorSettings, EngineSettings, LifterKind, ModelSpec
from service.engine.inprocess import InProcessEngine, build_engine
from service.engine.pose_guide import (
    Guide,
    GuideSettings,
    attach_guide,
    guided_boxes,
    guides,
    pose_to_box,
    read_guide,
)
from service.engine.tracking import TrackState
from service.engine.types import (
    EstimateOptions,
    Frame,
    ImageFrame,
    WindowMode,
    Work,
)
from service.engine.work import collect, push
from service.metrics import Metrics
from tests.service.test_engine_support import assert_same_poses
from tests.unit.rtmpose_standin import rtmpose_standin
from tests.unit.test_person_detector import mean_channel0_detector

K = 5
SETTINGS = GuideSettings(detect_every=K, min_score=0.3)


def test_pose_to_box_is_rtmlibs_pose_to_bbox() -> None:
    tracker = pytest.importorskip("rtmlib.tools.solution.pose_tracker")
    kp = np.random.default_rng(0).random((3, 17, 2)).astype(np.float32) * 300
    expected = np.array([tracker.pose_to_bbox(k, expansion=1.25) for k in kp])
    np.testing.assert_allclose(pose_to_box(kp), expected, atol=1e-3)


def test_decisions() -> None:
    boxes = np.array([[10, 10, 50, 90]], np.float32)
    prev = Guide(6, boxes, np.array([0.8], np.float32))
    np.testing.assert_array_equal(guided_boxes(prev, 7, SETTINGS), boxes)
    assert guided_boxes(prev, 10, SETTINGS) is None  # every k frames
    assert guided_boxes(prev, 8, SETTINGS) is None  # frame 7 not stored yet
    assert guided_boxes(None, 7, SETTINGS) is None  # first frame
    assert guided_boxes(Guide(6, boxes, np.array([0.2], np.float32)), 7, SETTINGS) is None  # lost
    assert guided_boxes(Guide(6, np.zeros((0, 4), np.float32), np.zeros(0, np.float32)), 7, SETTINGS) is None
    assert guided_boxes(Guide(6, np.array([[5, 5, 5.5, 40]], np.float32), np.ones(1, np.float32)), 7, SETTINGS) is None


def test_a_request_keeping_max_people_follows_a_full_track_past_the_periodic_look() -> None:
    """With ``max_people`` and that many people tracked, none lost, frame k takes the guide too; with fewer (a
    newcomer may be there to find) or a lost one, or without the bound, the detector looks again."""
    one = Guide(9, np.array([[10, 10, 50, 90]], np.float32), np.array([0.8], np.float32))
    np.testing.assert_array_equal(guided_boxes(one, 10, replace(SETTINGS, max_people=1)), one.boxes)
    assert guided_boxes(one, 10, replace(SETTINGS, max_people=2)) is None
    assert guided_boxes(one, 10, SETTINGS) is None
    lost = Guide(9, one.boxes, np.array([0.2], np.float32))
    assert guided_boxes(lost, 10, replace(SETTINGS, max_people=1)) is None
    assert guided_boxes(None, 0, replace(SETTINGS, max_people=1)) is None  # the first frame always looks
    assert guides(10, replace(SETTINGS, max_people=1))
    assert not guides(10, SETTINGS)


def test_guide_rides_in_the_tracker_state() -> None:
    state = TrackState(next_id=2)
    raw = attach_guide(state.to_bytes(), Guide(4, np.array([[1.5, 2, 3, 4]], np.float32), np.array([0.5], np.float32)))
    assert TrackState.from_bytes(raw) == state
    guide = read_guide(raw)
    assert guide is not None
    assert guide.frame_index == 4
    np.testing.assert_array_equal(guide.boxes, [[1.5, 2, 3, 4]])
    assert read_guide(state.to_bytes()) is None


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("guide")
    return rtmpose_standin(d / "rtmpose.onnx", seed=11), mean_channel0_detector(d / "person.onnx")


def _settings(files: tuple[Path, Path]) -> CommonSettings:
    pose, person = files
    return CommonSettings(
        allow_random_weights=True,
        detector=DetectorSettings(
            family="rtmpose",
            rtmpose_onnx=pose,
            flip_test=False,
            person_detector_onnx=person,
            person_score_threshold=0.5,
            pose_guided_boxes=True,
            detect_every=K,
            guide_min_score=0.3,
        ),
        models={"pstmo": ModelSpec(kind=LifterKind.PSTMO, arch="pstmo-tiny-9", frames=9, stride=1)},
        default_image_model="pstmo",
        default_clip_model="pstmo",
        engine=EngineSettings(max_batch_size=8, max_delay_ms=1.0, torch_threads=1, request_timeout_s=3600),
    )


@pytest.fixture
async def engine(onnx_files: tuple[Path, Path]) -> AsyncIterator[InProcessEngine]:
    eng = await build_engine(_settings(onnx_files), Metrics())
    yield eng
    await eng.aclose()


def _frames(present: list[bool]) -> list[Frame]:
    """64x64 frames: a person (the detector's score is the mean blue / 255) or an empty (dark blue) scene."""
    rng = np.random.default_rng(1)
    out: list[Frame] = []
    for i, here in enumerate(present):
        img = rng.integers(0, 40, (64, 64, 3), dtype=np.uint8)
        if here:
            img[..., 2] = 220
            img[10 + i % 3 : 40, 12:26, 0] = 250
        out.append(ImageFrame(img, frame_index=i, timestamp_s=i / 25))
    return out


def _runs(engine: InProcessEngine) -> float:
    return engine.metrics.person_detector_run_count()


async def test_steady_clip_runs_the_detector_once_in_k_frames(engine: InProcessEngine) -> None:
    frames = _frames([True] * 20)
    result = await collect(engine, Work("r", frames, EstimateOptions(mode=WindowMode.CAUSAL)))
    assert _runs(engine) <= 20 / K
    assert all(len(f.people) == 1 for f in result.frames)
    for prev, frame in zip(result.frames, result.frames[1:], strict=False):
        (person,) = frame.people
        if frame.frame_index % K == 0:  # the detector's box (canvas [8, 8, 24, 40] at ratio 1)
            np.testing.assert_allclose(person.box, [8, 8, 24, 40], atol=1e-4)
        else:  # the box around the previous frame's keypoints, grown 1.25x
            np.testing.assert_allclose(person.box, pose_to_box(prev.people[0].keypoints_2d[None])[0], atol=1e-3)


async def test_a_clip_keeping_one_person_runs_the_detector_only_on_its_first_frame(engine: InProcessEngine) -> None:
    """``max_people = 1`` with one person tracked throughout: the detector runs on the first frame only, not every k
    frames (MediaPipe's video mode: a fresh look could only find people the request would not keep); every later
    frame, the k-th included, takes its box from the frame before's keypoints. (A lost track still brings the
    detector back: ``test_a_request_keeping_max_people_follows_a_full_track_past_the_periodic_look``.)"""
    opts = EstimateOptions(mode=WindowMode.CAUSAL, max_people=1)
    result = await collect(engine, Work("r", _frames([True] * 20), opts))
    assert [len(f.people) for f in result.frames] == [1] * 20
    assert _runs(engine) == 1
    for prev, frame in zip(result.frames, result.frames[1:], strict=False):
        np.testing.assert_allclose(frame.people[0].box, pose_to_box(prev.people[0].keypoints_2d[None])[0], atol=1e-3)


async def test_a_person_who_leaves_and_returns_is_found_again(engine: InProcessEngine) -> None:
    present = [True] * 8 + [False] * 7 + [True] * 8
    result = await collect(engine, Work("r", _frames(present), EstimateOptions(mode=WindowMode.CAUSAL)))
    counts = [len(f.people) for f in result.frames]
    assert counts[:10] == [1] * 10  # guided boxes keep the track until the detector looks again at frame 10
    assert counts[10:15] == [0] * 5  # gone: the detector runs on every frame while nobody is tracked
    assert counts[15:] == [1] * 8  # back: found by the detector, then guided again
    assert _runs(engine) <= 2 + 6 + 2


@pytest.mark.parametrize("max_people", [None, 1])
async def test_stream_equals_clip_with_guided_boxes(engine: InProcessEngine, max_people: int | None) -> None:
    frames = _frames([True] * 12 + [False] * 3 + [True] * 6)
    opts = EstimateOptions(mode=WindowMode.CENTRED, max_people=max_people)
    clip = await collect(engine, Work("r", frames, opts))
    runs = _runs(engine)
    await engine.open_stream(opts, "guided")
    streamed = []
    for frame in frames:
        streamed.extend(await push(engine, "guided", [frame]))
    streamed.extend(await engine.close_stream("guided"))
    assert _runs(engine) == 2 * runs  # the same person-detector schedule
    assert_same_poses(clip.frames, streamed)
    for a, b in zip(clip.frames, sorted(streamed, key=lambda f: f.frame_index), strict=True):
        for pa, pb in zip(a.people, b.people, strict=True):
            np.testing.assert_array_equal(pa.box, pb.box)


async def test_detector_frames_do_not_wait_for_the_frames_before(
    engine: InProcessEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clip's person-detector frames (every k-th) need nothing of the frame before, so their detector runs
    while earlier frames are still in the 2D stage: frame 0's 2D detection is held until the person detector has
    also run for frame k (a gate, not a sleep: one frame after another it never would, and the wait expires)."""
    pipeline = engine.pipeline
    person, keypoints = pipeline.box_finder.detector, pipeline.detector
    assert person is not None
    assert keypoints is not None
    looked: list[int] = []
    second_look, first_2d_gate_opened = threading.Event(), list[bool]()
    person_detect, keypoints_detect = person.detect, keypoints.detect

    def person_spy(*args: Any, **kwargs: Any) -> Any:
        looked.append(1)
        if len(looked) >= 2:
            second_look.set()
        return person_detect(*args, **kwargs)

    def keypoints_gated(*args: Any, **kwargs: Any) -> Any:
        if not first_2d_gate_opened:
            first_2d_gate_opened.append(second_look.wait(timeout=60))
        return keypoints_detect(*args, **kwargs)

    monkeypatch.setattr(person, "detect", person_spy)
    monkeypatch.setattr(keypoints, "detect", keypoints_gated)
    frames = _frames([True] * 12)
    result = await collect(engine, Work("r", frames, EstimateOptions(mode=WindowMode.CAUSAL)))
    assert first_2d_gate_opened == [True]  # frame 5's detector ran before frame 0's keypoints were found
    assert len(looked) == 3 == _runs(engine)  # frames 0, 5 and 10: the schedule is unchanged
    assert [len(f.people) for f in result.frames] == [1] * 12


async def test_the_engine_runs_opencv_on_its_stage_threads(onnx_files: tuple[Path, Path]) -> None:
    """OpenCV's own pool is off once an engine is built (its crops then cost no thread wake-ups), and a crop is
    the same bytes either way."""
    image = np.random.default_rng(3).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    mat = np.array([[0.7, 0.1, -30.3], [-0.05, 0.8, -12.7]])
    cv2.setNumThreads(2)
    pooled = cv2.warpAffine(image, mat, (192, 256), flags=cv2.INTER_LINEAR)
    eng = await build_engine(_settings(onnx_files), Metrics())
    try:
        assert cv2.getNumThreads() == 1
        np.testing.assert_array_equal(cv2.warpAffine(image, mat, (192, 256), flags=cv2.INTER_LINEAR), pooled)
    finally:
        await eng.aclose()


async def test_a_clip_lifts_its_windows_a_full_batch_at_a_time(engine: InProcessEngine) -> None:
    """A clip's results come at its end, so the windows its appends make ready wait for a full lift batch (one
    forward for several frames costs less per window than one each); the tail goes as it is."""
    lift = engine.pipeline.lift["pstmo"]
    size = lift.limits.max_batch_size
    frames = _frames([True] * (2 * size + 3))
    before = (lift.batches_run, lift.units_run)
    result = await collect(engine, Work("r", frames, EstimateOptions(mode=WindowMode.CAUSAL)))
    assert [len(f.people) for f in result.frames] == [1] * len(frames)
    assert (lift.batches_run - before[0], lift.units_run - before[1]) == (3, len(frames))


async def test_a_clips_guided_frame_does_not_wait_for_the_append_before(
    engine: InProcessEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clip's guided frame takes its box from the frame before's prepared people, not from the buffer, so its 2D
    stage does not wait for that frame to be tracked and appended: frame 1's append is held until frame 2's
    keypoints have been asked for (a gate, not a sleep: were frame 2 waiting for frame 1's append it never would
    be, and the wait expires); the boxes and poses are those of the stream path."""
    pipeline = engine.pipeline
    keypoints = pipeline.detector
    assert keypoints is not None
    asked, third_asked, gate_opened = list[int](), threading.Event(), list[bool]()
    keypoints_detect, push_frame = keypoints.detect, pipeline.push

    def keypoints_spy(*args: Any, **kwargs: Any) -> Any:
        asked.append(1)
        if len(asked) >= 3:
            third_asked.set()
        return keypoints_detect(*args, **kwargs)

    async def push_gated(step: Any, frame: Any) -> Any:
        if frame.index == 1:
            gate_opened.append(await asyncio.to_thread(third_asked.wait, 60))
        return await push_frame(step, frame)

    frames = _frames([True] * (K - 1))  # frame 0 the person detector's, frames 1 to K - 2 pose-guided
    opts = EstimateOptions(mode=WindowMode.CAUSAL)
    streamed = await _streamed(engine, frames, opts)
    monkeypatch.setattr(keypoints, "detect", keypoints_spy)
    monkeypatch.setattr(pipeline, "push", push_gated)
    clip = await collect(engine, Work("r", frames, opts))
    assert gate_opened == [True]  # frame 2's keypoints were asked for before frame 1 was appended
    assert len(asked) == len(frames)
    assert [p.box_score for f in clip.frames for p in f.people] == [pytest.approx(0.86, abs=0.01)] + [1.0] * (K - 2)
    assert_same_poses(clip.frames, streamed)
    for a, b in zip(clip.frames, sorted(streamed, key=lambda f: f.frame_index), strict=True):
        for pa, pb in zip(a.people, b.people, strict=True):
            np.testing.assert_array_equal(pa.box, pb.box)


async def test_a_clips_guided_frames_queue_behind_each_other_on_the_2d_stage(
    engine: InProcessEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clip's guided frame queues its 2D item behind the frame before's, its box made on the stage thread from
    that one's keypoints: with frame 0's forward held (a gate, not a sleep) until every frame's item is queued —
    which, were frame t waiting for frame t-1's people on the event loop, never would be, and the wait expires —
    the guided frames 1 to K-2 run in one batch after it, one forward each; boxes and poses are the stream's."""
    pipeline = engine.pipeline
    keypoints, detect = pipeline.detector, pipeline.detect
    assert keypoints is not None
    frames = _frames([True] * (K - 1))  # frame 0 the person detector's, frames 1 to K - 2 pose-guided
    opts = EstimateOptions(mode=WindowMode.CAUSAL)
    streamed = await _streamed(engine, frames, opts)

    submitted, all_queued, gate_opened, forwards = list[int](), threading.Event(), list[bool](), list[int]()
    keypoints_detect, detect_submit = keypoints.detect, detect.submit

    async def submit_spy(item: Any, deadline: float | None = None) -> Any:
        submitted.append(1)
        if len(submitted) == len(frames):
            all_queued.set()
        return await detect_submit(item, deadline)

    def keypoints_gated(*args: Any, **kwargs: Any) -> Any:
        if not gate_opened:
            gate_opened.append(all_queued.wait(timeout=60))
        forwards.append(len(args[0]))
        return keypoints_detect(*args, **kwargs)

    monkeypatch.setattr(detect, "submit", submit_spy)
    monkeypatch.setattr(keypoints, "detect", keypoints_gated)
    batches = detect.batches_run
    clip = await collect(engine, Work("r", frames, opts))
    assert gate_opened == [True]  # every frame's item was queued while frame 0's forward was held
    assert forwards == [1] * len(frames)  # one crop per forward: each guided box needs the keypoints before it
    assert len(submitted) == len(frames)  # every guide held: no frame fell back to a second submission
    assert detect.batches_run - batches <= 2  # frame 0's batch (perhaps with the rest), then the guided frames'
    assert_same_poses(clip.frames, streamed)
    for a, b in zip(clip.frames, sorted(streamed, key=lambda f: f.frame_index), strict=True):
        for pa, pb in zip(a.people, b.people, strict=True):
            np.testing.assert_array_equal(pa.box, pb.box)


async def _streamed(engine: InProcessEngine, frames: list[Any], opts: EstimateOptions) -> list[Any]:
    """``frames`` pushed one by one to a stream of their own (opened with ``opts``), and its close: the results."""
    await engine.open_stream(opts, "frame-by-frame")
    streamed = []
    for frame in frames:
        streamed.extend(await push(engine, "frame-by-frame", [frame]))
    streamed.extend(await engine.close_stream("frame-by-frame"))
    return streamed
