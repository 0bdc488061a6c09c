"""RTMPose's network (CSPNeXt backbone + RTMCC SimCC head) with random weights, exported to ONNX with the published
signature — for measuring the realtime profile's speed when no real RTMPose weights can be downloaded.

Written from mmpose 1.x / mmdet 3.x (``CSPNeXt`` P5 arch, ``CSPLayer`` with ``CSPNeXtBlock`` and channel attention,
``SPPBottleneck``; ``RTMCCHead`` with ``ScaleNorm``, ``RTMCCBlock`` (a gated attention unit) and the two SimCC
classifiers), sizes from the RTMPose configs: t = (deepen 0.167, widen 0.375), s = (0.33, 0.5), m = (0.67, 0.75);
256x192 input, 17 joints, simcc_split_ratio 2, GAU hidden 256, s = 128, expansion 2. BatchNorm is folded by the
ONNX export's constant folding as in mmdeploy's exports. Not a conformance artefact: the FLOP count is printed so
that it can be checked against the publisher's table (0.36 / 0.68 / 1.93 G "FLOPs", mmcv counting a multiply-add
as one).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

SIZES = {"t": (0.167, 0.375), "s": (0.33, 0.5), "m": (0.67, 0.75)}
ARCH = [(64, 128, 3, True, False), (128, 256, 6, True, False), (256, 512, 6, True, False), (512, 1024, 3, False, True)]


def conv(cin: int, cout: int, k: int, s: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.SiLU())


class Block(nn.Module):
    """CSPNeXtBlock: 3x3 conv, then a depthwise-separable 5x5 conv, with identity."""

    def __init__(self, c: int, add: bool) -> None:
        super().__init__()
        self.conv1 = conv(c, c, 3)
        self.conv2 = nn.Sequential(conv(c, c, 5, groups=c), conv(c, c, 1))
        self.add = add

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        out: torch.Tensor = x + y if self.add else y
        return out


class CSPLayer(nn.Module):
    def __init__(self, cin: int, cout: int, n: int, add: bool) -> None:
        super().__init__()
        mid = cout // 2
        self.main, self.short, self.final = conv(cin, mid, 1), conv(cin, mid, 1), conv(2 * mid, cout, 1)
        self.blocks = nn.Sequential(*[Block(mid, add) for _ in range(n)])
        self.attn = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(2 * mid, 2 * mid, 1), nn.Hardsigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([self.blocks(self.main(x)), self.short(x)], dim=1)
        out: torch.Tensor = self.final(y * self.attn(y))
        return out


class SPPBottleneck(nn.Module):
    """1x1 conv, max pools 5/9/13 concatenated, 1x1 conv (mmdet's ``SPPBottleneck``; YOLOX uses it too)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        mid = cin // 2
        self.c1, self.c2 = conv(cin, mid, 1), conv(mid * 4, cout, 1)
        self.pools = nn.ModuleList(nn.MaxPool2d(k, 1, k // 2) for k in (5, 9, 13))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.c1(x)
        out: torch.Tensor = self.c2(torch.cat([x] + [p(x) for p in self.pools], dim=1))
        return out


class ScaleNorm(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale, self.g = dim**-0.5, nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x / (torch.norm(x, dim=-1, keepdim=True) * self.scale).clamp(min=1e-5) * self.g
        return out


class GAU(nn.Module):
    """RTMCCBlock (self-attention): gated attention unit over the 17 joint tokens."""

    def __init__(self, dim: int = 256, s: int = 128, expansion: int = 2) -> None:
        super().__init__()
        self.e, self.s = dim * expansion, s
        self.ln, self.uv, self.o = ScaleNorm(dim), nn.Linear(dim, 2 * self.e + s, bias=False), nn.Linear(self.e, dim)
        self.gamma, self.beta = nn.Parameter(torch.rand(2, s)), nn.Parameter(torch.zeros(2, s))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, v, base = torch.split(nn.functional.silu(self.uv(self.ln(x))), [self.e, self.e, self.s], dim=-1)
        qk = base[..., None, :] * self.gamma + self.beta  # (B, K, 2, s)
        attn = torch.relu(qk[..., 0, :] @ qk[..., 1, :].transpose(1, 2) / math.sqrt(self.s)) ** 2
        out: torch.Tensor = x + self.o(u * (attn @ v))
        return out


class RTMPose(nn.Module):
    def __init__(self, size: str) -> None:
        super().__init__()
        deepen, widen = SIZES[size]
        stem = int(ARCH[0][0] * widen)
        layers: list[nn.Module] = [conv(3, stem // 2, 3, 2), conv(stem // 2, stem // 2, 3), conv(stem // 2, stem, 3)]
        for cin, cout, n, add, spp in ARCH:
            cin, cout = int(cin * widen), int(cout * widen)
            layers.append(conv(cin, cout, 3, 2))
            if spp:
                layers.append(SPPBottleneck(cout, cout))
            layers.append(CSPLayer(cout, cout, max(round(n * deepen), 1), add))
        self.backbone = nn.Sequential(*layers)
        top = int(1024 * widen)
        self.final = nn.Conv2d(top, 17, 7, 1, 3)
        self.mlp = nn.Sequential(ScaleNorm(48), nn.Linear(48, 256, bias=False))
        self.gau = GAU()
        self.cls_x, self.cls_y = nn.Linear(256, 384, bias=False), nn.Linear(256, 512, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.gau(self.mlp(torch.flatten(self.final(self.backbone(x)), 2)))
        return self.cls_x(f), self.cls_y(f)


def gflops(size: str) -> float:
    """GFLOP of one 256x192 crop (a multiply-add = 2 FLOP, torch's FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode

    net = RTMPose(size).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, 3, 256, 192))
    return float(counter.get_total_flops()) / 1e9


def export(size: str, path: Path, seed: int = 0) -> Path:
    """Random-weight RTMPose-``size`` as ONNX: ``input`` (batch, 3, 256, 192) → ``simcc_x``, ``simcc_y``."""
    torch.manual_seed(seed)
    net = RTMPose(size).eval()
    torch.onnx.export(
        net,
        (torch.zeros(1, 3, 256, 192),),
        str(path),
        input_names=["input"],
        output_names=["simcc_x", "simcc_y"],
        dynamic_axes={"input": {0: "batch"}, "simcc_x": {0: "batch"}, "simcc_y": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    return path


if __name__ == "__main__":
    for name in SIZES:
        params = sum(p.numel() for p in RTMPose(name).parameters()) / 1e6
        print(f"RTMPose-{name}: {params:.2f} M params, {gflops(name):.2f} GFLOP per crop (multiply-add = 2)")
