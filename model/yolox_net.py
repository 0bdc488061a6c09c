"""YOLOX's network (CSPDarknet + YOLOX-PAFPN + decoupled head) with random weights, exported to ONNX with the
signature of mmdeploy's ``end2end.onnx`` person detectors — what ``pose3d serve --allow-random-weights`` runs when
a profile's person detector (``yolox-tiny-person``) is not installed.

Written from mmdet 3.x (``CSPDarknet`` P5 arch with a ``Focus`` stem, ``CSPLayer`` of ``DarknetBottleneck`` (1x1
then 3x3, identity in the backbone), ``SPPBottleneck`` (5, 9, 13) in the last stage, ``YOLOXPAFPN``,
``YOLOXHead`` with two 3x3 convs per branch), sizes from the configs: tiny = (deepen 0.33, widen 0.375), s =
(0.33, 0.5), m = (0.67, 0.75); input 416x416 (tiny) or 640x640; one class (person), as the Human-Art detectors
rtmlib runs. Decoding as mmdet's ``YOLOXHead.predict_by_feat``: box centre ``(p_xy + grid) * stride``, size
``exp(p_wh) * stride``, score ``sigmoid(obj) * sigmoid(cls)``; the exported graph keeps the ``TOP_K`` best boxes
(no NMS in the graph: :class:`~service.engine.person_boxes.OnnxPersonDetector` runs its own).
Not a conformance artefact: it exists so that the pipeline runs the real architecture's cost offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import torch
from torch import nn

from model.rtmpose_net import SPPBottleneck, conv

SIZES: Final = {"tiny": (0.33, 0.375, 416), "s": (0.33, 0.5, 640), "m": (0.67, 0.75, 640)}
"""size → (deepen, widen, input side in pixels)."""
ARCH: Final = [(64, 128, 3, True, False), (128, 256, 9, True, False), (256, 512, 9, True, False)]
LAST: Final = (512, 1024, 3, False, True)
STRIDES: Final = (8, 16, 32)
TOP_K: Final = 100


class Bottleneck(nn.Module):
    """DarknetBottleneck: 1x1 then 3x3 conv, identity when ``add``."""

    def __init__(self, c: int, add: bool) -> None:
        super().__init__()
        self.conv1, self.conv2, self.add = conv(c, c, 1), conv(c, c, 3), add

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        out: torch.Tensor = x + y if self.add else y
        return out


class CSPLayer(nn.Module):
    """Two 1x1 branches (one through ``n`` bottlenecks), concatenated, then a 1x1 conv."""

    def __init__(self, cin: int, cout: int, n: int, add: bool) -> None:
        super().__init__()
        mid = cout // 2
        self.main, self.short, self.final = conv(cin, mid, 1), conv(cin, mid, 1), conv(2 * mid, cout, 1)
        self.blocks = nn.Sequential(*[Bottleneck(mid, add) for _ in range(n)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.final(torch.cat([self.blocks(self.main(x)), self.short(x)], dim=1))
        return out


class Focus(nn.Module):
    """Space-to-depth (2x2 pixels → 12 channels), then a 3x3 conv."""

    def __init__(self, cout: int) -> None:
        super().__init__()
        self.conv = conv(12, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]]
        out: torch.Tensor = self.conv(torch.cat(parts, dim=1))
        return out


def _stage(cin: int, cout: int, n: int, add: bool, spp: bool) -> nn.Sequential:
    layers: list[nn.Module] = [conv(cin, cout, 3, 2)]
    if spp:
        layers.append(SPPBottleneck(cout, cout))
    layers.append(CSPLayer(cout, cout, n, add))
    return nn.Sequential(*layers)


class YOLOX(nn.Module):
    """``(1, 3, S, S)`` BGR 0..255 letterboxed image → ``dets (1, TOP_K, 5)`` input-canvas pixels + score,
    ``labels (1, TOP_K)`` int64 (all 0: person)."""

    def __init__(self, size: str) -> None:
        super().__init__()
        deepen, widen, self.side = SIZES[size]

        def w(c: int) -> int:
            return int(c * widen)

        def d(n: int) -> int:
            return max(round(n * deepen), 1)

        self.stem = Focus(w(64))
        self.stages = nn.ModuleList(_stage(w(a), w(b), d(n), add, spp) for a, b, n, add, spp in [*ARCH, LAST])
        c3, c4, c5 = w(256), w(512), w(1024)
        self.reduce5, self.top4 = conv(c5, c4, 1), CSPLayer(2 * c4, c4, d(3), False)
        self.reduce4, self.top3 = conv(c4, c3, 1), CSPLayer(2 * c3, c3, d(3), False)
        self.down3, self.bottom4 = conv(c3, c3, 3, 2), CSPLayer(2 * c3, c4, d(3), False)
        self.down4, self.bottom5 = conv(c4, c4, 3, 2), CSPLayer(2 * c4, c5, d(3), False)
        self.outs = nn.ModuleList(conv(c, w(256), 1) for c in (c3, c4, c5))
        self.heads = nn.ModuleList(Head(w(256)) for _ in STRIDES)
        self.up = nn.Upsample(scale_factor=2.0, mode="nearest")

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The PAFPN's three outputs at strides 8, 16, 32."""
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        x3, x4, x5 = feats[1:]
        r5 = self.reduce5(x5)
        t4 = self.top4(torch.cat([self.up(r5), x4], 1))
        r4 = self.reduce4(t4)
        p3 = self.top3(torch.cat([self.up(r4), x3], 1))
        p4 = self.bottom4(torch.cat([self.down3(p3), r4], 1))
        p5 = self.bottom5(torch.cat([self.down4(p4), r5], 1))
        return [out(p) for out, p in zip(self.outs, (p3, p4, p5), strict=True)]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        boxes, scores = [], []
        heads: list[Head] = list(self.heads)  # type: ignore[arg-type]
        for head, feat, stride in zip(heads, self.features(x), STRIDES, strict=True):
            b, s = head.decode(feat, stride)
            boxes.append(b)
            scores.append(s)
        box, score = torch.cat(boxes, 1), torch.cat(scores, 1)
        top, idx = torch.topk(score, TOP_K, dim=1)
        dets = torch.cat([torch.gather(box, 1, idx[..., None].expand(-1, -1, 4)), top[..., None]], dim=-1)
        return dets, torch.zeros_like(idx)


class Head(nn.Module):
    """One level of YOLOX's decoupled head (1 class)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.cls = nn.Sequential(conv(c, c, 3), conv(c, c, 3))
        self.reg = nn.Sequential(conv(c, c, 3), conv(c, c, 3))
        self.conv_cls, self.conv_reg, self.conv_obj = nn.Conv2d(c, 1, 1), nn.Conv2d(c, 4, 1), nn.Conv2d(c, 1, 1)

    def decode(self, feat: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(1, C, h, w)`` → boxes ``(1, h*w, 4)`` xyxy canvas pixels and scores ``(1, h*w)``."""
        reg = self.reg(feat)
        cls, box, obj = self.conv_cls(self.cls(feat)), self.conv_reg(reg), self.conv_obj(reg)
        h, w = feat.shape[-2:]
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        grid = torch.stack([xs, ys], -1).reshape(1, -1, 2).to(feat.dtype)
        box = box.flatten(2).transpose(1, 2)
        centre, size = (box[..., :2] + grid) * stride, box[..., 2:].exp() * stride
        score = (cls.sigmoid() * obj.sigmoid()).flatten(1)
        return torch.cat([centre - size / 2, centre + size / 2], -1), score


def export(size: str, path: Path, seed: int = 0) -> Path:
    """Random-weight YOLOX-``size`` (one class) as ONNX: ``input (1, 3, S, S)`` → ``dets``, ``labels``."""
    torch.manual_seed(seed)
    net = YOLOX(size).eval()
    torch.onnx.export(
        net,
        (torch.zeros(1, 3, net.side, net.side),),
        str(path),
        input_names=["input"],
        output_names=["dets", "labels"],
        opset_version=17,
        dynamo=False,
    )
    return path
