"""Building blocks of the Context-Aware PoseFormer lifter (inference-faithful to the published code).

- :class:`Mlp`: ``fc1 → exact (erf) GELU → fc2``.
- :class:`SelfAttention`: multi-head self-attention with a fused ``qkv`` projection and scale ``head_dim**-0.5``.
- :class:`TransformerBlock`: pre-norm ViT block (``x + attn(norm1(x))``, ``x + mlp(norm2(x))``), used by
  Pose-Context Feature Fusion (tokens = levels of one joint), Spatial Inter-joint Modeling (tokens =
  joints) and the temporal extension (tokens = frames).
- :class:`DeformableContextBlock`: Deformable Context Extraction, one layer: every feature-level token of
  every joint samples its own feature map at ``ref + tanh(offset)`` with ``H`` heads × ``P`` points and
  adds the attention-weighted samples to itself.

Parameter names equal the official ones (``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``, ``mlp.fc1``,
``mlp.fc2``, ``attention_weights``, ``sampling_offsets``, ``embed_proj.{level}``) so the released state
dicts load without a key map. Dropout and stochastic depth are training-only and not implemented: in
eval mode the published model does not apply them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from model.fastpath import FastPathModule
from model.sampling import FeatureRows, bilinear_taps, feature_rows, gather_weighted

BLOCK_LN_EPS = 1e-6
"""LayerNorm eps of the transformer blocks (the official ``norm_layer`` default)."""
DEFORMABLE_LN_EPS = 1e-5
"""LayerNorm eps of the deformable blocks and of the head (plain ``nn.LayerNorm``)."""


class Mlp(nn.Module):
    """Two-layer feed-forward network: ``(..., dim) → (..., hidden) → GELU → (..., dim)``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()  # exact (erf) GELU, as the published code
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., dim) float32 → (..., dim) float32``."""
        out: torch.Tensor = self.fc2(self.act(self.fc1(x)))
        return out


class SelfAttention(FastPathModule):
    """Multi-head self-attention over ``N`` tokens: ``(B, N, dim) → (B, N, dim)``.

    Fast path: the fused ``scaled_dot_product_attention`` kernel with the same scale; reference path:
    the published ``softmax(q @ k^T * scale) @ v``.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, qk_scale: float | None = None) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, dim) float32 → (B, N, dim) float32``."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        if self.fast:
            mixed = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        else:
            mixed = (q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1) @ v
        out: torch.Tensor = self.proj(mixed.transpose(1, 2).reshape(b, n, d))
        return out


class TransformerBlock(nn.Module):
    """Pre-norm transformer encoder layer, LayerNorm eps 1e-6: ``(B, N, dim) → (B, N, dim)``."""

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool = True, qk_scale: float | None = None
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=BLOCK_LN_EPS)
        self.attn = SelfAttention(dim, num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale)
        self.norm2 = nn.LayerNorm(dim, eps=BLOCK_LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, dim) float32 → (B, N, dim) float32``."""
        x = x + self.attn(self.norm1(x))
        out: torch.Tensor = x + self.mlp(self.norm2(x))
        return out


class DeformableContextBlock(FastPathModule):
    """One layer of Deformable Context Extraction.

    Each of the ``L`` feature-level tokens of a joint (query = ``norm1(level token + coordinate token)``)
    predicts ``H × P`` sampling offsets (``tanh``, in ``grid_sample``'s [-1, 1] crop coordinates, added to the
    joint's reference point without scaling) and ``H × P`` attention weights (softmax over the ``P`` points of a
    head). Level ``l`` samples feature map ``l`` bilinearly (border padding, ``align_corners=True``),
    projects every sample with ``embed_proj[l]`` to ``dim // H`` channels, sums each head's points by weight
    and concatenates the heads back to ``dim``; a residual MLP follows. The coordinate token passes through.

    Fast path (:mod:`model.sampling`): the four bilinear taps of every point times its attention weight, one
    ``embedding_bag`` per level summing a head's ``4 P`` weighted pixel rows, then ``embed_proj`` on that sum
    (``P`` times fewer projection FLOPs: the weights of a head sum to 1, so projecting the mix equals mixing the
    projections). Reference path: the published ``grid_sample → embed_proj → weighted sum``.
    """

    def __init__(
        self, dim: int, feature_channels: Sequence[int], num_heads: int, num_points: int, mlp_ratio: float
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"deformable width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.num_points = num_points
        head_dim = dim // num_heads
        self.norm1 = nn.LayerNorm(dim, eps=DEFORMABLE_LN_EPS)
        self.attention_weights = nn.Linear(dim, num_heads * num_points)
        self.sampling_offsets = nn.Linear(dim, 2 * num_heads * num_points)
        self.embed_proj = nn.ModuleList([nn.Linear(c, head_dim) for c in feature_channels])
        self.norm2 = nn.LayerNorm(dim, eps=DEFORMABLE_LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(
        self,
        tokens: torch.Tensor,
        ref: torch.Tensor,
        feats: Sequence[torch.Tensor],
        rows: Sequence[FeatureRows] | None = None,
    ) -> torch.Tensor:
        """Refine the feature-level tokens with context sampled around each joint.

        Args:
            tokens: ``(B, 1 + L, J, dim)`` float32; index 0 is the coordinate token, 1..L the level tokens.
            ref: ``(B, J, 2)`` float32, reference points in crop coordinates, [-1, 1] = crop borders (x, y).
            feats: ``L`` feature maps ``(B, C_l, H_l, W_l)`` float32 (NCHW or channels-last).
            rows: the fast path's :func:`~model.sampling.feature_rows` of ``feats`` when the caller has them
                (shared by all layers), else made here.
        Returns:
            ``(B, 1 + L, J, dim)`` float32; the coordinate token unchanged.
        """
        coord, levels = tokens[:, :1], tokens[:, 1:]
        b, num_levels, j, _ = levels.shape
        hp = self.num_heads * self.num_points
        query = self.norm1(levels + coord)
        weights = self.attention_weights(query).view(b, num_levels, j, self.num_heads, self.num_points).softmax(-1)
        offsets = self.sampling_offsets(query).view(b, num_levels, j, hp, 2).tanh()
        locations = offsets + ref.view(b, 1, j, 1, 2)  # (B, L, J, H*P, 2)
        if self.fast:
            context = self._context_fast(weights, locations, rows or [feature_rows(f) for f in feats])
        else:
            context = self._context_reference(weights, locations, feats)
        levels = levels + context
        levels = levels + self.mlp(self.norm2(levels))
        return torch.cat([coord, levels], dim=1)

    def _context_fast(
        self, weights: torch.Tensor, locations: torch.Tensor, rows: Sequence[FeatureRows]
    ) -> torch.Tensor:
        """``(B, L, J, H, P)`` weights, ``(B, L, J, H*P, 2)`` points → ``(B, L, J, dim)`` context."""
        b, _, j = weights.shape[:3]
        taps = self.num_points * 4
        per_level = []
        for level, (table, proj) in enumerate(zip(rows, self.embed_proj, strict=True)):
            index, tap_weight = bilinear_taps(locations[:, level], table.width, table.height, border=True)
            tap_weight = tap_weight * weights[:, level].reshape(b, j, -1, 1)  # (B, J, H*P, 4)
            mixed = gather_weighted(table, index.view(-1, taps), tap_weight.view(-1, taps))  # (B * J * H, C_l)
            per_level.append(proj(mixed).view(b, j, -1))  # (B, J, H * dim // H)
        return torch.stack(per_level, dim=1)

    def _context_reference(
        self, weights: torch.Tensor, locations: torch.Tensor, feats: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """The published sampling: ``grid_sample`` per level, ``embed_proj`` per point, weighted sum."""
        b, num_levels, j, dim = *weights.shape[:3], self.norm1.normalized_shape[0]
        per_level = []
        for level, (fmap, proj) in enumerate(zip(feats, self.embed_proj, strict=True)):
            sampled = F.grid_sample(
                fmap, locations[:, level], mode="bilinear", padding_mode="border", align_corners=True
            )
            per_level.append(proj(sampled.permute(0, 2, 3, 1)))  # (B, J, H*P, dim // H)
        samples = torch.stack(per_level, dim=1).view(b, num_levels, j, self.num_heads, self.num_points, -1)
        return (weights.unsqueeze(-1) * samples).sum(dim=-2).reshape(b, num_levels, j, dim)
