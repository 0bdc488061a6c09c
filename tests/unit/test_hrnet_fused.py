"""The HRNet inference copy's fused convolutions (:class:`model.fastpath.FusedConv2d`: ReLU and residual adds as
oneDNN post-ops on CPU channels-last) equal the unfused folded network and the eager ops."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from model.fastpath import POINTWISE_CONVOLUTION, FusedConv2d, fold_batch_norms
from model.hrnet import HRNET_PRESETS, PoseHRNet

needs_onednn = pytest.mark.skipif(not POINTWISE_CONVOLUTION, reason="this torch build has no oneDNN pointwise conv")


def _conv(stride: int, seed: int) -> nn.Conv2d:
    torch.manual_seed(seed)
    return nn.Conv2d(6, 6, kernel_size=3, stride=stride, padding=1).eval().requires_grad_(False)


@needs_onednn
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("with_residual", [True, False])
@pytest.mark.parametrize("stride", [1, 2])
def test_fused_conv_equals_eager_ops(relu: bool, with_residual: bool, stride: int) -> None:
    conv = _conv(stride, 1)
    fused = FusedConv2d.of(conv, relu=relu)
    x = torch.randn(2, 6, 9, 7).contiguous(memory_format=torch.channels_last)
    shortcut = torch.randn(2, 6, 9 // stride + 9 % stride, 7 // stride + 7 % stride)
    residual = shortcut.contiguous(memory_format=torch.channels_last) if with_residual else None
    with torch.inference_mode():
        want = conv(x) if residual is None else conv(x) + residual
        want = F.relu(want) if relu else want
        got = fused(x, residual)
        eager = fused(x.contiguous(), None if residual is None else residual.contiguous())  # NCHW: eager branch
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(eager, want, atol=1e-5, rtol=1e-5)
    assert got.is_contiguous(memory_format=torch.channels_last)


def test_fused_conv_keeps_autograd_and_keys() -> None:
    conv = _conv(1, 2).requires_grad_(True)
    fused = FusedConv2d.of(conv, relu=True)
    assert list(fused.state_dict()) == list(conv.state_dict())
    x = torch.randn(1, 6, 5, 5).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    fused(x).sum().backward()  # with autograd on, the eager ops run (the oneDNN op has no backward)
    assert x.grad is not None
    assert conv.weight.grad is not None


def _perturbed_hrnet() -> PoseHRNet:
    torch.manual_seed(4)
    net = PoseHRNet(HRNET_PRESETS["hrnet-micro"])
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                assert m.running_var is not None
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


@needs_onednn
def test_folded_fused_hrnet_equals_folded_unfused() -> None:
    net = _perturbed_hrnet()
    plain = fold_batch_norms(net, fuse=False).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    fused = fold_batch_norms(net).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    kinds = [m for m in fused.modules() if isinstance(m, FusedConv2d)]
    assert sum(m.relu for m in kinds) >= 20  # stem, every residual block, transitions
    assert sum(not m.relu for m in kinds) >= 1  # the fuse layers' downsampling adds
    assert not any(isinstance(m, FusedConv2d) for m in plain.modules())
    assert not any(isinstance(m, FusedConv2d) for m in net.modules())  # the original is untouched
    images = torch.randn(2, 3, 256, 192).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        want_heat, want_feats = plain(images)
        got_heat, got_feats = fused(images)
        ref_heat, _ = net(images.contiguous())
    # a whole network in fp32: oneDNN may pick other kernels (summation orders) for fused and plain convolutions,
    # depending on the thread count — 3e-6 seen; a wrong fusion (a lost ReLU or shortcut) differs by ~1e-1
    torch.testing.assert_close(got_heat, want_heat, atol=5e-5, rtol=1e-4)
    for got, want in zip(got_feats, want_feats, strict=True):
        torch.testing.assert_close(got, want, atol=5e-5, rtol=1e-4)
    torch.testing.assert_close(got_heat, ref_heat, atol=5e-5, rtol=1e-4)
