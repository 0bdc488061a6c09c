"""The shipped settings profiles: both validate; the realtime one is RTMPose + short causal-ready P-STMO without
flip test and with pose-guided boxes, and starts an engine once its weights are there (stand-ins here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.cli import build_parser
from service.config import GatewaySettings, LifterKind, build_settings, load_settings_file
from service.engine.inprocess import build_engine
from service.engine.types import EstimateOptions, EstimateRequest, Frame, ImageFrame, WindowMode
from service.metrics import Metrics
from service.profiles import profile_names, profile_path
from tests.unit.rtmpose_standin import rtmpose_standin
from tests.unit.test_person_detector import mean_channel0_detector


def test_profiles_are_shipped_and_validate() -> None:
    assert profile_names() == ["default", "realtime"]
    default = build_settings(GatewaySettings, profile_path("default"))
    assert default.detector.family == "hrnet"
    assert default.detector.flip_test
    assert default.models["pstmo-243"].frames == 243
    with pytest.raises(ValueError, match="known: default, realtime"):
        profile_path("fast")
    args = build_parser().parse_args(["serve", "--profile", "realtime"])
    assert args.profile == "realtime"


def test_realtime_profile_is_what_the_readme_says() -> None:
    data = load_settings_file(profile_path("realtime"))
    rt = GatewaySettings(**data, workers=["worker:50061"])  # remote workers: catalogue names stay names
    det = rt.detector
    assert (det.family, str(det.rtmpose_onnx), det.flip_test, det.pose_guided_boxes) == (
        "rtmpose",
        "rtmpose-s",
        False,
        True,
    )
    (spec,) = rt.models.values()
    assert (spec.kind, spec.frames, spec.flip_test) == (LifterKind.PSTMO, 81, False)
    assert rt.default_clip_model == rt.default_image_model == "pstmo-81"
    assert (rt.engine.max_delay_ms, rt.engine.torch_threads) == (0.0, 1)


async def test_realtime_profile_serves_with_stand_in_weights(tmp_path: Path) -> None:
    data = load_settings_file(profile_path("realtime"))
    data["detector"].update(
        rtmpose_onnx=rtmpose_standin(tmp_path / "rtmpose.onnx"),
        person_detector_onnx=mean_channel0_detector(tmp_path / "person.onnx"),
    )
    data["models"]["pstmo-81"].pop("checkpoint")
    settings = GatewaySettings(**data, allow_random_weights=True)
    engine = await build_engine(settings, Metrics())
    try:
        rng = np.random.default_rng(0)
        frames: list[Frame] = [
            ImageFrame(rng.integers(100, 255, (64, 64, 3), dtype=np.uint8), frame_index=i) for i in range(12)
        ]
        result = await engine.estimate(EstimateRequest("rt", frames, EstimateOptions(mode=WindowMode.CAUSAL)))
        assert [len(f.people) for f in result.frames] == [1] * 12
        runs = engine.metrics.registry.get_sample_value("pose3d_person_detector_runs_total")
        assert runs == 2  # frames 0 and 10
    finally:
        await engine.aclose()
