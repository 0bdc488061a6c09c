"""The networks the suite measures, each with its fast and its reference (previous) path on the same weights.

A :class:`NetworkCase` builds one random-weight model (weights do not change the cost of a forward) and hands
out zero-argument closures that run one batched forward on fixed random inputs, either on the fast path
(:mod:`model.fastpath` switched on; HRNet folded, fused and channels-last) or on the reference path (the published op order;
HRNet NCHW), so both are timed side by side in one process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from model.capf import CAPF_PRESETS, CAPFLifter
from model.fastpath import fold_batch_norms, set_fast_path
from model.hrnet import HRNET_PRESETS, PoseHRNet
from model.pstmo import PSTMO, PSTMO_PRESETS

Inputs = tuple[Any, ...]
HEATMAP_HW = (64, 48)
CROP_HW = (256, 192)


@dataclass
class NetworkCase:
    """One network to measure.

    Attributes:
        name: preset name (``pstmo-243-small``, ``capf-w32``, ``w32`` …); label: what the tables call it.
        unit: what one item is (``window``, ``pose``, ``crop``).
        config: the widths and sizes that define the cost (goes into every output).
        model: the network (eval mode, random weights); fast_model: what runs the fast path when it is not
            ``model`` itself (HRNet: the folded NHWC copy, or ONNX Runtime), else None.
        make_inputs: ``batch -> inputs`` of one forward (batch-first tensors).
        forward: ``(model, inputs) -> outputs``.
        channels_last_inputs: the fast path gets its 4-D inputs NHWC (as the serving detector delivers them).
    """

    name: str
    label: str
    unit: str
    config: dict[str, Any]
    model: nn.Module
    make_inputs: Callable[[int], Inputs]
    forward: Callable[[nn.Module, Inputs], Any]
    fast_model: Any = None
    channels_last_inputs: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    _inputs: dict[tuple[int, bool], Inputs] = field(default_factory=dict)

    def _prepared(self, batch: int, fast: bool) -> tuple[nn.Module, Inputs]:
        key = (batch, fast)
        if key not in self._inputs:
            torch.manual_seed(batch)
            inputs = _to(self.make_inputs(batch), self.device)
            if fast and self.channels_last_inputs:  # as the serving detector produces them (images, feature maps)
                inputs = _channels_last(inputs)
            self._inputs[key] = inputs
        model = self.fast_model if fast and self.fast_model is not None else self.model
        return model, self._inputs[key]

    def runner(self, batch: int, fast: bool) -> Callable[[], Any]:
        """A closure running one forward of ``batch`` items on the fast or the reference path."""
        model, inputs = self._prepared(batch, fast)

        def run() -> Any:
            if isinstance(model, nn.Module):
                set_fast_path(model, fast)
            with torch.inference_mode():
                out = self.forward(model, inputs)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            return out

        return run


def _to(inputs: Any, device: torch.device) -> Any:
    """Every tensor in a nested tuple on ``device``."""
    if isinstance(inputs, tuple):
        return tuple(_to(x, device) for x in inputs)
    return inputs.to(device) if isinstance(inputs, torch.Tensor) else inputs


def _channels_last(inputs: Any) -> Any:
    """Every 4-D tensor in a nested tuple as NHWC (same values)."""
    if isinstance(inputs, tuple):
        return tuple(_channels_last(x) for x in inputs)
    if isinstance(inputs, torch.Tensor) and inputs.dim() == 4:
        return inputs.contiguous(memory_format=torch.channels_last)
    return inputs


def _perturbed(model: nn.Module, seed: int) -> nn.Module:
    """Random weights with non-trivial norm statistics (as the conformance vectors), eval mode."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_var is not None:
                m.running_var.uniform_(0.5, 1.5)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def pstmo_case(preset: str, label: str) -> NetworkCase:
    """P-STMO through its serving entry :meth:`PSTMO.lift`: ``(B, frames, 17, 2)`` windows → ``(B, 17, 3)``."""
    cfg = PSTMO_PRESETS[preset]
    model = _perturbed(PSTMO(cfg), 0)
    return NetworkCase(
        name=preset,
        label=label,
        unit="window",
        config={
            "frames": cfg.frames,
            "channel": cfg.channel,
            "d_hid": cfg.d_hid,
            "layers": cfg.layers,
            "mofa_strides": list(cfg.stride_num),
        },
        model=model,
        make_inputs=lambda b: (0.5 * torch.randn(b, cfg.frames, cfg.n_joints, 2),),
        forward=lambda m, x: m.lift(x[0]),  # type: ignore[operator]
    )


def capf_case(preset: str, label: str) -> NetworkCase:
    """The CA-PF lifter on HRNet feature maps at 1/4 … 1/32 of a 256×192 crop: ``→ (B, 1, 17, 3)``."""
    cfg = CAPF_PRESETS[preset]
    model = _perturbed(CAPFLifter(cfg), 1)

    def inputs(b: int) -> Inputs:
        feats = tuple(
            torch.randn(b, c, HEATMAP_HW[0] >> i, HEATMAP_HW[1] >> i) for i, c in enumerate(cfg.feature_channels)
        )
        return torch.randn(b, cfg.num_joints, 2), torch.rand(b, cfg.num_joints, 2) * 2 - 1, feats

    return NetworkCase(
        name=preset,
        label=label,
        unit="pose",
        config={
            "embed_dim_ratio": cfg.embed_dim_ratio,
            "feature_channels": list(cfg.feature_channels),
            "depths": [cfg.context_depth, cfg.res_depth, cfg.joint_depth],
            "heads": cfg.num_heads,
        },
        model=model,
        make_inputs=inputs,
        forward=lambda m, x: m(x[0], x[1], list(x[2])),
        channels_last_inputs=True,  # the serving detector hands over channels-last feature maps
    )


def hrnet_case(preset: str, label: str) -> NetworkCase:
    """The top-down HRNet on ``(B, 3, 256, 192)`` crops → 64×48 heatmaps + feature maps.

    Fast = what :class:`~service.engine.detector.TopDownDetector` runs: BatchNorms folded, ReLU and residual adds
    fused into the oneDNN convolutions (:func:`model.fastpath.fold_batch_norms`), channels-last."""
    cfg = HRNET_PRESETS[preset]
    model = _perturbed(PoseHRNet(cfg), 2)
    fast = fold_batch_norms(model).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return NetworkCase(
        name=preset,
        label=label,
        unit="crop",
        config={"widths": list(cfg.feature_channels), "input_hw": list(CROP_HW)},
        model=model,
        make_inputs=lambda b: (torch.randn(b, 3, *CROP_HW),),
        forward=lambda m, x: m(x[0]),
        fast_model=fast,
        channels_last_inputs=True,
    )


def hrnet_onnx_case(preset: str, label: str) -> NetworkCase:
    """HRNet as the ONNX Runtime backend runs it (fast) vs the torch reference (NCHW, BatchNorm unfolded)."""
    from service.engine.hrnet_onnx import OnnxHRNet

    case = hrnet_case(preset.removesuffix("-onnx"), label)
    case.name = preset
    assert isinstance(case.model, PoseHRNet)
    case.fast_model = OnnxHRNet.from_torch(case.model, threads=torch.get_num_threads())
    case.channels_last_inputs = False
    case.config = {**case.config, "runtime": "onnxruntime (CPU EP)"}
    return case


FULL_SUITE: Sequence[tuple[Callable[[str, str], NetworkCase], str, str]] = (
    (pstmo_case, "pstmo-243-small", "P-STMO-S 243"),
    (pstmo_case, "pstmo-81", "P-STMO 81"),
    (pstmo_case, "pstmo-27", "P-STMO 27"),
    (capf_case, "capf-w32", "CA-PF lifter (W32 features)"),
    (hrnet_case, "w32", "HRNet-W32 256x192"),
    (hrnet_onnx_case, "w32-onnx", "HRNet-W32 256x192, ONNX Runtime"),
)
QUICK_SUITE: Sequence[tuple[Callable[[str, str], NetworkCase], str, str]] = (
    (pstmo_case, "pstmo-tiny-27", "P-STMO tiny 27"),
    (capf_case, "capf-tiny", "CA-PF lifter tiny"),
    (hrnet_case, "hrnet-micro", "HRNet micro 256x192"),
)


def build_cases(quick: bool, only: Sequence[str] = (), device: str = "cpu") -> list[NetworkCase]:
    """The networks of the full (published sizes) or the quick (tiny) suite, optionally only some presets."""
    suite = QUICK_SUITE if quick else FULL_SUITE
    wanted = [(make, name, label) for make, name, label in suite if not only or name in only]
    if device != "cpu":  # the ONNX Runtime backend is a CPU backend
        wanted = [(make, name, label) for make, name, label in wanted if not name.endswith("-onnx")]
    cases = [make(name, label) for make, name, label in wanted]
    for case in cases:
        case.device = torch.device(device)
        case.model.to(case.device)
        if isinstance(case.fast_model, nn.Module):
            case.fast_model.to(case.device)
    return cases
