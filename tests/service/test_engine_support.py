"""Shared builders for the engine tests (imported by test_engine*.py; holds no tests itself): tiny random-weight
settings, synthetic clips, result comparison."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from service.config import CommonSettings, DetectorSettings, EngineSettings, LifterKind, ModelSpec
from service.engine.types import (
    EstimateOptions,
    FrameResult,
    ImageFrame,
    KeypointFrame,
    WindowMode,
)

BOXES = ((8.0, 6.0, 70.0, 110.0), (80.0, 10.0, 150.0, 115.0))


def tiny_settings(redis_url: str = "", **engine: float) -> CommonSettings:
    """Tiny random-weight models: P-STMO (9 frames, stride 2), CA-PF single-frame, CA-PF temporal (3 frames)."""
    # request_timeout_s: a budget no busy machine exhausts; deadline tests set short deadlines that must expire
    knobs: dict[str, float] = {"max_batch_size": 16, "max_delay_ms": 2.0, "torch_threads": 1, "request_timeout_s": 3600}
    knobs.update(engine)
    return CommonSettings(
        allow_random_weights=True,
        redis_url=redis_url,
        detector=DetectorSettings(arch="hrnet-micro", flip_test=False),
        models={
            "pstmo": ModelSpec(kind=LifterKind.PSTMO, arch="pstmo-tiny-9", frames=9, stride=2, flip_test=True),
            "capf": ModelSpec(kind=LifterKind.CAPF, arch="capf-tiny", frames=1, flip_test=True),
            "capf-t": ModelSpec(kind=LifterKind.CAPF_TEMPORAL, arch="capf-tiny", frames=3, stride=1, flip_test=True),
        },
        default_image_model="capf",
        default_clip_model="pstmo",
        engine=EngineSettings(**knobs),
    )


def keypoint_clip(length: int, seed: int = 0) -> list[KeypointFrame]:
    """A random walk of one person's COCO keypoints in a 640×480 image."""
    rng = np.random.default_rng(seed)
    base = rng.random((17, 2), dtype=np.float32) * np.array([400, 300], np.float32) + np.array([100, 80], np.float32)
    steps = np.cumsum(rng.normal(0, 4, (length, 17, 2)), axis=0).astype(np.float32)
    scores = rng.random((length, 17), dtype=np.float32)
    return [
        KeypointFrame(base + steps[i], scores[i], (640, 480), frame_index=i, timestamp_s=i / 25) for i in range(length)
    ]


def image_clip(length: int, seed: int = 0, encoded: Sequence[int] = ()) -> list[ImageFrame]:
    """Small noisy RGB frames (120×160) with a moving bright patch; frames in ``encoded`` are sent as PNG bytes."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(length):
        img = rng.integers(0, 60, (120, 160, 3), dtype=np.uint8)
        img[20 + i : 60 + i, 30 + 2 * i : 50 + 2 * i] = 230
        if i in encoded:
            ok, png = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            assert ok
            frames.append(ImageFrame(png.tobytes(), frame_index=i, timestamp_s=i / 25))
        else:
            frames.append(ImageFrame(img, frame_index=i, timestamp_s=i / 25))
    return frames


def options(model: str, mode: WindowMode = WindowMode.CENTRED, boxes: bool = False) -> EstimateOptions:
    return EstimateOptions(model=model, mode=mode, boxes=BOXES if boxes else None)


def poses(results: Sequence[FrameResult]) -> dict[tuple[int, int], np.ndarray]:
    """(frame_index, track_id) → (17, 3) pose."""
    return {(f.frame_index, p.track_id): p.keypoints_3d for f in results for p in f.people}


def assert_same_poses(a: Sequence[FrameResult], b: Sequence[FrameResult], atol: float = 1e-5) -> None:
    assert [f.frame_index for f in a] == [f.frame_index for f in b]
    pa, pb = poses(a), poses(b)
    assert pa.keys() == pb.keys()
    for key in pa:
        np.testing.assert_allclose(pa[key], pb[key], atol=atol, err_msg=f"frame/track {key}")
    # and the results are not trivially equal: poses differ between frames
    values = list(pa.values())
    assert len(values) < 2 or not np.allclose(values[0], values[-1], atol=1e-4)
