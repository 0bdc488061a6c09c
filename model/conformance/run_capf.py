"""Runners for CA-PF vectors: the lifter alone (``capf_lifter_*.pt``) and the whole model (``capf_full_*.pt``).

Lifter vectors: ``config['poseformer']`` (``base_dim``, ``embed_dim_ratio``, ``levels``), ``config['backbone']``,
the official defaults (``num_heads``, ``mlp_ratio``, ``qkv_bias``, ``qk_scale``, ``num_joints``, ``in_chans``) and
``truncate_blocks_to_depth`` (each stack cut to its first ``n`` layers; absent or None: untruncated). Inputs
``keypoints_2d``, ``ref`` (B, 17, 2) and ``feat0..feat{L-1}`` NCHW; output ``pose3d`` (B, 1, 17, 3).

Whole-model vectors: ``config['model']['backbone']`` (official HRNet dict with ``type``) and
``config['model']['poseformer']``; inputs ``images`` (B, 256, 192, 3) NHWC, ``keypoints_2d_cpn``,
``keypoints_2d_cpn_crop`` (crop pixels); outputs ``pose3d``, ``pose3d_flip_tta``, ``feat0..3``.
"""

from __future__ import annotations

from typing import Any, Final

import torch

from model.capf import CAPFLifter, CAPFLifterConfig
from model.capf_full import CAPF
from model.checkpoints.capf import lifter_state, load_capf_state_dict
from model.checkpoints.common import load_state_dict_strict
from model.hrnet import HRNetConfig

_LIFTER_OVERRIDES: Final = ("num_joints", "in_chans", "num_heads", "mlp_ratio", "qkv_bias", "qk_scale")


def lifter_config_from_vector(config: dict[str, Any]) -> CAPFLifterConfig:
    """The :class:`CAPFLifterConfig` a lifter vector's ``config`` describes."""
    overrides = {k: config[k] for k in _LIFTER_OVERRIDES if k in config}
    return CAPFLifterConfig.from_official(
        config["poseformer"],
        str(config.get("backbone", "hrnet_32")),
        truncate_blocks_to_depth=config.get("truncate_blocks_to_depth"),
        **overrides,
    )


def run_capf_lifter(vector: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Build :class:`CAPFLifter`, load strictly, return ``{'pose3d': (B, 1, 17, 3)}``."""
    lifter = CAPFLifter(lifter_config_from_vector(vector["config"])).eval()
    load_state_dict_strict(lifter, lifter_state(vector["state_dict"]), source="CA-PF lifter conformance vector")
    inputs = vector["inputs"]
    feats = [inputs[f"feat{k}"].to(torch.float32) for k in range(lifter.cfg.levels)]
    return {"pose3d": lifter(inputs["keypoints_2d"].to(torch.float32), inputs["ref"].to(torch.float32), feats)}


def run_capf_full(vector: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Build :class:`CAPF`, load strictly, return ``pose3d``, ``pose3d_flip_tta`` and ``feat0..3``."""
    model_cfg = vector["config"]["model"]
    backbone_cfg = model_cfg["backbone"]
    lifter_cfg = CAPFLifterConfig.from_official(model_cfg["poseformer"], str(backbone_cfg.get("type", "hrnet_32")))
    model = CAPF(HRNetConfig.from_official(backbone_cfg), lifter_cfg).eval()
    load_capf_state_dict(model, vector["state_dict"], source="CA-PF whole-model conformance vector")
    inputs = vector["inputs"]
    images = inputs["images"].to(torch.float32)
    kp = inputs["keypoints_2d_cpn"].to(torch.float32)
    crop = inputs["keypoints_2d_cpn_crop"].to(torch.float32)
    out = {f"feat{k}": f for k, f in enumerate(model.features(images))}
    out["pose3d"] = model(images, kp, crop)
    out["pose3d_flip_tta"] = model(images, kp, crop, flip_test=True)
    return out
