"""The shipped settings profiles: both validate; the realtime one is RTMPose + short causal-ready P-STMO without
flip test and with pose-guided boxes, and starts an engine once its weights are there (stand-ins here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.cli import build_parser
from service.config import GatewaySettings, LifterKind, build_settings, load_settings_file
from service.engine.inprocess import build_engine
from service.engine.lifters import PSTMOLifter
from service.engine.types import (
    EstimateOptions,
    Frame,
    ImageFrame,
    WindowMode,
    Work,
)
from service.engine.work import collect
from service.metrics import Metrics
from service.profiles import profile_names, profile_path
from tests.service.media_samples import encode_clip, encode_image, person_image
from tests.service.rest_support import live_server
from tests.service.test_rest import _decoded_frames, _poses, _stream
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
    assert (det.family, str(det.rtmpose_onnx), det.rtmpose_threads, det.flip_test, det.pose_guided_boxes) == (
        "rtmpose",
        "rtmpose-t",
        1,
        False,
        True,
    )
    assert (det.detect_every, det.guide_min_score) == (30, 0.3)
    (spec,) = rt.models.values()
    assert (spec.kind, spec.frames, spec.flip_test, spec.backend) == (LifterKind.PSTMO, 81, False, "auto")
    assert rt.default_clip_model == rt.default_image_model == "pstmo-81"
    assert (rt.engine.max_delay_ms, rt.engine.torch_threads) == (0.0, 1)


async def test_realtime_profile_serves_with_stand_in_weights(tmp_path: Path) -> None:
    data = load_settings_file(profile_path("realtime"))
    data["detector"].update(
        rtmpose_onnx=rtmpose_standin(tmp_path / "rtmpose.onnx"),
        person_detector_onnx=mean_channel0_detector(tmp_path / "person.onnx"),
        onnx_cache_dir=tmp_path / "onnx",  # P-STMO's ONNX Runtime graph (backend "auto")
    )
    data["models"]["pstmo-81"].pop("checkpoint")
    settings = GatewaySettings(**data, allow_random_weights=True)
    engine = await build_engine(settings, Metrics())
    try:
        rng = np.random.default_rng(0)
        frames: list[Frame] = [
            ImageFrame(rng.integers(100, 255, (64, 64, 3), dtype=np.uint8), frame_index=i) for i in range(32)
        ]
        result = await collect(engine, Work("rt", frames, EstimateOptions(mode=WindowMode.CAUSAL)))
        assert [len(f.people) for f in result.frames] == [1] * 32
        runs = engine.metrics.person_detector_run_count()
        assert runs == 2  # frames 0 and 30 (detect_every = 30), pose-guided boxes between
        lifter = engine.pipeline.lifters["pstmo-81"]
        assert isinstance(lifter, PSTMOLifter)
        assert lifter.backend.startswith("onnx exported to")  # backend "auto" on the CPU
        assert (await engine.ready()).detail["model:pstmo-81:backend"] == lifter.backend
    finally:
        await engine.aclose()


def test_realtime_profile_serves_image_clip_and_stream_through_the_gateway(tmp_path: Path) -> None:
    """The shipped file as it is (stand-in weights only): REST image, causal clip, causal stream == clip, and
    the person detector on frame 0 only of each 12-frame sequence (pose-guided after it; detect_every = 30)."""
    data = load_settings_file(profile_path("realtime"))
    data["detector"].update(
        rtmpose_onnx=rtmpose_standin(tmp_path / "rtmpose.onnx"),
        person_detector_onnx=mean_channel0_detector(tmp_path / "person.onnx"),
        onnx_cache_dir=tmp_path / "onnx",  # P-STMO's ONNX Runtime graph (backend "auto")
    )
    data["models"]["pstmo-81"].pop("checkpoint")
    data["detector"]["person_score_threshold"] = 0.05  # the stand-in scores a frame by its mean red / 255
    data["engine"]["request_timeout_s"] = 600.0  # a loaded machine is slow
    settings = GatewaySettings(**data, allow_random_weights=True)
    clip = encode_clip(frames=12)
    with live_server(settings) as server, server.client() as client:
        image = encode_image(person_image(96, 128, seed=2), ".png")
        response = client.post("/v1/pose3d", files={"file": ("p.png", image, "image/png")})
        assert response.status_code == 200, response.text
        assert response.json()["model"]["name"] == "pstmo-81"
        assert len(response.json()["frames"][0]["people"]) == 1
        whole = client.post("/v1/pose3d", files={"file": ("c.mp4", clip, "video/mp4")}, data={"mode": "causal"})
        assert whole.status_code == 200, whole.text
        assert [len(f["people"]) for f in whole.json()["frames"]] == [1] * 12
        frames = [
            {"files": {"file": ("f.png", encode_image(f, ".png"), "image/png")}, "data": {"frame_index": str(i)}}
            for i, f in enumerate(_decoded_frames(clip))
        ]
        streamed = _stream(client, "pstmo-81", frames, mode="causal")
        np.testing.assert_allclose(_poses(streamed), _poses(whole.json()["frames"]), atol=1e-4)
        metrics = client.get("/metrics").text
    runs = [line for line in metrics.splitlines() if line.startswith("pose3d_person_detector_runs_total")]
    assert 'pose3d_person_detector_runs_total{reason="pose_guide"} 3.0' in runs  # the image, frame 0 twice
    assert 'pose3d_person_detector_runs_total{reason="asked"} 0.0' in runs
