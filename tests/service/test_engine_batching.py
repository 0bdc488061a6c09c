"""The engine batches across requests, and one bad request (deadline, overload, poison) never hurts the others."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from service.config import CPU_DETECT_BATCH, Device, EngineSettings, StageBatchSettings
from service.engine.inprocess import InProcessEngine, build_engine
from service.engine.lifters import LiftWindow
from service.engine.types import (
    EstimateResult,
    Frame,
    ImageFrame,
    KeypointFrame,
    Work,
)
from service.engine.work import collect
from service.errors import DeadlineExceeded, DecodeFailed, InvalidInput, Overloaded
from service.metrics import Metrics
from tests.service.test_engine_support import assert_same_poses, image_clip, keypoint_clip, options, tiny_settings


@pytest.fixture
async def engine() -> AsyncIterator[InProcessEngine]:
    eng = await build_engine(tiny_settings(max_delay_ms=20.0), Metrics())
    yield eng
    await eng.aclose()


def metric(engine: InProcessEngine, name: str, labels: dict[str, str]) -> float:
    value = engine.metrics.registry.get_sample_value(name, labels)
    return float(value) if value is not None else 0.0


@contextmanager
def inference_thread_held(engine: InProcessEngine) -> Iterator[None]:
    """Occupy the single inference thread so that work queues up in the batchers."""
    gate = threading.Event()
    engine.pipeline.infer_pool.submit(gate.wait, 10)
    try:
        yield
    finally:
        gate.set()


def one_frame_requests(n: int) -> list[Work]:
    return [Work(f"r{i}", [keypoint_clip(1, seed=i)[0]], options("pstmo")) for i in range(n)]


async def test_concurrent_requests_are_batched_and_equal_unbatched(engine: InProcessEngine) -> None:
    requests = one_frame_requests(32)
    alone = [await collect(engine, r) for r in requests]  # one at a time: batches of one window
    lift = engine.pipeline.lift["pstmo"]
    runs_before, units_before = lift.batches_run, lift.units_run
    together = await asyncio.gather(*(collect(engine, r) for r in requests))
    mean = (lift.units_run - units_before) / (lift.batches_run - runs_before)
    assert mean >= 4, f"mean lift batch size {mean}"
    for a, b in zip(alone, together, strict=True):
        assert_same_poses(a.frames, b.frames)
    assert metric(engine, "pose3d_batch_size_sum", {"stage": "lift"}) >= 64
    assert metric(engine, "pose3d_frames_total", {"model": "pstmo"}) >= 64


@pytest.mark.slow
async def test_detector_batches_people_across_requests(engine: InProcessEngine) -> None:
    frames = image_clip(8)
    alone = [await collect(engine, Work("a", [f], options("capf"))) for f in frames]
    detect = engine.pipeline.detect
    runs_before, units_before = detect.batches_run, detect.units_run
    together = await asyncio.gather(*(collect(engine, Work("b", [f], options("capf"))) for f in frames))
    assert (detect.units_run - units_before) / (detect.batches_run - runs_before) > 1.5
    # Convolutions at another batch size differ by ~1e-7, which can move a random-weight heatmap's argmax by one
    # heatmap pixel (here 160 px / 48 ≈ 4.2 px); where the 2D keypoints agree, the 3D poses must agree exactly.
    identical = 0
    for a, b in zip(alone, together, strict=True):
        pa, pb = a.frames[0].people[0], b.frames[0].people[0]
        assert np.abs(pa.keypoints_2d - pb.keypoints_2d).max() <= 160 * 1.25 / 48 + 1e-3
        if np.array_equal(pa.keypoints_2d, pb.keypoints_2d):
            identical += 1
            assert_same_poses(a.frames, b.frames)
    assert identical >= len(frames) - 2


async def test_poisoned_requests_fail_alone(engine: InProcessEngine) -> None:
    good = one_frame_requests(6)
    expected = [await collect(engine, r) for r in good]
    bad_kp = keypoint_clip(1)[0]
    nan = KeypointFrame(np.full((17, 2), np.nan, np.float32), bad_kp.scores, bad_kp.image_size)
    poisoned = [
        Work("nan", [nan], options("pstmo")),
        Work("garbage", [ImageFrame(b"\x89PNG but not really")], options("pstmo")),
        Work("empty", [ImageFrame(b"")], options("capf")),
    ]
    results = await asyncio.gather(*(collect(engine, r) for r in [*good, *poisoned]), return_exceptions=True)
    for want, got in zip(expected, results[: len(good)], strict=True):
        assert isinstance(got, EstimateResult)
        assert_same_poses(want.frames, got.frames)
    assert isinstance(results[-3], InvalidInput)
    assert isinstance(results[-2], DecodeFailed)
    assert isinstance(results[-1], DecodeFailed)
    # a clip with one undecodable frame fails as a whole, and only that clip
    clip: list[Frame] = [*image_clip(2), ImageFrame(b"nope", frame_index=2)]
    with pytest.raises(DecodeFailed):
        await collect(engine, Work("clip", clip, options("capf-t")))


async def test_a_poisoned_window_in_a_lifter_batch_fails_alone(engine: InProcessEngine) -> None:
    lift = engine.pipeline.lift["pstmo"]
    rng = np.random.default_rng(0)
    windows = [
        LiftWindow(rng.random((9, 17, 2), dtype=np.float32), np.zeros((9, 0, 17, 0), np.float32), False)
        for _ in range(5)
    ]
    poisoned = LiftWindow(np.full((9, 17, 2), np.inf, np.float32), windows[0].tokens, False)
    alone = [await lift.submit(w) for w in windows]
    with inference_thread_held(engine):  # make sure they share one batch
        tasks = [asyncio.ensure_future(lift.submit(w)) for w in [*windows[:2], poisoned, *windows[2:]]]
        await asyncio.sleep(0.05)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[2], InvalidInput)
    for want, got in zip(alone, [r for i, r in enumerate(results) if i != 2], strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)  # type: ignore[arg-type]


async def test_deadline_expiry_spares_the_others(engine: InProcessEngine) -> None:
    late, ok = one_frame_requests(2)
    expected = await collect(engine, ok)
    with inference_thread_held(engine):
        late.deadline = time.monotonic() + 0.05
        ok.deadline = time.monotonic() + 3600
        tasks = [asyncio.ensure_future(collect(engine, r)) for r in (late, ok)]
        await asyncio.sleep(0.2)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], DeadlineExceeded)
    assert isinstance(results[1], EstimateResult)
    assert_same_poses(expected.frames, results[1].frames)
    assert metric(engine, "pose3d_rejected_total", {"reason": "deadline"}) == 1


async def test_overload_rejects_with_retry_after_and_serves_the_admitted() -> None:
    engine = await build_engine(tiny_settings(max_queue=4, max_batch_size=2, max_delay_ms=1.0), Metrics())
    try:
        requests = one_frame_requests(12)
        expected = [await collect(engine, r) for r in requests]
        with inference_thread_held(engine):
            tasks = [asyncio.ensure_future(collect(engine, r)) for r in requests]
            await asyncio.sleep(0.2)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        rejected = [r for r in results if isinstance(r, Overloaded)]
        served = [(e, r) for e, r in zip(expected, results, strict=True) if isinstance(r, EstimateResult)]
        assert rejected
        assert all(r.retry_after_s is not None and r.retry_after_s > 0 for r in rejected)
        assert len(served) >= 4
        assert len(rejected) + len(served) == len(requests)
        for want, got in served:
            assert_same_poses(want.frames, got.frames)
        assert metric(engine, "pose3d_rejected_total", {"reason": "overloaded"}) == len(rejected)
        after = await collect(engine, requests[0])  # still healthy
        assert_same_poses(expected[0].frames, after.frames)
    finally:
        await engine.aclose()


async def test_closing_the_engine_never_blocks_the_event_loop() -> None:
    """aclose() while the inference thread is busy waits for it without freezing the loop (the gateway's other
    connections, health checks and the shutdown itself keep being served)."""
    eng = await build_engine(tiny_settings(), Metrics())
    gate = threading.Event()
    eng.pipeline.infer_pool.submit(gate.wait, 120)
    closing = asyncio.ensure_future(eng.aclose())
    # a blocking join would hold the loop until the gate's 120 s ran out, and closing would then be done here
    for _ in range(20):
        await asyncio.sleep(0)
    assert not closing.done(), "the event loop was blocked by aclose()"
    gate.set()
    await asyncio.wait_for(closing, 5.0)


async def test_each_stage_takes_its_own_batch_limits_else_the_engine_wide_ones() -> None:
    settings = tiny_settings(max_batch_size=16, max_delay_ms=2.0)
    engine_settings = settings.engine.model_copy(
        update={
            "decode": StageBatchSettings(max_batch_size=4),
            "detect": StageBatchSettings(max_batch_size=64, max_delay_ms=9.0),
        }
    )
    eng = await build_engine(settings.model_copy(update={"engine": engine_settings}), Metrics())
    try:
        pipeline = eng.pipeline
        assert (pipeline.decode.limits.max_batch_size, pipeline.decode.limits.max_delay_ms) == (4, 2.0)
        assert (pipeline.detect.limits.max_batch_size, pipeline.detect.limits.max_delay_ms) == (64, 9.0)
        for lift in pipeline.lift.values():
            assert (lift.limits.max_batch_size, lift.limits.max_delay_ms) == (16, 2.0)
    finally:
        await eng.aclose()


async def test_on_the_cpu_the_detector_batches_at_most_8_crops_unless_told() -> None:
    """The engine-wide ``max_batch_size`` (32 shipped) caps every stage; the detector's on the CPU is at most
    :data:`~service.config.CPU_DETECT_BATCH` unless ``engine.detect.max_batch_size`` is set (any device keeps what
    it is told); other devices take the engine-wide value."""
    settings = tiny_settings()
    eng = await build_engine(settings.model_copy(update={"engine": EngineSettings()}), Metrics())
    try:
        assert (eng.pipeline.detect.limits.max_batch_size, eng.pipeline.decode.limits.max_batch_size) == (8, 32)
    finally:
        await eng.aclose()
    assert CPU_DETECT_BATCH == 8
    told = EngineSettings(detect=StageBatchSettings(max_batch_size=32))
    assert told.stage_batch("detect", Device.CPU) == (32, 5.0)
    assert EngineSettings(max_batch_size=4).stage_batch("detect", Device.CPU) == (4, 5.0)
    assert EngineSettings().stage_batch("detect", Device.CUDA) == (32, 5.0)
    assert EngineSettings().stage_batch("lift", Device.CPU) == (32, 5.0)
