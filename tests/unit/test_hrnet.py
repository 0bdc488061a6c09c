"""HRNet backbone and PoseHRNet: conformance with the official code, configs, shapes, batch independence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from model.conformance.__main__ import main as conformance_main
from model.conformance.core import VectorKind, check_file
from model.conformance.run_hrnet import run_hrnet_backbone
from model.hrnet import HRNET_PRESETS, HRNetBackbone, HRNetConfig, HRStageConfig, PoseHRNet
from model.hrnet_blocks import HighResolutionModule


def _load(path: Path) -> dict[str, Any]:
    vec: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    return vec


def _tiny_model(seed: int = 0) -> PoseHRNet:
    torch.manual_seed(seed)
    model = PoseHRNet(HRNET_PRESETS["hrnet-micro"]).eval()
    with torch.no_grad():  # non-trivial BN statistics so that every path matters
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                assert m.running_mean is not None
                assert m.running_var is not None
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


def test_hrnet_tiny_vector_reproduces(conformance_dir: Path) -> None:
    kind, checks = check_file(conformance_dir / "hrnet_tiny.pt")
    assert kind is VectorKind.HRNET_BACKBONE
    assert [c.name for c in checks] == ["feat0", "feat1", "feat2", "feat3"]
    for c in checks:
        assert c.passed, c


@pytest.mark.slow
def test_conformance_cli_exits_zero(conformance_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert conformance_main([str(conformance_dir / "hrnet_tiny.pt")]) == 0
    assert "all outputs within tolerance" in capsys.readouterr().out


def test_micro_preset_reproduces_capf_full_backbone_features(conformance_dir: Path) -> None:
    vec = _load(conformance_dir / "capf_full_tiny.pt")
    cfg = HRNetConfig.from_official(vec["config"]["model"]["backbone"])
    assert cfg == HRNET_PRESETS["hrnet-micro"]
    backbone = HRNetBackbone(cfg).eval()
    state = {k.removeprefix("backbone."): v for k, v in vec["state_dict"].items() if k.startswith("backbone.")}
    backbone.load_state_dict(state, strict=True)
    with torch.inference_mode():
        feats = backbone(vec["inputs"]["images"].permute(0, 3, 1, 2))  # NHWC -> NCHW
    for k, f in enumerate(feats):
        torch.testing.assert_close(f, vec["outputs"][f"feat{k}"], rtol=0, atol=1e-5)


def test_config_parsers_match_presets(conformance_dir: Path) -> None:
    assert HRNetConfig.from_official(_load(conformance_dir / "hrnet_tiny.pt")["config"]) == HRNET_PRESETS["hrnet-tiny"]
    extra = _load(conformance_dir / "mmpose_hrnet_tiny.pt")["config"]["mmpose_model"]["backbone"]["extra"]
    cfg = HRNetConfig.from_mmpose(extra)
    assert cfg.stage2 == HRStageConfig(1, 2, (1, 1), (8, 16))
    assert cfg.stage4 == HRStageConfig(2, 4, (1, 1, 1, 1), (8, 16, 32, 64))
    w32_mmpose = {
        "stage1": {"num_modules": 1, "num_branches": 1, "block": "BOTTLENECK", "num_blocks": (4,), "num_channels": (64,)},
        **{
            f"stage{s}": {"num_modules": m, "num_branches": s, "block": "BASIC", "num_blocks": (4,) * s,
                          "num_channels": tuple(32 * 2**i for i in range(s))}
            for s, m in ((2, 1), (3, 4), (4, 3))
        },
    }  # fmt: skip
    assert HRNetConfig.from_mmpose(w32_mmpose) == HRNET_PRESETS["w32"]
    assert HRNET_PRESETS["w48"].feature_channels == (48, 96, 192, 384)


def test_config_rejects_what_the_stem_cannot_be() -> None:
    extra = {"stage1": {"num_modules": 1, "block": "BOTTLENECK", "num_blocks": [2], "num_channels": [64]}}
    with pytest.raises(ValueError, match="stage1"):
        HRNetConfig.from_mmpose(extra)
    with pytest.raises(ValueError, match="num_branches"):
        HRStageConfig(1, 2, (4,), (32, 64))
    with pytest.raises(ValueError, match="FUSE_METHOD"):
        HRStageConfig.from_official(
            {"NUM_MODULES": 1, "NUM_BRANCHES": 1, "NUM_BLOCKS": [1], "NUM_CHANNELS": [8], "FUSE_METHOD": "CAT"}
        )


@pytest.mark.parametrize(("preset", "width"), [("w32", 32), ("w48", 48)])
def test_published_feature_and_heatmap_shapes(preset: str, width: int) -> None:
    with torch.device("meta"):  # shapes only, no compute
        model = PoseHRNet(HRNET_PRESETS[preset])
        heatmaps, feats = model(torch.empty(2, 3, 256, 192))
    assert tuple(heatmaps.shape) == (2, 17, 64, 48)
    assert [tuple(f.shape) for f in feats] == [
        (2, width, 64, 48),
        (2, 2 * width, 32, 24),
        (2, 4 * width, 16, 12),
        (2, 8 * width, 8, 6),
    ]


def test_features_follow_the_in_place_quirk() -> None:
    """feat1..3 are the first stage-4 module's branch outputs (before fusion), feat0 the last module's output."""
    torch.manual_seed(0)
    backbone = HRNetBackbone(HRNET_PRESETS["hrnet-tiny"]).eval()
    first = backbone.stage4[0]
    assert isinstance(first, HighResolutionModule)
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        first.branches[k].register_forward_hook(lambda _m, _i, out, k=k: seen.__setitem__(f"b{k}", out))
        for k in range(4)
    ]
    hooks.append(backbone.stage4[-1].register_forward_hook(lambda _m, _i, out: seen.__setitem__("last", out[0])))
    with torch.inference_mode():
        feats = backbone(torch.randn(1, 3, 256, 192))
    for h in hooks:
        h.remove()
    torch.testing.assert_close(feats[0], seen["last"], rtol=0, atol=0)
    for k in (1, 2, 3):
        torch.testing.assert_close(feats[k], seen[f"b{k}"], rtol=0, atol=0)


def test_heatmaps_are_the_head_on_feat0() -> None:
    model = _tiny_model()
    with torch.inference_mode():
        heatmaps, feats = model(torch.randn(2, 3, 256, 192))
        assert tuple(heatmaps.shape) == (2, 17, 64, 48)
        torch.testing.assert_close(heatmaps, model.final_layer(feats[0]))
    assert PoseHRNet(HRNET_PRESETS["hrnet-micro"], num_joints=5).final_layer.out_channels == 5


def test_batch_equals_single_items() -> None:
    model = _tiny_model(1)
    torch.manual_seed(2)
    images = torch.randn(3, 3, 256, 192)
    with torch.inference_mode():
        batch_heat, batch_feats = model(images)
        for i in range(3):
            heat, feats = model(images[i : i + 1])
            torch.testing.assert_close(batch_heat[i : i + 1], heat, rtol=0, atol=1e-5)
            for fb, f in zip(batch_feats, feats, strict=True):
                torch.testing.assert_close(fb[i : i + 1], f, rtol=0, atol=1e-5)


def test_runner_handles_other_widths_and_module_prefix() -> None:
    cfg_dict = {
        f"STAGE{s}": {"NUM_MODULES": m, "NUM_BRANCHES": s, "NUM_BLOCKS": [1] * s, "BLOCK": "BASIC",
                      "NUM_CHANNELS": [4 * 2**i for i in range(s)], "FUSE_METHOD": "SUM"}
        for s, m in ((2, 1), (3, 1), (4, 2))
    }  # fmt: skip
    torch.manual_seed(3)
    backbone = HRNetBackbone(HRNetConfig.from_official(cfg_dict)).eval()
    image = torch.randn(1, 3, 128, 96)
    with torch.inference_mode():
        want = backbone(image)
    vector = {
        "config": cfg_dict,
        "state_dict": {"module." + k: v for k, v in backbone.state_dict().items()},
        "inputs": {"image": image},
    }
    with torch.inference_mode():
        got = run_hrnet_backbone(vector)
    assert list(got) == ["feat0", "feat1", "feat2", "feat3"]
    assert tuple(got["feat3"].shape) == (1, 32, 4, 3)
    for k, w in enumerate(want):
        torch.testing.assert_close(got[f"feat{k}"], w, rtol=0, atol=0)
