"""Runner for HRNet backbone vectors (``conformance/hrnet_tiny.pt`` and any width of that format).

The vector's ``config`` is the official dict (``STAGE2``, ``STAGE3``, ``STAGE4``), its ``state_dict`` has the
official backbone key names (a ``module.`` prefix on every key is tolerated), ``inputs['image']`` is
``(B, 3, H, W) float32`` ImageNet-normalised RGB, and the outputs are ``feat0..feat3`` as CA-PF consumes them.
"""

from __future__ import annotations

from typing import Any

import torch

from model.checkpoints.common import load_state_dict_strict, remove_module_prefix
from model.hrnet import HRNetBackbone, HRNetConfig


def run_hrnet_backbone(vector: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Build :class:`HRNetBackbone` from ``vector['config']``, load strictly, return ``{'feat<k>': (B, C_k, h_k, w_k)}``."""
    backbone = HRNetBackbone(HRNetConfig.from_official(vector["config"])).eval()
    load_state_dict_strict(backbone, remove_module_prefix(vector["state_dict"]), source="HRNet conformance vector")
    feats = backbone(vector["inputs"]["image"].to(torch.float32))
    return {f"feat{k}": f for k, f in enumerate(feats)}
