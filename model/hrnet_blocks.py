"""HRNet building blocks with the official module names (so official state_dict keys load unchanged).

Layout and names follow the HRNet authors' ``pose_hrnet.py`` (which CA-PF copies and mmpose's ``HRNet``
matches key for key): residual blocks (``conv1/bn1/...``, ``downsample.0/1``), the multi-resolution
module (``branches.<i>.<k>``, ``fuse_layers.<i>.<j>``) and the transition layers between stages.
Where the official code stores ``None`` (identity fuse entry ``i == j``, a branch whose width does
not change), these modules hold a parameter-free :class:`torch.nn.Identity`, which adds no keys.

All tensors are ``(B, C, H, W) float32`` feature maps; BatchNorm eps is 1e-5 and momentum 0.1
(the official ``BN_MOMENTUM``), convolutions have no bias.

Inference copies (:func:`model.fastpath.fold_batch_norms`) fold the BatchNorms and then call each block's
``fuse_activations()``: its convolutions become :class:`~model.fastpath.FusedConv2d` (ReLU, and the shortcut add
of the last one, as oneDNN post-ops) and ``forward`` takes the fused branch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

import torch
from torch import nn

from model.fastpath import FusedConv2d

BlockName = Literal["BASIC", "BOTTLENECK"]


def fuse_conv_relu(conv: nn.Conv2d, norm: nn.Module) -> nn.Conv2d:
    """``conv`` as a ReLU-fused :class:`FusedConv2d` if its BatchNorm ``norm`` was folded away, else ``conv``."""
    foldable = type(conv) is nn.Conv2d and isinstance(norm, nn.Identity) and conv.padding_mode == "zeros"
    return FusedConv2d.of(conv, relu=True) if foldable else conv


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1, no bias."""
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


def batch_norm(ch: int) -> nn.BatchNorm2d:
    """BatchNorm as the official code builds it (eps 1e-5, momentum 0.1)."""
    return nn.BatchNorm2d(ch, momentum=0.1)


def projection(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    """Residual shortcut ``downsample``: 1x1 conv (stride) + BN; keys ``downsample.0``, ``downsample.1``."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False), batch_norm(out_ch))


class BasicBlock(nn.Module):
    """Two 3x3 conv+BN with an identity (or projected) shortcut. ``(B, in, H, W) -> (B, planes, H/s, W/s)``."""

    expansion: ClassVar[int] = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = batch_norm(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = batch_norm(planes)
        self.downsample = downsample

    def fuse_activations(self) -> None:
        """After BatchNorm folding: ``conv1`` + ReLU and ``conv2`` + shortcut + ReLU as fused convolutions."""
        self.conv1 = fuse_conv_relu(self.conv1, self.bn1)
        self.conv2 = fuse_conv_relu(self.conv2, self.bn2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        if isinstance(self.conv1, FusedConv2d) and isinstance(self.conv2, FusedConv2d):
            fused: torch.Tensor = self.conv2(self.conv1(x), residual)
            return fused
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        result: torch.Tensor = self.relu(out + residual)
        return result


class Bottleneck(nn.Module):
    """1x1 → 3x3 (stride) → 1x1 (x4 channels) with shortcut. ``(B, in, H, W) -> (B, 4*planes, H/s, W/s)``."""

    expansion: ClassVar[int] = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = batch_norm(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = batch_norm(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = batch_norm(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def fuse_activations(self) -> None:
        """After BatchNorm folding: every convolution with its ReLU (the last with the shortcut add) fused."""
        self.conv1 = fuse_conv_relu(self.conv1, self.bn1)
        self.conv2 = fuse_conv_relu(self.conv2, self.bn2)
        self.conv3 = fuse_conv_relu(self.conv3, self.bn3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        convs = (self.conv1, self.conv2, self.conv3)
        if all(isinstance(c, FusedConv2d) for c in convs):
            fused: torch.Tensor = self.conv3(self.conv2(self.conv1(x)), residual)
            return fused
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        result: torch.Tensor = self.relu(out + residual)
        return result


BLOCKS: dict[BlockName, type[BasicBlock] | type[Bottleneck]] = {"BASIC": BasicBlock, "BOTTLENECK": Bottleneck}


def make_blocks(block: BlockName, inplanes: int, planes: int, num_blocks: int, stride: int = 1) -> nn.Sequential:
    """``num_blocks`` residual blocks; the first projects the shortcut when stride or width changes.

    Returns a Sequential ``(B, inplanes, H, W) -> (B, planes * expansion, H/stride, W/stride)``.
    """
    cls = BLOCKS[block]
    out_ch = planes * cls.expansion
    downsample = projection(inplanes, out_ch, stride) if stride != 1 or inplanes != out_ch else None
    layers: list[nn.Module] = [cls(inplanes, planes, stride, downsample)]
    layers += [cls(out_ch, planes) for _ in range(1, num_blocks)]
    return nn.Sequential(*layers)


def _fuse_entry(in_chs: Sequence[int], i: int, j: int) -> nn.Module:
    """How branch ``j`` reaches the resolution and width of output ``i`` (official ``_make_fuse_layers``).

    j > i: 1x1 conv + BN + nearest upsample by 2^(j-i).  j == i: identity (None in the official code).
    j < i: (i - j) 3x3 stride-2 conv+BN steps, ReLU after each but the last; widths stay ``in_chs[j]``
    until the last step, which gives ``in_chs[i]``.
    """
    if j > i:
        return nn.Sequential(
            nn.Conv2d(in_chs[j], in_chs[i], kernel_size=1, bias=False),
            batch_norm(in_chs[i]),
            nn.Upsample(scale_factor=float(2 ** (j - i)), mode="nearest"),
        )
    if j == i:
        return nn.Identity()
    steps: list[nn.Module] = []
    for k in range(i - j):
        last = k == i - j - 1
        out_ch = in_chs[i] if last else in_chs[j]
        step: list[nn.Module] = [conv3x3(in_chs[j], out_ch, stride=2), batch_norm(out_ch)]
        if not last:
            step.append(nn.ReLU(inplace=True))
        steps.append(nn.Sequential(*step))
    return nn.Sequential(*steps)


class HighResolutionModule(nn.Module):
    """One multi-resolution module: parallel branches, then exchange across resolutions.

    Input: list of ``num_branches`` tensors, branch i ``(B, in_chs[i], H/2^i, W/2^i)``.
    Output (:meth:`forward`): fused list, all branches or only branch 0 when ``multi_scale_output`` is False.
    """

    def __init__(
        self,
        block: BlockName,
        num_blocks: Sequence[int],
        in_chs: Sequence[int],
        num_channels: Sequence[int],
        multi_scale_output: bool = True,
    ) -> None:
        super().__init__()
        n = len(num_channels)
        if not (len(num_blocks) == len(in_chs) == n):
            raise ValueError(f"branch counts differ: blocks {num_blocks}, inputs {in_chs}, channels {num_channels}")
        self.num_branches = n
        expansion = BLOCKS[block].expansion
        self.branches = nn.ModuleList(make_blocks(block, in_chs[i], num_channels[i], num_blocks[i]) for i in range(n))
        self.out_channels = [c * expansion for c in num_channels]
        n_out = n if multi_scale_output else 1
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(_fuse_entry(self.out_channels, i, j) for j in range(n)) for i in range(n_out if n > 1 else 0)
        )
        self.relu = nn.ReLU(inplace=False)

    def run_branches(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Each branch's residual blocks on its own input, before any fusion."""
        return [branch(x) for branch, x in zip(self.branches, xs, strict=True)]

    def fuse_activations(self) -> None:
        """After BatchNorm folding: the last stride-2 convolution of every downsampling fuse entry (j < i) adds
        its output to the running sum as a oneDNN post-op (same float32 sum, same order)."""
        for row in self.fuse_layers:
            assert isinstance(row, nn.ModuleList)
            for entry in row:
                last = entry[-1] if isinstance(entry, nn.Sequential) else None
                if isinstance(last, nn.Sequential) and len(last) == 2 and isinstance(last[1], nn.Identity):
                    conv = last[0]
                    if type(conv) is nn.Conv2d and conv.padding_mode == "zeros":
                        last[0] = FusedConv2d.of(conv, relu=False)

    def fuse(self, ys: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Sum every branch brought to output i's resolution (official order: j = 0, 1, ...), then ReLU."""
        if self.num_branches == 1:
            return [ys[0]]
        fused: list[torch.Tensor] = []
        for row in self.fuse_layers:
            assert isinstance(row, nn.ModuleList)
            acc = row[0](ys[0])
            for j in range(1, self.num_branches):
                acc = _add_entry(row[j], ys[j], acc)
            fused.append(self.relu(acc))
        return fused

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return self.fuse(self.run_branches(xs))


def _add_entry(entry: nn.Module, y: torch.Tensor, acc: torch.Tensor) -> torch.Tensor:
    """``acc + entry(y)``; a fuse entry ending in a :class:`FusedConv2d` adds ``acc`` inside that convolution."""
    if isinstance(entry, nn.Sequential):
        *steps, last = list(entry)
        if isinstance(last, nn.Sequential) and isinstance(last[0], FusedConv2d) and not last[0].relu:
            for step in steps:
                y = step(y)
            added: torch.Tensor = last[0](y, acc)  # conv(y) + acc: the same float32 sum as acc + conv(y)
            return added
    out: torch.Tensor = acc + entry(y)
    return out


def make_transition(pre_chs: Sequence[int], cur_chs: Sequence[int]) -> nn.ModuleList:
    """Transition between stages (official ``_make_transition_layer``).

    Existing branch i: 3x3 conv+BN+ReLU if its width changes, else identity. New branch i (i >= len(pre)):
    a chain of 3x3 stride-2 conv+BN+ReLU steps from the last previous branch; keys ``<i>.<step>.<0|1>``.
    """
    layers: list[nn.Module] = []
    for i, out_ch in enumerate(cur_chs):
        if i < len(pre_chs):
            if pre_chs[i] != out_ch:
                layers.append(nn.Sequential(conv3x3(pre_chs[i], out_ch), batch_norm(out_ch), nn.ReLU(inplace=True)))
            else:
                layers.append(nn.Identity())
            continue
        steps: list[nn.Module] = []
        in_ch = pre_chs[-1]
        for k in range(i + 1 - len(pre_chs)):
            step_out = out_ch if k == i - len(pre_chs) else in_ch
            steps.append(nn.Sequential(conv3x3(in_ch, step_out, stride=2), batch_norm(step_out), nn.ReLU(inplace=True)))
        layers.append(nn.Sequential(*steps))
    return nn.ModuleList(layers)


def apply_transition(transition: nn.ModuleList, ys: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Inputs of the next stage: existing branches from their own output, new ones from the last one."""
    return [layer(ys[i] if i < len(ys) else ys[-1]) for i, layer in enumerate(transition)]
