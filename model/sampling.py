"""Bilinear sampling of feature maps as weighted row gathers (the CA-PF fast path).

``F.grid_sample`` (bilinear, ``align_corners=True``) reads four neighbouring pixels per sample point and mixes
them with the bilinear weights. On a CPU it walks the channels of an NCHW map one plane at a time, and the
lifter then transposes its ``(B, C, J, K)`` output to ``(B, J, K, C)`` for the projection. Here a feature map is
a table of pixel rows ``(B * H * W, C)`` (a free view of a channels-last map, as the detector hands them over),
every sample point becomes four taps ``(row index, weight)``, and one ``embedding_bag`` sums the weighted rows
of each bag of taps: the bilinear mix, and any further linear mix of points (CA-PF's attention weights over the
``P`` points of a head), in one pass over contiguous ``C``-vectors with no transpose.

The results equal ``grid_sample`` to float32 rounding (the same weights, summed in another order):
``tests/unit/test_capf_fastpath.py``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class FeatureRows(NamedTuple):
    """A feature map ``(B, C, H, W)`` as pixel rows: ``rows[(b * H + y) * W + x] = fmap[b, :, y, x]``.

    Attributes:
        rows: ``(B * H * W, C)`` float32 (a view when the map is channels-last, else a copy).
        batch, height, width: ``B``, ``H``, ``W`` of the map.
    """

    rows: torch.Tensor
    batch: int
    height: int
    width: int


def feature_rows(fmap: torch.Tensor) -> FeatureRows:
    """``(B, C, H, W)`` map (any memory format) → its :class:`FeatureRows`."""
    b, c, h, w = fmap.shape
    return FeatureRows(fmap.permute(0, 2, 3, 1).reshape(b * h * w, c), b, h, w)


def bilinear_taps(
    grid: torch.Tensor, width: torch.Tensor, height: torch.Tensor, border: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The four taps of bilinear sampling with ``align_corners=True`` at every point of ``grid``.

    Args:
        grid: ``(B, ..., 2)`` float32 ``(x, y)`` points, -1 and 1 the centres of the border pixels.
        width, height: float32 tensors broadcastable to ``grid[..., 0]``: the map size each point samples
            (one value, or one per feature level along a grid dimension).
        border: ``True`` = ``padding_mode="border"`` (points clamped into the map), ``False`` = ``"zeros"``
            (taps outside the map get weight 0).
    Returns:
        ``index`` ``(B, ..., 4)`` int64 rows ``(b * H + y) * W + x`` of the sampled map's :class:`FeatureRows`
        (always in range) and ``weight`` ``(B, ..., 4)`` float32, taps ordered north-west, north-east,
        south-west, south-east.
    """
    x = (grid[..., 0] + 1) * ((width - 1) / 2)
    y = (grid[..., 1] + 1) * ((height - 1) / 2)
    if border:
        x = torch.minimum(x.clamp_min(0), width - 1)
        y = torch.minimum(y.clamp_min(0), height - 1)
    x0, y0 = x.floor(), y.floor()
    east, south = x - x0, y - y0
    west, north = 1 - east, 1 - south
    xs = torch.stack([x0, x0 + 1, x0, x0 + 1], dim=-1)
    ys = torch.stack([y0, y0, y0 + 1, y0 + 1], dim=-1)
    weight = torch.stack([north * west, north * east, south * west, south * east], dim=-1)
    w4, h4 = width.unsqueeze(-1), height.unsqueeze(-1)
    if not border:
        inside = (xs >= 0) & (xs <= w4 - 1) & (ys >= 0) & (ys <= h4 - 1)
        weight = weight * inside
    xs = torch.minimum(xs.clamp_min(0), w4 - 1).long()
    ys = torch.minimum(ys.clamp_min(0), h4 - 1).long()
    b = grid.shape[0]
    first_row = torch.arange(b, device=grid.device).view(b, *([1] * (xs.dim() - 1))) * (h4 * w4).long()
    return first_row + ys * w4.long() + xs, weight


def gather_weighted(table: FeatureRows, index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``out[n] = sum_k weight[n, k] * table.rows[index[n, k]]``: ``(N, K)`` taps → ``(N, C)`` float32."""
    return F.embedding_bag(index, table.rows, per_sample_weights=weight, mode="sum")


def sample_points(table: FeatureRows, grid: torch.Tensor, border: bool) -> torch.Tensor:
    """``grid_sample(fmap, grid, "bilinear", padding, align_corners=True)`` as rows: ``(B, ..., 2)`` points →
    ``(B, ..., C)`` float32 (channels last, unlike ``grid_sample``'s ``(B, C, ...)``)."""
    size = torch.tensor([table.width, table.height], dtype=grid.dtype, device=grid.device)
    index, weight = bilinear_taps(grid, size[0], size[1], border)
    out = gather_weighted(table, index.reshape(-1, 4), weight.reshape(-1, 4))
    return out.view(*grid.shape[:-1], out.shape[-1])
