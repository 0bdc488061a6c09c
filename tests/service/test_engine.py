"""The in-process engine: clip == stream == interleaved stream (P-STMO, CA-PF temporal), causal mode, models."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import numpy as np
import pytest
import torch

from model.capf_full import CAPF
from model.hrnet import HRNET_PRESETS
from model.joints import coco_to_h36m, normalize_screen_coordinates
from service.engine.inprocess import InProcessEngine, build_engine
from service.engine.lifters import LiftWindow
from service.engine.types import (
    BoxSource,
    EstimateOptions,
    Frame,
    FrameResult,
    KeypointFrame,
    WindowMode,
    Work,
)
from service.engine.windows import visible_limit, window_sources
from service.engine.work import collect, push
from service.errors import Conflict, InvalidInput, Unavailable, UnknownModel, UnknownStream
from service.metrics import Metrics
from tests.service.test_engine_support import (
    assert_same_poses,
    image_clip,
    keypoint_clip,
    options,
    tiny_settings,
)


@pytest.fixture
async def engine() -> AsyncIterator[InProcessEngine]:
    eng = await build_engine(tiny_settings(), Metrics())
    yield eng
    await eng.aclose()


async def push_all(engine: InProcessEngine, sid: str, frames: Sequence[Frame]) -> list[FrameResult]:
    out: list[FrameResult] = []
    for frame in frames:
        out.extend(await push(engine, sid, [frame]))
    out.extend(await engine.close_stream(sid))
    return out


async def test_models_say_what_they_are(engine: InProcessEngine) -> None:
    infos = {m.name: m for m in await engine.models()}
    assert set(infos) == {"pstmo", "capf", "capf-t"}
    assert all(m.random_weights for m in infos.values())
    assert (infos["pstmo"].frames, infos["pstmo"].stride, infos["pstmo"].needs_image) == (9, 2, False)
    assert infos["capf-t"].needs_image
    ready = await engine.ready()
    assert ready.ready
    assert ready.detail["model:pstmo"] == "RANDOM weights"
    assert ready.detail["frame_buffer"] == "memory ok"


@pytest.mark.parametrize("length", [1, 5, 23])
async def test_pstmo_clip_equals_stream_equals_interleaved(engine: InProcessEngine, length: int) -> None:
    clip = keypoint_clip(length)
    whole = await collect(engine, Work("r", list(clip), options("pstmo")))
    assert whole.box_source is BoxSource.KEYPOINTS
    assert [f.frame_index for f in whole.frames] == list(range(length))
    assert whole.frames[0].timestamp_s == 0.0

    info = await engine.open_stream(options("pstmo"))
    streamed = await push_all(engine, info.stream_id, clip)
    assert_same_poses(whole.frames, streamed)

    # the same stream, interleaved frame by frame with another stream and with one-off requests
    other = keypoint_clip(length, seed=7)
    a, b = await engine.open_stream(options("pstmo")), await engine.open_stream(options("pstmo"))
    got_a: list[FrameResult] = []
    extras = []
    for fa, fb in zip(clip, other, strict=True):
        ra, _, extra = await asyncio.gather(
            push(engine, a.stream_id, [fa]),
            push(engine, b.stream_id, [fb]),
            collect(engine, Work("x", [fb], options("pstmo"))),
        )
        got_a.extend(ra)
        extras.append(extra)
    got_a.extend(await engine.close_stream(a.stream_id))
    await engine.close_stream(b.stream_id)
    assert_same_poses(whole.frames, got_a)
    assert all(len(e.frames) == 1 for e in extras)


async def test_stream_emits_with_the_window_lag_and_counts(engine: InProcessEngine) -> None:
    clip = keypoint_clip(12)
    info = await engine.open_stream(options("pstmo"))
    emitted = [len(await push(engine, info.stream_id, [f])) for f in clip]
    lag = 8  # stride 2 · (9 − 1) / 2
    assert emitted == [0] * lag + [1] * (12 - lag)
    state = await engine.get_stream(info.stream_id)
    assert (state.frames_received, state.frames_emitted, state.mode) == (12, 12 - lag, WindowMode.CENTRED)
    assert engine.metrics.registry.get_sample_value("pose3d_active_streams") == 1
    tail = await engine.close_stream(info.stream_id)
    assert [f.frame_index for f in tail] == list(range(12 - lag, 12))
    assert engine.metrics.registry.get_sample_value("pose3d_active_streams") == 0
    with pytest.raises(UnknownStream):
        await engine.get_stream(info.stream_id)


async def test_out_of_order_and_retried_frames_are_idempotent(engine: InProcessEngine) -> None:
    clip = keypoint_clip(14)
    whole = await collect(engine, Work("r", list(clip), options("pstmo")))
    info = await engine.open_stream(options("pstmo"))
    order = [0, 1, 3, 2, 4, 5, 6, 8, 7, 9, 10, 11, 12, 13]
    got: list[FrameResult] = []
    for i in order:
        got.extend(await push(engine, info.stream_id, [clip[i]]))
    retry = await push(engine, info.stream_id, [clip[13]])  # a retry replays what frame 13 emitted
    assert [f.frame_index for f in retry] == [5]
    got.extend(await engine.close_stream(info.stream_id))
    assert_same_poses(whole.frames, got)
    np.testing.assert_allclose(retry[0].people[0].keypoints_3d, whole.frames[5].people[0].keypoints_3d, atol=1e-5)


@pytest.mark.slow
async def test_capf_temporal_clip_equals_stream_equals_interleaved(engine: InProcessEngine) -> None:
    clip = image_clip(4, encoded=(1, 3))
    opts = options("capf-t", boxes=True)
    whole = await collect(engine, Work("r", list(clip), opts))
    assert whole.box_source is BoxSource.CLIENT
    assert [[p.track_id for p in f.people] for f in whole.frames] == [[0, 1]] * 4
    info = await engine.open_stream(opts)
    streamed = await push_all(engine, info.stream_id, clip)
    assert_same_poses(whole.frames, streamed)

    other = image_clip(4, seed=3)
    a, b = await engine.open_stream(opts), await engine.open_stream(options("capf-t"))
    got: list[FrameResult] = []
    for fa, fb in zip(clip, other, strict=True):
        ra, _, _ = await asyncio.gather(
            push(engine, a.stream_id, [fa]),
            push(engine, b.stream_id, [fb]),
            collect(engine, Work("x", [fb], options("capf"))),
        )
        got.extend(ra)
    got.extend(await engine.close_stream(a.stream_id))
    await engine.close_stream(b.stream_id)
    assert_same_poses(whole.frames, got)


async def test_causal_mode_matches_its_definition(engine: InProcessEngine) -> None:
    clip = keypoint_clip(10)
    info = await engine.open_stream(options("pstmo", WindowMode.CAUSAL))
    lifter = engine.pipeline.lifters["pstmo"]
    h36m = [normalize_screen_coordinates(coco_to_h36m(f.keypoints), 640, 480) for f in clip]
    for t, frame in enumerate(clip):
        out = await push(engine, info.stream_id, [frame])
        assert [f.frame_index for f in out] == [t]  # answered at once
        sources = window_sources(t, list(range(t + 1)), lifter.window, visible_limit(t, t, WindowMode.CAUSAL))
        assert max(sources) == t
        expected = lifter.lift(
            [LiftWindow(np.stack([h36m[s] for s in sources]), np.zeros((9, 0, 17, 0), np.float32), True)]
        )
        np.testing.assert_allclose(out[0].people[0].keypoints_3d, expected[0], atol=1e-5)
    assert await engine.close_stream(info.stream_id) == []
    whole = await collect(engine, Work("r", list(clip), options("pstmo", WindowMode.CAUSAL)))
    centred = await collect(engine, Work("r", list(clip), options("pstmo")))
    assert not np.allclose(whole.frames[0].people[0].keypoints_3d, centred.frames[0].people[0].keypoints_3d)


async def test_capf_single_frame_equals_the_whole_model_with_flip_test(engine: InProcessEngine) -> None:
    frame = image_clip(1)[0]
    result = await collect(engine, Work("r", [frame], EstimateOptions(boxes=options("capf", boxes=True).boxes)))
    assert result.model.name == "capf"
    detector = engine.pipeline.detector
    assert detector is not None
    image = np.asarray(frame.image)
    boxes = np.array(options("capf", boxes=True).boxes, np.float32)
    people = detector.detect([image], [boxes], [np.ones(2, np.float32)], flip_test=False, flip_features=True)[0]
    lifter = engine.pipeline.lifters["capf"]
    whole = CAPF(HRNET_PRESETS["hrnet-micro"], lifter.trunk.cfg)  # type: ignore[attr-defined]
    whole.volume_net.load_state_dict(lifter.trunk.state_dict())  # type: ignore[attr-defined]
    whole.eval()
    kp = torch.from_numpy(np.stack([normalize_screen_coordinates(p.keypoints_h36m, 160, 120) for p in people]))
    crop = torch.from_numpy(np.stack([p.crop_keypoints_h36m for p in people]))
    feats = [torch.stack([p.features[i] for p in people]) for i in range(4)]  # type: ignore[index]
    flips = [torch.stack([p.flip_features[i] for p in people]) for i in range(4)]  # type: ignore[index]
    with torch.inference_mode():
        expected = whole.lift_from_features(kp, crop, feats, flips)[:, 0]
    expected = expected - expected[:, :1]
    for person, pose in zip(result.frames[0].people, expected.numpy(), strict=True):
        np.testing.assert_allclose(person.keypoints_3d, pose, atol=1e-5)
        assert abs(float(np.abs(pose).max())) > 1e-4


async def test_request_errors(engine: InProcessEngine) -> None:
    kp = keypoint_clip(1)
    with pytest.raises(InvalidInput, match="needs image features"):
        await collect(engine, Work("r", list(kp), options("capf-t")))
    with pytest.raises(UnknownModel):
        await collect(engine, Work("r", list(kp), options("nope")))
    with pytest.raises(UnknownModel):
        await engine.open_stream(options("nope"))
    with pytest.raises(UnknownStream):
        await push(engine, "missing", [kp[0]])
    with pytest.raises(InvalidInput):
        await collect(engine, Work("r", [], options("pstmo")))
    with pytest.raises(InvalidInput, match="stream_id"):
        await engine.open_stream(options("pstmo"), stream_id="{bad}")
    info = await engine.open_stream(options("pstmo"), stream_id="mine")
    assert info.stream_id == "mine"
    assert (await engine.open_stream(options("pstmo"), stream_id="mine")).stream_id == "mine"  # retried open
    with pytest.raises(Conflict):
        await engine.open_stream(options("capf"), stream_id="mine")
    far = KeypointFrame(kp[0].keypoints, kp[0].scores, (640, 480), frame_index=10**7)
    with pytest.raises(InvalidInput, match="out of range"):
        await push(engine, "mine", [far])
    # keypoint input picks the default clip model, a single image the default image model
    assert (await collect(engine, Work("r", list(kp)))).model.name == "pstmo"
    assert (await collect(engine, Work("r", list[Frame](image_clip(1))))).model.name == "capf"


async def test_missing_weights_are_refused_unless_random_is_allowed() -> None:
    settings = tiny_settings().model_copy(update={"allow_random_weights": False})
    engine = InProcessEngine(settings, Metrics())
    with pytest.raises(Unavailable, match="--allow-random-weights"):
        await engine.start()
    assert not (await engine.ready()).ready


async def test_a_capf_lifter_for_other_detector_widths_is_refused_at_start() -> None:
    settings = tiny_settings()
    settings = settings.model_copy(
        update={"detector": settings.detector.model_copy(update={"arch": "w32"})}  # widths != capf-tiny's
    )
    engine = InProcessEngine(settings, Metrics())
    with pytest.raises(Unavailable, match=r"model 'capf' samples feature maps of .* detector 'w32'"):
        await engine.start()
    await engine.aclose()
