"""The CA-PF fast sampling (weighted row gathers, :mod:`model.sampling`) equals ``grid_sample`` and the
published deformable block, on NCHW and channels-last maps, inside and outside the map."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from model.capf import CAPF_PRESETS, CAPFLifter
from model.capf_blocks import DeformableContextBlock
from model.fastpath import FastPathModule, set_fast_path
from model.sampling import bilinear_taps, feature_rows, gather_weighted, sample_points


def _grid(*shape: int) -> torch.Tensor:
    """Points in [-1.3, 1.3]² (some outside the map) plus the exact corners and centre."""
    torch.manual_seed(sum(shape))
    grid = torch.rand(*shape, 2) * 2.6 - 1.3
    flat = grid.view(-1, 2)
    flat[:5] = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [0.0, 0.0]])
    return grid


@pytest.mark.parametrize("padding", ["border", "zeros"])
@pytest.mark.parametrize(("channels", "height", "width"), [(3, 7, 5), (16, 1, 4), (8, 8, 6)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_sample_points_equals_grid_sample(
    padding: str, channels: int, height: int, width: int, channels_last: bool
) -> None:
    fmap = torch.randn(3, channels, height, width)
    if channels_last:
        fmap = fmap.contiguous(memory_format=torch.channels_last)
    grid = _grid(3, 11, 4)
    want = F.grid_sample(fmap, grid, mode="bilinear", padding_mode=padding, align_corners=True)
    got = sample_points(feature_rows(fmap), grid, border=padding == "border")
    assert got.shape == (3, 11, 4, channels)
    torch.testing.assert_close(got, want.permute(0, 2, 3, 1), atol=1e-6, rtol=1e-6)


def test_feature_rows_is_a_view_of_a_channels_last_map() -> None:
    fmap = torch.randn(2, 4, 3, 5).contiguous(memory_format=torch.channels_last)
    table = feature_rows(fmap)
    assert table.rows.data_ptr() == fmap.data_ptr()
    assert (table.batch, table.height, table.width) == (2, 3, 5)
    assert torch.equal(table.rows[(1 * 3 + 2) * 5 + 4], fmap[1, :, 2, 4])


@pytest.mark.parametrize("border", [True, False])
def test_taps_stay_in_range_and_border_weights_sum_to_one(border: bool) -> None:
    grid = _grid(4, 9)
    index, weight = bilinear_taps(grid, width=6, height=3, border=border)
    assert index.shape == weight.shape == (4, 9, 4)
    assert index.dtype == torch.int64
    assert int(index.min()) >= 0
    assert int(index.max()) < 4 * 3 * 6
    for b in range(4):  # each item's taps stay in its own map
        assert ((index[b] // 18) == b).all()
    if border:
        torch.testing.assert_close(weight.sum(-1), torch.ones(4, 9))
    else:
        far = (grid.abs() > 1 + 2 / 5).any(-1)  # more than one pixel outside: every tap reads zeros
        assert (weight[far] == 0).all()


def test_gather_weighted_is_a_weighted_row_sum() -> None:
    fmap = torch.randn(1, 3, 2, 2)
    table = feature_rows(fmap)
    index = torch.tensor([[0, 3], [1, 1]])
    weight = torch.tensor([[0.25, 0.75], [1.0, 2.0]])
    got = gather_weighted(table, index, weight)
    want = torch.stack([0.25 * fmap[0, :, 0, 0] + 0.75 * fmap[0, :, 1, 1], 3.0 * fmap[0, :, 0, 1]])
    torch.testing.assert_close(got, want)


def _perturbed_block(seed: int) -> DeformableContextBlock:
    torch.manual_seed(seed)
    block = DeformableContextBlock(32, (8, 16, 24), num_heads=4, num_points=3, mlp_ratio=2.0)
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return block.eval()


@pytest.mark.parametrize("channels_last", [False, True])
def test_deformable_block_fast_equals_published(channels_last: bool) -> None:
    block = _perturbed_block(3)
    assert isinstance(block, FastPathModule)
    feats = [torch.randn(2, c, 16 >> i, 12 >> i) for i, c in enumerate((8, 16, 24))]
    if channels_last:
        feats = [f.contiguous(memory_format=torch.channels_last) for f in feats]
    tokens, ref = torch.randn(2, 4, 17, 32), torch.rand(2, 17, 2) * 2.4 - 1.2
    with torch.inference_mode():
        want = set_fast_path(block, False)(tokens, ref, feats)
        got = set_fast_path(block, True)(tokens, ref, feats)
        shared = block(tokens, ref, feats, [feature_rows(f) for f in feats])
    torch.testing.assert_close(got, want, atol=2e-6, rtol=1e-5)
    assert torch.equal(shared, got)
    assert torch.equal(got[:, 0], tokens[:, 0])  # the coordinate token passes through


def test_lifter_fast_equals_reference_at_published_depth() -> None:
    """All four layers of every stack (capf-tiny widths): the fast path stays within the vectors' 1e-5 tolerance
    on smooth feature maps (noise maps amplify any rounding through the sampled offsets, on either path)."""
    cfg = replace(CAPF_PRESETS["capf-tiny"], context_depth=4, res_depth=4, joint_depth=4)
    torch.manual_seed(7)
    lifter = CAPFLifter(cfg).eval()
    with torch.no_grad():
        for p in lifter.parameters():
            p.add_(0.05 * torch.randn_like(p))
    feats = [
        F.interpolate(torch.randn(3, c, 4, 3), size=(64 >> i, 48 >> i), mode="bilinear", align_corners=True)
        for i, c in enumerate(cfg.feature_channels)
    ]
    kp, ref = torch.randn(3, 17, 2), torch.rand(3, 17, 2) * 2 - 1
    with torch.inference_mode():
        want = set_fast_path(lifter, False)(kp, ref, feats)
        got = set_fast_path(lifter, True)(kp, ref, [f.contiguous(memory_format=torch.channels_last) for f in feats])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
