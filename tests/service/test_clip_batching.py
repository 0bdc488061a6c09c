"""Clips posted whole go through the engine's batches, holding a bounded number of frames, with unchanged results.

- over REST, the frames of one clip posted alone share detector batches (``pose3d_batch_size{stage="detect"}``);
- the gateway's batched path (``run_clip``) gives what the frame-by-frame path gives, and so does the remote
  engine (chunks of frames to a real worker over gRPC), whose worker batches the clip's frames too;
- the engine takes at most its look-ahead of frames from a clip's source before finishing earlier ones;
- a clip that fails half-way (a limit found while decoding) stops its decoding thread and reports why.
"""

from __future__ import annotations

import asyncio
import gc
import re
import threading
import time
import weakref
from collections.abc import AsyncIterator, Sequence
from typing import Any

import numpy as np
import pytest
from prometheus_client import generate_latest

from bench.clip_paths import run_clip_frame_by_frame
from service.api.clips import run_clip
from service.api.media import Media, MediaKind
from service.config import EngineSettings, LimitSettings
from service.engine.inprocess import InProcessEngine
from service.engine.types import (
    Frame,
    FrameResult,
    ImageFrame,
    Work,
)
from service.engine.work import collect
from service.errors import PayloadTooLarge
from service.metrics import Metrics
from service.rpc.remote_engine import RemoteEngineClient
from tests.service import test_engine_support as support
from tests.service.media_samples import rolling_clip
from tests.service.rest_support import live_server, tiny_settings
from tests.service.worker_support import serve_worker

LIMITS = LimitSettings(max_clip_frames=1000, max_clip_seconds=600)


def _detect_batches(exposition: str) -> tuple[float, float, float]:
    """(batches, people, batches of exactly one person) of the detector from a Prometheus exposition."""

    def value(name: str, extra: str = "") -> float:
        pattern = rf'^{name}\{{{extra}stage="detect"\}} (\S+)$'
        found = re.search(pattern, exposition, re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    return (
        value("pose3d_batch_size_count"),
        value("pose3d_batch_size_sum"),
        value("pose3d_batch_size_bucket", 'le="1.0",'),
    )


def _assert_same_results(got: Sequence[FrameResult], want: Sequence[FrameResult], exact: bool) -> None:
    """Same frames, timestamps, people, tracks and boxes; ``exact``: bit for bit. Otherwise the keypoints may
    differ by float32 rounding (a detector or lifter batch of N rounds differently from N batches of 1; with
    the tiny random-weight models a near-tied heatmap maximum may even resolve to the neighbouring heatmap
    pixel): at least 90% of the 2D coordinates agree to 0.01 px."""
    assert [(f.frame_index, f.timestamp_s) for f in got] == [(f.frame_index, f.timestamp_s) for f in want]
    close: list[np.ndarray] = []
    for a, b in zip(got, want, strict=True):
        assert [p.track_id for p in a.people] == [p.track_id for p in b.people]
        for pa, pb in zip(a.people, b.people, strict=True):
            np.testing.assert_array_equal(pa.box, pb.box)
            if exact:
                for name in ("keypoints_2d", "keypoint_scores", "keypoints_3d"):
                    np.testing.assert_array_equal(getattr(pa, name), getattr(pb, name))
            close.append(np.abs(pa.keypoints_2d - pb.keypoints_2d).ravel() <= 1e-2)
    assert close
    assert np.concatenate(close).mean() >= 0.9


def _upload(clip: bytes) -> Media:
    return Media(MediaKind.MP4, clip)


@pytest.mark.slow
def test_a_clip_posted_alone_is_detected_in_batches() -> None:
    frames = 24
    settings = tiny_settings(engine=EngineSettings(max_batch_size=8, max_delay_ms=20.0, request_timeout_s=600))
    with live_server(settings) as live, live.client(timeout_s=600) as client:
        before = _detect_batches(client.get("/metrics").text)
        response = client.post("/v1/pose3d", files={"file": ("c.mp4", rolling_clip(frames, 160, 120), "video/mp4")})
        assert response.status_code == 200, response.text
        after = _detect_batches(client.get("/metrics").text)
    assert len(response.json()["frames"]) == frames
    batches, people, singles = (a - b for a, b in zip(after, before, strict=True))
    print(f"{frames}-frame clip: {batches:g} detector batches, {people / batches:.1f} people per batch")
    assert people == frames  # one whole-frame person per frame, each detected once
    assert batches <= frames / 4  # one at a time would be 24 batches of 1
    assert singles < batches


async def _engine(max_batch_size: int, max_delay_ms: float) -> InProcessEngine:
    settings = support.tiny_settings(max_batch_size=max_batch_size, max_delay_ms=max_delay_ms)
    engine = InProcessEngine(settings, Metrics())
    await engine.start()
    return engine


@pytest.mark.slow
@pytest.mark.parametrize(("model", "batch"), [("pstmo", 1), ("pstmo", 4), ("capf-t", 4)])
async def test_batched_gateway_path_equals_the_frame_by_frame_path(model: str, batch: int) -> None:
    """Batches of one: bit for bit (same windows, tracks, indices); larger batches: up to float32 rounding."""
    clip = rolling_clip(21, 160, 120)
    engine = await _engine(max_batch_size=batch, max_delay_ms=5.0)
    try:
        options = support.options(model)
        args = (options, LIMITS, 2, time.monotonic() + 3600)
        old = await run_clip_frame_by_frame(engine, _upload(clip), *args)
        new = await run_clip(engine, _upload(clip), *args)
    finally:
        await engine.aclose()
    assert [f.frame_index for f in new.frames] == list(range(0, 21, 2))  # every_nth=2: source indices
    assert new.frames_processed == old.frames_processed == 11
    _assert_same_results(new.frames, old.frames, exact=batch == 1)


async def _source(
    frames: Sequence[ImageFrame], alive: list[int], refs: list[weakref.ref[np.ndarray]]
) -> AsyncIterator[Frame]:
    """Yields ``frames`` (images copied, so that the source's list does not keep them); before each frame
    records how many of the frames already yielded are still alive."""
    for frame in frames:
        gc.collect()
        alive.append(sum(ref() is not None for ref in refs))
        assert not isinstance(frame.image, bytes)
        image = frame.image.copy()
        refs.append(weakref.ref(image))
        yield ImageFrame(image, frame.frame_index, frame.timestamp_s)
        del image


async def test_the_engine_takes_a_bounded_number_of_a_clips_frames() -> None:
    frames = support.image_clip(40)
    engine = await _engine(max_batch_size=4, max_delay_ms=1.0)
    pipeline = engine.pipeline
    prepare = pipeline.prepare
    preparing = [0, 0]  # now, most

    async def counted(*args: Any) -> Any:
        preparing[0] += 1
        preparing[1] = max(preparing)
        try:
            return await prepare(*args)
        finally:
            preparing[0] -= 1

    try:
        alive: list[int] = []
        refs: list[weakref.ref[np.ndarray]] = []
        options = support.options("pstmo", boxes=True)
        whole = await collect(engine, Work("w", list(frames), options))
        pipeline.prepare = counted  # type: ignore[method-assign,assignment]
        clip = await collect(engine, Work("c", _source(frames, alive, refs), options))
    finally:
        await engine.aclose()
    look_ahead = pipeline.streamed_look_ahead
    assert look_ahead == 4
    print(f"frames in preparation at most {preparing[1]}, alive when the next was asked for at most {max(alive)}")
    assert preparing[1] == look_ahead  # the engine asks for a frame only when one of its slots is free
    assert max(alive) <= look_ahead  # no finished batch keeps a frame alive
    assert [f.frame_index for f in clip.frames] == list(range(40))
    _assert_same_results(clip.frames, whole.frames, exact=False)


@pytest.mark.slow
async def test_remote_clip_goes_in_chunks_to_a_worker_that_batches_it() -> None:
    clip = rolling_clip(20, 160, 120)
    worker_metrics = Metrics()
    engine = InProcessEngine(support.tiny_settings(max_batch_size=8, max_delay_ms=20.0), worker_metrics)
    await engine.start()
    server, _, address = await serve_worker(engine, 64 * 1024 * 1024, worker_metrics)
    remote = RemoteEngineClient([address], clip_chunk_frames=8)
    await remote.start()
    try:
        args = (support.options("capf-t"), LIMITS, 1, time.monotonic() + 3600)
        over_grpc = await run_clip(remote, _upload(clip), *args)
        before = _detect_batches(generate_latest(worker_metrics.registry).decode())
        in_process = await run_clip(engine, _upload(clip), *args)
        assert await engine.pipeline.buffer.count() == 0  # the private stream was closed
    finally:
        await remote.aclose()
        await server.stop(0)
        await engine.aclose()
    batches, people, _ = before
    assert people == 20
    assert batches <= 20 / 4  # chunks of 8 frames: batches of several people
    _assert_same_results(over_grpc.frames, in_process.frames, exact=False)


async def test_a_clip_failing_half_way_stops_its_decoder_and_reports_why() -> None:
    clip = rolling_clip(60, 160, 120, kind="webm")  # WebM states no frame count: the limit trips while decoding
    upload = Media(MediaKind.WEBM, clip)
    engine = await _engine(max_batch_size=4, max_delay_ms=1.0)
    try:
        limits = LimitSettings(max_clip_frames=30, max_clip_seconds=600)
        with pytest.raises(PayloadTooLarge, match="more than 30 frames"):
            await run_clip(engine, upload, support.options("pstmo"), limits, 1, time.monotonic() + 3600)
        await asyncio.sleep(0)
        assert not [t for t in threading.enumerate() if t.name == "pose3d-clip-decode"]
        assert await engine.pipeline.clip_buffer.count() == 0
    finally:
        await engine.aclose()
