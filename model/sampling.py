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


def bilinear_taps(grid: torch.Tensor, width: int, height: int, border: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The four taps of bilinear sampling with ``align_corners=True`` at every point of ``grid``.

    Args:
        grid: ``(B, ..., 2)`` float32 ``(x, y)`` points, -1 and 1 the centres of the border pixels.
        width, height: ``W`` and ``H`` of the sampled map.
        border: ``True`` = ``padding_mode="border"`` (points clamped into the map), ``False`` = ``"zeros"``
            (taps outside the map get weight 0).
    Returns:
        ``index`` ``(B, ..., 4)`` int64 rows ``(b * H + y) * W + x`` of the sampled map's :class:`FeatureRows`
        (always in range) and ``weight`` ``(B, ..., 4)`` float32, taps ordered north-west, north-east,
        south-west, south-east.
    """
    x = (grid[..., 0] + 1) * ((width - 1) / 2)  # pixel coordinates, as grid_sample unnormalises them
    y = (grid[..., 1] + 1) * ((height - 1) / 2)
    if border:
        x, y = x.clamp(0, width - 1), y.clamp(0, height - 1)
    x0, y0 = x.floor(), y.floor()
    east, south = x - x0, y - y0
    west, north = 1 - east, 1 - south
    x1, y1 = x0 + 1, y0 + 1
    if not border:  # a tap outside the map reads zeros
        west, east = west * ((x0 >= 0) & (x0 <= width - 1)), east * ((x1 >= 0) & (x1 <= width - 1))
        north, south = north * ((y0 >= 0) & (y0 <= height - 1)), south * ((y1 >= 0) & (y1 <= height - 1))
    x0, x1 = x0.clamp(0, width - 1), x1.clamp(0, width - 1)
    y0, y1 = (y0.clamp(0, height - 1) * width), (y1.clamp(0, height - 1) * width)
    weight = torch.stack([north * west, north * east, south * west, south * east], dim=-1)
    in_map = torch.stack([y0 + x0, y0 + x1, y1 + x0, y1 + x1], dim=-1).long()  # exact: H * W < 2**24
    b = grid.shape[0]
    first_row = torch.arange(0, b * height * width, height * width, device=grid.device)
    return in_map + first_row.view(b, *([1] * (in_map.dim() - 1))), weight


def gather_weighted(table: FeatureRows, index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``out[n] = sum_k weight[n, k] * table.rows[index[n, k]]``: ``(N, K)`` taps → ``(N, C)`` float32."""
    return F.embedding_bag(index, table.rows, per_sample_weights=weight, mode="sum")


def sample_points(table: FeatureRows, grid: torch.Tensor, border: bool) -> torch.Tensor:
    """``grid_sample(fmap, grid, "bilinear", padding, align_corners=True)`` as rows: ``(B, ..., 2)`` points →
    ``(B, ..., C)`` float32 (channels last, unlike ``grid_sample``'s ``(B, C, ...)``)."""
    index, weight = bilinear_taps(grid, table.width, table.height, border)
    out = gather_weighted(table, index.reshape(-1, 4), weight.reshape(-1, 4))
    return out.view(*grid.shape[:-1], out.shape[-1])
