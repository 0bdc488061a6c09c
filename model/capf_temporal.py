"""CA-PF temporal extension (supplementary §3 of Context-Aware PoseFormer).

**No public code or weights exist for this model**: the authors describe it in the supplementary material
(Fig. 1, Table 1: 1/3/9 frames) but released neither. This module implements the description:

- per frame, the single-frame trunk (:class:`model.capf.CAPFLifter`, unchanged) gives one joint token of width
  ``D = (L + 1) * C`` per joint: the output of Spatial Inter-joint Modeling (:meth:`CAPFLifter.joint_tokens`);
- a temporal transformer models each joint independently over the ``F`` frames (tokens = frames, learned
  temporal position embedding ``(1, F, D)``);
- as in PoseFormer, a 1D convolution (``Conv1d(F, 1, kernel_size=1)``, a learned weighted sum of frames)
  reduces the temporal dimension, and ``LayerNorm → Linear(D, 3)`` gives the centre frame's ``(J, 3)``.

The trunk is shared: a single-frame CA-PF checkpoint loads strictly into ``trunk`` and only ``temporal`` is
new. Serving keeps each frame's ``(J, D)`` tokens in a frame buffer, so a new frame costs one trunk pass
(:meth:`CAPFTemporal.frame_tokens`) plus one temporal pass (:meth:`CAPFTemporal.temporal_head`).

Without trained temporal weights, :meth:`CAPFTemporal.init_temporal_from_trunk` gives a warm start under
which the model reproduces the single-frame model on the centre frame exactly (identity temporal blocks,
centre-frame selection, the trunk's head); the weights still count as untrained.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from model.capf import CAPFLifter, CAPFLifterConfig
from model.capf_blocks import DEFORMABLE_LN_EPS, TransformerBlock

SUPPORTED_FRAMES = (1, 3, 9, 27, 81)
"""Window lengths tested and offered by the serving stack; any odd ``F`` ≥ 1 works."""


@dataclass(frozen=True)
class CAPFTemporalConfig:
    """Hyperparameters of the temporal part (the trunk has its own :class:`CAPFLifterConfig`).

    Attributes:
        frames: ``F``, the window length (odd; the output is the centre frame ``F // 2``).
        depth: temporal transformer layers.
        num_heads: attention heads over the ``D``-wide frame tokens.
        mlp_ratio: MLP hidden width / ``D``.
    """

    frames: int = 9
    depth: int = 4
    num_heads: int = 8
    mlp_ratio: float = 2.0

    def __post_init__(self) -> None:
        if self.frames < 1 or self.frames % 2 == 0:
            raise ValueError(f"frames must be odd and ≥ 1 (centre-frame output), got {self.frames}")
        if self.depth < 0:
            raise ValueError(f"depth must be ≥ 0, got {self.depth}")


class TemporalHead(nn.Module):
    """Per-joint temporal transformer + 1D-conv frame reduction + linear head.

    ``(B, F, J, D)`` joint tokens of ``F`` consecutive frames → ``(B, J, 3)`` for the centre frame.
    """

    def __init__(self, dim: int, cfg: CAPFTemporalConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.frames, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList([TransformerBlock(dim, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.depth)])
        self.reduce = nn.Conv1d(cfg.frames, 1, kernel_size=1)
        self.head = nn.Sequential(nn.LayerNorm(dim, eps=DEFORMABLE_LN_EPS), nn.Linear(dim, 3))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, F, J, D)`` float32 → ``(B, J, 3)`` float32 root-relative 3D joints of frame ``F // 2``."""
        b, f, j, d = tokens.shape
        if f != self.cfg.frames:
            raise ValueError(f"temporal head expects {self.cfg.frames} frames, got {f}")
        x = tokens.permute(0, 2, 1, 3).reshape(b * j, f, d) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        x = self.reduce(x)  # (B*J, 1, D)
        out: torch.Tensor = self.head(x).view(b, j, 3)
        return out


class CAPFTemporal(nn.Module):
    """CA-PF over a window of ``F`` frames: shared single-frame ``trunk`` + new ``temporal`` head."""

    def __init__(self, lifter_cfg: CAPFLifterConfig, temporal_cfg: CAPFTemporalConfig | None = None) -> None:
        super().__init__()
        self.lifter_cfg = lifter_cfg
        self.temporal_cfg = temporal_cfg or CAPFTemporalConfig()
        self.trunk = CAPFLifter(lifter_cfg)
        self.temporal = TemporalHead(lifter_cfg.embed_dim, self.temporal_cfg)

    @property
    def frames(self) -> int:
        """``F``, the window length."""
        return self.temporal_cfg.frames

    def frame_tokens(
        self, keypoints_2d: torch.Tensor, ref: torch.Tensor, feats: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """One trunk pass over ``N`` independent frames (what a frame buffer caches).

        Args:
            keypoints_2d: ``(N, J, 2)`` float32, full-image normalised coordinates.
            ref: ``(N, J, 2)`` float32, crop coordinates in [-1, 1].
            feats: ``L`` NCHW float32 maps ``(N, C_l, H_l, W_l)``.
        Returns:
            ``(N, J, D)`` float32 joint tokens, identical to ``trunk.joint_tokens``.
        """
        return self.trunk.joint_tokens(keypoints_2d, ref, feats)

    def temporal_head(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, F, J, D)`` float32 joint tokens of a window → ``(B, J, 3)`` float32 centre-frame pose (metres)."""
        out: torch.Tensor = self.temporal(tokens)
        return out

    def forward(self, keypoints_2d: torch.Tensor, ref: torch.Tensor, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """Whole windows at once.

        Args:
            keypoints_2d: ``(B, F, J, 2)`` float32, full-image normalised coordinates.
            ref: ``(B, F, J, 2)`` float32, crop coordinates in [-1, 1].
            feats: ``L`` per-frame feature maps ``(B, F, C_l, H_l, W_l)`` float32.
        Returns:
            ``(B, J, 3)`` float32 root-relative 3D joints of the centre frame ``F // 2``.
        """
        b, f = keypoints_2d.shape[:2]
        if tuple(ref.shape[:2]) != (b, f) or any(tuple(m.shape[:2]) != (b, f) for m in feats):
            raise ValueError("keypoints_2d, ref and every feature map must share the leading (B, F) dims")
        tokens = self.frame_tokens(
            keypoints_2d.flatten(0, 1), ref.flatten(0, 1), [m.flatten(0, 1) for m in feats]
        )  # (B*F, J, D)
        return self.temporal_head(tokens.view(b, f, *tokens.shape[1:]))

    @torch.no_grad()
    def init_temporal_from_trunk(self) -> None:
        """Warm start: make the model equal the single-frame trunk applied to the centre frame.

        Zeroes the temporal position embedding and the residual branches' output layers (``attn.proj``,
        ``mlp.fc2``) so every temporal block is the identity, makes ``reduce`` select frame ``F // 2``, and copies
        the trunk's head. Training moves away from this point; it is no substitute for trained weights.
        """
        temporal = self.temporal
        temporal.pos_embed.zero_()
        for block in temporal.blocks:
            assert isinstance(block, TransformerBlock)
            for layer in (block.attn.proj, block.mlp.fc2):
                layer.weight.zero_()
                layer.bias.zero_()
        temporal.reduce.weight.zero_()
        temporal.reduce.weight[0, self.frames // 2, 0] = 1.0
        assert temporal.reduce.bias is not None
        temporal.reduce.bias.zero_()
        temporal.head.load_state_dict(self.trunk.head.state_dict())
