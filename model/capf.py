"""Context-Aware PoseFormer (CA-PF) single-frame lifter, as published (NeurIPS 2023).

Pipeline for one person (``J`` = 17 Human3.6M joints, ``L`` feature levels, ``C`` = ``embed_dim_ratio``):

1. Tokens: a coordinate token ``coord_embed(keypoints_2d)`` and ``L`` feature-level tokens
   ``feat_embed[l](grid_sample(feats[l], ref))`` (bilinear, zero padding, ``align_corners=True``), plus a
   learned ``Spatial_pos_embed`` ``(1, 1 + L, J, C)`` → ``(B, 1 + L, J, C)``.
2. Deformable Context Extraction (``context_blocks``): see :class:`model.capf_blocks.DeformableContextBlock`.
3. Pose-Context Feature Fusion (``res_blocks``): a transformer over the ``1 + L`` tokens of each joint.
4. Spatial Inter-joint Modeling (``joint_blocks``): a transformer over the ``J`` joints, each joint token the
   concatenation of its ``1 + L`` tokens, width ``D = (1 + L) * C``. Its output is :meth:`CAPFLifter.joint_tokens`.
5. Head: ``LayerNorm(D, eps=1e-5) → Linear(D, 3)`` → ``(B, 1, J, 3)`` root-relative 3D joints (metres).

The official constructor ties the depth of all three stacks to ``levels``; this model takes one depth per
stack (``context_depth``, ``res_depth``, ``joint_depth``) so truncated stacks are expressible. Parameter
names are the official ones, so released lifter state dicts load without a key map.

The whole model (HRNet + lifter + image flip test) is in :mod:`model.capf_full`; the temporal extension in
:mod:`model.capf_temporal`; checkpoint loading in :mod:`model.checkpoints.capf`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import torch
import torch.nn.functional as F
from torch import nn

from model.capf_blocks import DEFORMABLE_LN_EPS, DeformableContextBlock, TransformerBlock
from model.sampling import feature_rows, sample_points

OFFICIAL_LEVELS: Final = 4
"""The published code always feeds four feature maps."""


def official_feature_channels(backbone: str, base_dim: int) -> tuple[int, ...]:
    """Channel counts of the four feature maps the published lifter expects for a backbone type.

    ``hrnet_32`` / ``hrnet_48``: ``[b, 2b, 4b, 8b]``; ``cpn``: ``[b] * 4`` (``b`` = ``base_dim``).
    """
    if backbone in ("hrnet_32", "hrnet_48"):
        return (base_dim, base_dim * 2, base_dim * 4, base_dim * 8)
    if backbone == "cpn":
        return (base_dim,) * OFFICIAL_LEVELS
    raise ValueError(f"unknown CA-PF backbone type {backbone!r} (hrnet_32, hrnet_48 or cpn)")


@dataclass(frozen=True)
class CAPFLifterConfig:
    """Hyperparameters of :class:`CAPFLifter`.

    Attributes:
        embed_dim_ratio: ``C``, the width of every per-level token (published: 128).
        feature_channels: channels of the ``L`` feature maps, one per level (HRNet-W32: 32, 64, 128, 256).
        context_depth, res_depth, joint_depth: layers of Deformable Context Extraction, Pose-Context Feature
            Fusion and Spatial Inter-joint Modeling (published: 4 each).
        num_heads: heads of the two transformer stacks (published: 8).
        mlp_ratio: MLP hidden width / token width in every block (published: 2).
        qkv_bias: bias in the ``qkv`` projections.
        qk_scale: attention scale override (``None``: ``head_dim ** -0.5``).
        deformable_heads, deformable_points: ``H`` and ``P`` of Deformable Context Extraction (published: 4, 4).
        deformable_mlp_ratio: MLP ratio inside the deformable blocks (published: 2).
        num_joints: ``J`` (17, Human3.6M order).
        in_chans: coordinates per 2D joint (2).
    """

    embed_dim_ratio: int = 128
    feature_channels: tuple[int, ...] = (32, 64, 128, 256)
    context_depth: int = 4
    res_depth: int = 4
    joint_depth: int = 4
    num_heads: int = 8
    mlp_ratio: float = 2.0
    qkv_bias: bool = True
    qk_scale: float | None = None
    deformable_heads: int = 4
    deformable_points: int = 4
    deformable_mlp_ratio: float = 2.0
    num_joints: int = 17
    in_chans: int = 2

    def __post_init__(self) -> None:
        if not self.feature_channels:
            raise ValueError("CA-PF needs at least one feature level")
        if self.embed_dim_ratio % self.deformable_heads:
            raise ValueError(f"embed_dim_ratio {self.embed_dim_ratio} not divisible by {self.deformable_heads}")
        for width in (self.embed_dim_ratio, self.embed_dim):
            if width % self.num_heads:
                raise ValueError(f"token width {width} not divisible by num_heads {self.num_heads}")

    @property
    def levels(self) -> int:
        """``L``, the number of feature maps."""
        return len(self.feature_channels)

    @property
    def embed_dim(self) -> int:
        """``D = (L + 1) * C``, the width of a joint token after Pose-Context Feature Fusion."""
        return self.embed_dim_ratio * (self.levels + 1)

    @classmethod
    def from_official(
        cls,
        poseformer: Mapping[str, Any],
        backbone: str = "hrnet_32",
        *,
        truncate_blocks_to_depth: int | None = None,
        **overrides: Any,
    ) -> CAPFLifterConfig:
        """Config of the published ``PoseTransformer(config.model.poseformer, backbone=...)``.

        Args:
            poseformer: the official ``poseformer`` section (``base_dim``, ``embed_dim_ratio``, ``levels``;
                ``depth`` is ignored, as the official constructor ignores it: every stack has ``levels`` layers).
            backbone: ``hrnet_32``, ``hrnet_48`` or ``cpn`` (sets the feature channels from ``base_dim``).
            truncate_blocks_to_depth: keep only the first ``n`` layers of each stack (``None``: all).
            overrides: further fields (e.g. ``num_heads``, ``mlp_ratio``, ``qkv_bias``, ``qk_scale``).
        """
        levels = int(poseformer.get("levels", OFFICIAL_LEVELS))
        if levels != OFFICIAL_LEVELS:
            raise ValueError(f"the published CA-PF always uses {OFFICIAL_LEVELS} feature levels, got levels={levels}")
        depth = levels if truncate_blocks_to_depth is None else min(levels, int(truncate_blocks_to_depth))
        fields: dict[str, Any] = {
            "embed_dim_ratio": int(poseformer["embed_dim_ratio"]),
            "feature_channels": official_feature_channels(backbone, int(poseformer["base_dim"])),
            "context_depth": depth,
            "res_depth": depth,
            "joint_depth": depth,
        }
        fields.update(overrides)
        return cls(**fields)


CAPF_PRESETS: Final[Mapping[str, CAPFLifterConfig]] = {
    # The published Human3.6M lifters (checkpoints best_epoch_*.bin): C = 128, 4 layers each, 8 heads.
    "capf-w32": CAPFLifterConfig(embed_dim_ratio=128, feature_channels=(32, 64, 128, 256)),
    "capf-w48": CAPFLifterConfig(embed_dim_ratio=128, feature_channels=(48, 96, 192, 384)),
    "capf-cpn": CAPFLifterConfig(embed_dim_ratio=128, feature_channels=(256, 256, 256, 256)),
    # Small random-weight model for tests (with a tiny HRNet of widths 8/16/32/64).
    "capf-tiny": CAPFLifterConfig(
        embed_dim_ratio=16, feature_channels=(8, 16, 32, 64), context_depth=1, res_depth=1, joint_depth=1
    ),
}


class CAPFLifter(nn.Module):
    """The CA-PF lifter: 2D joints + detector feature maps → root-relative 3D joints of one frame."""

    def __init__(self, cfg: CAPFLifterConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c, d = cfg.embed_dim_ratio, cfg.embed_dim
        self.coord_embed = nn.Linear(cfg.in_chans, c)
        self.feat_embed = nn.ModuleList([nn.Linear(ch, c) for ch in cfg.feature_channels])
        self.Spatial_pos_embed = nn.Parameter(torch.zeros(1, cfg.levels + 1, cfg.num_joints, c))
        # Registration order = the official state_dict order (joint, res, context blocks).
        self.joint_blocks = nn.ModuleList(
            [
                TransformerBlock(d, cfg.num_heads, cfg.mlp_ratio, cfg.qkv_bias, cfg.qk_scale)
                for _ in range(cfg.joint_depth)
            ]
        )
        self.res_blocks = nn.ModuleList(
            [
                TransformerBlock(c, cfg.num_heads, cfg.mlp_ratio, cfg.qkv_bias, cfg.qk_scale)
                for _ in range(cfg.res_depth)
            ]
        )
        self.context_blocks = nn.ModuleList(
            [
                DeformableContextBlock(
                    c, cfg.feature_channels, cfg.deformable_heads, cfg.deformable_points, cfg.deformable_mlp_ratio
                )
                for _ in range(cfg.context_depth)
            ]
        )
        self.head = nn.Sequential(nn.LayerNorm(d, eps=DEFORMABLE_LN_EPS), nn.Linear(d, 3))

    def _check_inputs(self, keypoints_2d: torch.Tensor, ref: torch.Tensor, feats: Sequence[torch.Tensor]) -> None:
        cfg = self.cfg
        want = (cfg.num_joints, cfg.in_chans)
        if keypoints_2d.dim() != 3 or tuple(keypoints_2d.shape[1:]) != want:
            raise ValueError(f"keypoints_2d must be (B, {want[0]}, {want[1]}), got {tuple(keypoints_2d.shape)}")
        if tuple(ref.shape) != (keypoints_2d.shape[0], cfg.num_joints, 2):
            raise ValueError(f"ref must be (B, {cfg.num_joints}, 2) like keypoints_2d, got {tuple(ref.shape)}")
        if len(feats) != cfg.levels:
            raise ValueError(f"expected {cfg.levels} feature maps, got {len(feats)}")
        for level, (fmap, ch) in enumerate(zip(feats, cfg.feature_channels, strict=True)):
            if fmap.dim() != 4 or fmap.shape[0] != keypoints_2d.shape[0] or fmap.shape[1] != ch:
                raise ValueError(f"feature map {level} must be (B, {ch}, H, W), got {tuple(fmap.shape)}")

    def joint_tokens(
        self, keypoints_2d: torch.Tensor, ref: torch.Tensor, feats: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """Everything up to and including Spatial Inter-joint Modeling.

        Args:
            keypoints_2d: ``(B, J, 2)`` float32, full-image normalised coordinates (``X / w * 2 - [1, h / w]``).
            ref: ``(B, J, 2)`` float32, the same joints in crop coordinates: ``crop_px / [96, 128] - 1`` for a
                192×256 crop, so [-1, 1] spans the crop (see :func:`model.capf_full.crop_to_ref`).
            feats: ``L`` detector feature maps, NCHW float32, ``(B, feature_channels[l], H_l, W_l)``.
        Returns:
            ``(B, J, (L + 1) * C)`` float32 joint tokens (the temporal extension's per-frame input).
        """
        self._check_inputs(keypoints_2d, ref, feats)
        b, j, _ = keypoints_2d.shape
        fast = all(block.fast for block in self.context_blocks)
        rows = [feature_rows(fmap) for fmap in feats] if fast else None
        if rows is not None:  # fast path: bilinear taps gathered from channels-last pixel rows
            sampled = [sample_points(table, ref, border=False) for table in rows]  # (B, J, C_l) each
        else:
            grid = ref.unsqueeze(-2)  # (B, J, 1, 2)
            sampled = [
                F.grid_sample(fmap, grid, mode="bilinear", padding_mode="zeros", align_corners=True)[..., 0].mT
                for fmap in feats
            ]
        level_tokens = [embed(s) for s, embed in zip(sampled, self.feat_embed, strict=True)]
        x = torch.stack([self.coord_embed(keypoints_2d), *level_tokens], dim=1) + self.Spatial_pos_embed
        for context_block in self.context_blocks:
            x = context_block(x, ref, feats, rows)
        x = x.permute(0, 2, 1, 3).reshape(b * j, self.cfg.levels + 1, self.cfg.embed_dim_ratio)
        for res_block in self.res_blocks:
            x = res_block(x)
        x = x.reshape(b, j, self.cfg.embed_dim)
        for joint_block in self.joint_blocks:
            x = joint_block(x)
        return x

    def head_from_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, J, (L + 1) * C)`` joint tokens → ``(B, 1, J, 3)`` float32 root-relative 3D joints."""
        b, j, _ = tokens.shape
        out: torch.Tensor = self.head(tokens).view(b, 1, j, 3)
        return out

    def forward(self, keypoints_2d: torch.Tensor, ref: torch.Tensor, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """``(B, J, 2)`` normalised joints, ``(B, J, 2)`` crop refs in [-1, 1], ``L`` NCHW maps → ``(B, 1, J, 3)``.

        Equal to ``head_from_tokens(joint_tokens(keypoints_2d, ref, feats))``; see :meth:`joint_tokens`.
        """
        return self.head_from_tokens(self.joint_tokens(keypoints_2d, ref, feats))
