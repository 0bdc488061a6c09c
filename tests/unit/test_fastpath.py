"""The fast inference paths equal the reference (published op order) paths on random inputs, and switching
between them changes neither parameters nor state_dict keys."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
import torch
from torch import nn

from model.capf import CAPF_PRESETS, CAPFLifter
from model.capf_blocks import SelfAttention
from model.conformance.run_mmpose import run_mmpose_topdown
from model.fastpath import FastPathModule, fold_batch_norms, set_fast_path, uses_fast_path
from model.hrnet import HRNET_PRESETS, PoseHRNet
from model.pstmo import PSTMO, PSTMOConfig
from model.pstmo_blocks import MultiHeadSelfAttention, StridedFeedForward, UnbiasedLayerNorm
from service.engine.detector import TopDownDetector, default_channels_last

M = TypeVar("M", bound=nn.Module)


def _perturbed(model: M, seed: int) -> M:
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                assert m.running_mean is not None
                assert m.running_var is not None
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _both(module: nn.Module, *args: object) -> tuple[torch.Tensor, torch.Tensor]:
    """``(reference, fast)`` outputs of ``module(*args)`` (first output when it returns a tuple)."""
    outs = []
    with torch.inference_mode():
        for fast in (False, True):
            set_fast_path(module, fast)
            out = module(*args)
            outs.append(out[0] if isinstance(out, tuple) else out)
    return outs[0], outs[1]


def test_set_fast_path_reaches_every_block() -> None:
    model = PSTMO(PSTMOConfig(frames=9, stride_num=(3, 3), layers=1, channel=16, d_hid=32))
    switchable = [m for m in model.modules() if isinstance(m, FastPathModule)]
    assert len(switchable) >= 8
    assert uses_fast_path(model)
    set_fast_path(model, False)
    assert not any(m.fast for m in switchable)
    assert not uses_fast_path(model)


@pytest.mark.parametrize("rows", [(4, 7), (2, 3, 5)])
def test_unbiased_layernorm_fused_equals_published(rows: tuple[int, ...]) -> None:
    ln = _perturbed(UnbiasedLayerNorm(24), 0)
    x = 3.0 * torch.randn(*rows, 24) + 1.5
    x.view(-1, 24)[0] = 0.25  # a constant row: the published +1e-6 keeps it at the bias, so must the fused form
    ref, fast = _both(ln, x)
    torch.testing.assert_close(fast, ref, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(fast.reshape(-1, 24)[0], ln.bias.detach(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("tokens", [1, 5, 27])
def test_pstmo_attention_sdpa_equals_matmul_softmax(tokens: int) -> None:
    attn = _perturbed(MultiHeadSelfAttention(32, 8), 1)
    ref, fast = _both(attn, torch.randn(3, tokens, 32))
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("frames", "stride"), [(27, 3), (9, 3), (10, 2), (7, 1), (8, 3)])
def test_strided_ffn_as_matmuls_equals_conv1d(frames: int, stride: int) -> None:
    ffn = _perturbed(StridedFeedForward(16, 24, stride), 2)
    ref, fast = _both(ffn, torch.randn(2, frames, 16))
    assert fast.shape == (2, (frames - 1) // stride + 1, 16)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "cfg",
    [
        PSTMOConfig(frames=27, stride_num=(3, 3, 3), layers=2, channel=32, d_hid=48),
        PSTMOConfig(frames=9, stride_num=(2, 2, 2, 2), layers=1, channel=16, d_hid=40, heads=4),
    ],
)
def test_pstmo_fast_path_equals_reference(cfg: PSTMOConfig) -> None:
    model = _perturbed(PSTMO(cfg), 3)
    keys = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    x = 0.5 * torch.randn(4, 2, cfg.frames, cfg.n_joints, 1)
    outs = {}
    with torch.inference_mode():
        for fast in (False, True):
            set_fast_path(model, fast)
            outs[fast] = (*model(x), model.lift(x[..., 0].permute(0, 2, 3, 1), flip_test=True))
    for ref, fast_out in zip(outs[False], outs[True], strict=True):
        torch.testing.assert_close(fast_out, ref, atol=1e-5, rtol=1e-5)
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == keys
    fresh = PSTMO(cfg)
    fresh.load_state_dict(model.state_dict(), strict=True)


def test_capf_attention_and_lifter_fast_equal_reference() -> None:
    attn = _perturbed(SelfAttention(40, 8), 4)
    ref, fast = _both(attn, torch.randn(3, 17, 40))
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    cfg = CAPF_PRESETS["capf-tiny"]
    lifter = _perturbed(CAPFLifter(cfg), 5)
    feats = [torch.randn(2, c, 64 >> i, 48 >> i) for i, c in enumerate(cfg.feature_channels)]
    kp, ref_points = torch.randn(2, 17, 2), torch.rand(2, 17, 2) * 2 - 1
    ref, fast = _both(lifter, kp, ref_points, feats)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    nhwc = [f.contiguous(memory_format=torch.channels_last) for f in feats]  # as the serving detector hands them
    _, fast_nhwc = _both(lifter, kp, ref_points, nhwc)
    torch.testing.assert_close(fast_nhwc, ref, atol=1e-5, rtol=1e-5)


def test_hrnet_channels_last_equals_nchw() -> None:
    net = _perturbed(PoseHRNet(HRNET_PRESETS["hrnet-micro"]), 6)
    fast = PoseHRNet(HRNET_PRESETS["hrnet-micro"]).eval()
    fast.load_state_dict(net.state_dict())
    fast = fast.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    x = torch.randn(2, 3, 256, 192)
    with torch.inference_mode():
        heat_ref, feats_ref = net(x)
        heat, feats = fast(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(heat, heat_ref, atol=1e-5, rtol=1e-5)
    for a, b in zip(feats, feats_ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_detector_memory_format_setting() -> None:
    cpu = torch.device("cpu")
    assert default_channels_last(cpu)
    net = PoseHRNet(HRNET_PRESETS["hrnet-micro"])
    assert TopDownDetector(net, cpu).channels_last
    assert not TopDownDetector(net, cpu, channels_last=False).channels_last
    image = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    box = [np.array([[100.0, 80.0, 200.0, 160.0]])]  # its padded crop lies inside the noise: no flat heatmap ties
    weights = _perturbed(PoseHRNet(HRNET_PRESETS["hrnet-micro"]), 7).state_dict()
    results = []
    for channels_last in (False, True):
        same = PoseHRNet(HRNET_PRESETS["hrnet-micro"])
        same.load_state_dict(weights)
        det = TopDownDetector(same, cpu, keep_features=True, channels_last=channels_last)
        results.append(det.detect([image], box, [np.array([0.9])], flip_test=True)[0][0])
    np.testing.assert_allclose(results[1].keypoints_coco, results[0].keypoints_coco, atol=1e-3)
    np.testing.assert_allclose(results[1].scores_coco, results[0].scores_coco, atol=1e-5)
    assert results[0].features is not None
    assert results[1].features is not None
    for a, b in zip(results[1].features, results[0].features, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_folded_batch_norms_keep_the_original_and_equal_it() -> None:
    net = _perturbed(PoseHRNet(HRNET_PRESETS["hrnet-micro"]), 8)
    keys = list(net.state_dict())
    folded = fold_batch_norms(net)
    assert list(net.state_dict()) == keys  # the original (checkpoint layout) is untouched
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 3, 256, 192)
    with torch.inference_mode():
        (heat_ref, feats_ref), (heat, feats) = net(x), folded(x)
    torch.testing.assert_close(heat, heat_ref, atol=1e-5, rtol=1e-5)
    for a, b in zip(feats, feats_ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_mmpose_vector_holds_for_the_serving_detector_network(conformance_dir: Path) -> None:
    """The detector's network (BatchNorms folded, channels-last) within the mmpose vector's tolerance."""
    vector = torch.load(conformance_dir / "mmpose_hrnet_tiny.pt", map_location="cpu", weights_only=True)
    got = run_mmpose_topdown(vector, prepare=fold_batch_norms, channels_last=True)
    for name, want in vector["outputs"].items():
        tol = 1e-2 if name.startswith("keypoints") else 1e-4  # px / score, as conformance/README.md
        torch.testing.assert_close(got[name], want.to(got[name].dtype), atol=tol, rtol=0)
