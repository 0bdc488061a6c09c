"""HRNet: the frozen top-down 2D detector network and the feature maps CA-PF consumes.

:class:`HRNetBackbone` is the HRNet authors' ``PoseHighResolutionNet`` without its head, exactly as the
published CA-PF calls it; :class:`PoseHRNet` adds the 17-joint heatmap head (``final_layer``, a 1x1 conv
on the highest-resolution branch) that every COCO HRNet checkpoint carries. Module names are the official
ones, so the authors' / CA-PF backbone keys load unchanged (mmpose's keys are the same under ``backbone.``).

The stem is hard-coded as in the official code (conv3x3 s2 3→64 + BN + ReLU, conv3x3 s2 64→64 + BN +
ReLU, ``layer1`` = 4 Bottlenecks of 64 planes → 256 channels); stages 2–4 are configured by
:class:`HRNetConfig`. The last stage-4 module fuses only into branch 0 (``multi_scale_output=False``).

The IN-PLACE quirk reproduced here: the official ``HighResolutionModule.forward`` overwrites its input list
with its branch outputs (``x[i] = self.branches[i](x[i])``), and CA-PF returns that list after stage 4, so
feature levels 1..3 are the outputs of the FIRST stage-4 module's branches (before its fusion), not the
raw stage-3 / transition-3 outputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from model.fastpath import FusedConv2d
from model.hrnet_blocks import (
    BLOCKS,
    BlockName,
    HighResolutionModule,
    apply_transition,
    batch_norm,
    conv3x3,
    fuse_conv_relu,
    make_blocks,
    make_transition,
)

STEM_CHANNELS = 64
STEM_BLOCKS = 4
STEM_OUT_CHANNELS = STEM_CHANNELS * 4  # layer1 = Bottlenecks, expansion 4
INPUT_SIZE_HW = (256, 192)
HEATMAP_SIZE_HW = (64, 48)


@dataclass(frozen=True)
class HRStageConfig:
    """One stage (2, 3 or 4): ``num_modules`` multi-resolution modules of ``num_branches`` branches."""

    num_modules: int
    num_branches: int
    num_blocks: tuple[int, ...]
    num_channels: tuple[int, ...]
    block: BlockName = "BASIC"

    def __post_init__(self) -> None:
        if self.num_modules < 1 or self.num_branches < 1:
            raise ValueError(f"stage needs >= 1 module and branch, got {self}")
        if len(self.num_blocks) != self.num_branches or len(self.num_channels) != self.num_branches:
            raise ValueError(f"num_blocks/num_channels must have num_branches={self.num_branches} entries: {self}")
        if self.block not in BLOCKS:
            raise ValueError(f"unknown block {self.block!r}; known: {sorted(BLOCKS)}")

    @property
    def out_channels(self) -> tuple[int, ...]:
        """Channels of each branch's output (``num_channels`` x block expansion)."""
        return tuple(c * BLOCKS[self.block].expansion for c in self.num_channels)

    @classmethod
    def from_official(cls, d: Mapping[str, Any]) -> HRStageConfig:
        """From the official YAML dict: ``NUM_MODULES, NUM_BRANCHES, NUM_BLOCKS, NUM_CHANNELS, BLOCK, FUSE_METHOD``."""
        fuse = d.get("FUSE_METHOD", "SUM")
        if fuse != "SUM":
            raise ValueError(f"only FUSE_METHOD 'SUM' exists in HRNet, got {fuse!r}")
        return cls(
            num_modules=int(d["NUM_MODULES"]),
            num_branches=int(d["NUM_BRANCHES"]),
            num_blocks=tuple(int(b) for b in d["NUM_BLOCKS"]),
            num_channels=tuple(int(c) for c in d["NUM_CHANNELS"]),
            block=cast(BlockName, str(d.get("BLOCK", "BASIC"))),
        )

    @classmethod
    def from_mmpose(cls, d: Mapping[str, Any]) -> HRStageConfig:
        """From mmpose's ``extra['stageN']`` dict: ``num_modules, num_branches, block, num_blocks, num_channels``."""
        return cls(
            num_modules=int(d["num_modules"]),
            num_branches=int(d["num_branches"]),
            num_blocks=tuple(int(b) for b in d["num_blocks"]),
            num_channels=tuple(int(c) for c in d["num_channels"]),
            block=cast(BlockName, str(d.get("block", "BASIC"))),
        )


@dataclass(frozen=True)
class HRNetConfig:
    """Stages 2–4 of an HRNet (the stem and stage 1 are fixed)."""

    stage2: HRStageConfig
    stage3: HRStageConfig
    stage4: HRStageConfig

    @property
    def feature_channels(self) -> tuple[int, ...]:
        """Channels of the feature maps :class:`HRNetBackbone` returns (one per stage-4 branch)."""
        return self.stage4.out_channels

    @classmethod
    def from_official(cls, cfg: Mapping[str, Any]) -> HRNetConfig:
        """From the official / CA-PF config dict (keys ``STAGE2``, ``STAGE3``, ``STAGE4``; others ignored)."""
        return cls(*(HRStageConfig.from_official(cfg[f"STAGE{n}"]) for n in (2, 3, 4)))

    @classmethod
    def from_mmpose(cls, extra: Mapping[str, Any]) -> HRNetConfig:
        """From mmpose's ``backbone['extra']`` (``stage1`` must be the fixed 4-Bottleneck, 64-channel stem)."""
        s1 = extra.get("stage1")
        if s1 is not None:
            stem = (int(s1["num_modules"]), str(s1["block"]), list(s1["num_blocks"]), list(s1["num_channels"]))
            if stem != (1, "BOTTLENECK", [STEM_BLOCKS], [STEM_CHANNELS]):
                raise ValueError(f"unsupported mmpose stage1 {dict(s1)}: only the official 4x Bottleneck(64) stem")
        if extra.get("multiscale_output", False):
            raise ValueError("mmpose multiscale_output=True is not the top-down pose HRNet")
        return cls(*(HRStageConfig.from_mmpose(extra[f"stage{n}"]) for n in (2, 3, 4)))


def _published(width: int) -> HRNetConfig:
    w = width
    return HRNetConfig(
        HRStageConfig(1, 2, (4, 4), (w, 2 * w)),
        HRStageConfig(4, 3, (4, 4, 4), (w, 2 * w, 4 * w)),
        HRStageConfig(3, 4, (4, 4, 4, 4), (w, 2 * w, 4 * w, 8 * w)),
    )


HRNET_PRESETS: dict[str, HRNetConfig] = {
    # COCO 256x192 published models (pose_hrnet_w32/w48_256x192, mmpose td-hm_hrnet-w32/w48).
    "w32": _published(32),
    "w48": _published(48),
    # conformance/hrnet_tiny.pt
    "hrnet-tiny": HRNetConfig(
        HRStageConfig(1, 2, (2, 2), (8, 16)),
        HRStageConfig(2, 3, (1, 1, 1), (8, 16, 32)),
        HRStageConfig(2, 4, (1, 1, 1, 1), (8, 16, 32, 64)),
    ),
    # conformance/capf_full_tiny.pt's backbone
    "hrnet-micro": HRNetConfig(
        HRStageConfig(1, 2, (1, 1), (8, 16)),
        HRStageConfig(1, 3, (1, 1, 1), (8, 16, 32)),
        HRStageConfig(1, 4, (1, 1, 1, 1), (8, 16, 32, 64)),
    ),
}


def _make_stage(cfg: HRStageConfig, in_chs: Sequence[int], multi_scale_output: bool) -> nn.ModuleList:
    modules: list[nn.Module] = []
    chs = list(in_chs)
    for m in range(cfg.num_modules):
        last = m == cfg.num_modules - 1
        module = HighResolutionModule(
            cfg.block, cfg.num_blocks, chs, cfg.num_channels, multi_scale_output=multi_scale_output or not last
        )
        chs = module.out_channels
        modules.append(module)
    return nn.ModuleList(modules)


def _run_stage(stage: nn.ModuleList, xs: list[torch.Tensor]) -> list[torch.Tensor]:
    for module in stage:
        xs = module(xs)
    return xs


class HRNetBackbone(nn.Module):
    """HRNet without a head, returning the four multi-scale feature maps CA-PF samples.

    Keys are the official ones: ``conv1, bn1, conv2, bn2, layer1, transition1..3, stage2..4``.
    """

    def __init__(self, cfg: HRNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.conv1 = conv3x3(3, STEM_CHANNELS, stride=2)
        self.bn1 = batch_norm(STEM_CHANNELS)
        self.conv2 = conv3x3(STEM_CHANNELS, STEM_CHANNELS, stride=2)
        self.bn2 = batch_norm(STEM_CHANNELS)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = make_blocks("BOTTLENECK", STEM_CHANNELS, STEM_CHANNELS, STEM_BLOCKS)
        self.transition1 = make_transition([STEM_OUT_CHANNELS], cfg.stage2.out_channels)
        self.stage2 = _make_stage(cfg.stage2, cfg.stage2.out_channels, multi_scale_output=True)
        self.transition2 = make_transition(cfg.stage2.out_channels, cfg.stage3.out_channels)
        self.stage3 = _make_stage(cfg.stage3, cfg.stage3.out_channels, multi_scale_output=True)
        self.transition3 = make_transition(cfg.stage3.out_channels, cfg.stage4.out_channels)
        self.stage4 = _make_stage(cfg.stage4, cfg.stage4.out_channels, multi_scale_output=False)

    def fuse_activations(self) -> None:
        """After BatchNorm folding: the stem convolutions with their ReLUs fused (see :mod:`model.fastpath`)."""
        self.conv1 = fuse_conv_relu(self.conv1, self.bn1)
        self.conv2 = fuse_conv_relu(self.conv2, self.bn2)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps of a batch of crops.

        Args:
            images: ``(B, 3, 256, 192) float32``, RGB, ImageNet-normalised (other sizes divisible by 32 work).
        Returns:
            ``[feat0, feat1, feat2, feat3]``: feat0 = stage-4 final output (branch 0), ``(B, C0, H/4, W/4)``;
            feat_k (k >= 1) = branch k of the first stage-4 module before fusion, ``(B, C_k, H/2^(k+2), W/2^(k+2))``.
            W32 at 256x192: (B,32,64,48), (B,64,32,24), (B,128,16,12), (B,256,8,6).
        """
        if isinstance(self.conv1, FusedConv2d) and isinstance(self.conv2, FusedConv2d):
            x = self.conv2(self.conv1(images))  # inference copy: BN folded, ReLU fused
        else:
            x = self.relu(self.bn1(self.conv1(images)))
            x = self.relu(self.bn2(self.conv2(x)))
        x = self.layer1(x)
        ys = _run_stage(self.stage2, apply_transition(self.transition1, [x]))
        ys = _run_stage(self.stage3, apply_transition(self.transition2, ys))
        xs = apply_transition(self.transition3, ys)
        first = cast(HighResolutionModule, self.stage4[0])
        branch_outs = first.run_branches(xs)  # the official in-place x[i] = branches[i](x[i])
        ys = first.fuse(branch_outs)
        for module in list(self.stage4)[1:]:
            ys = module(ys)
        return [ys[0], *branch_outs[1:]]


class PoseHRNet(nn.Module):
    """HRNet backbone + heatmap head (``final_layer``: 1x1 conv, bias, on feat0). Keys ``backbone.*``, ``final_layer.*``."""

    def __init__(self, cfg: HRNetConfig, num_joints: int = 17) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_joints = num_joints
        self.backbone = HRNetBackbone(cfg)
        self.final_layer = nn.Conv2d(cfg.feature_channels[0], num_joints, kernel_size=1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Heatmaps and feature maps in one pass.

        Args:
            images: ``(B, 3, 256, 192) float32`` RGB ImageNet-normalised crops.
        Returns:
            heatmaps ``(B, num_joints, 64, 48) float32`` (COCO-17 order for COCO checkpoints), and the
            :meth:`HRNetBackbone.forward` feature list.
        """
        feats = self.backbone(images)
        return self.final_layer(feats[0]), feats
