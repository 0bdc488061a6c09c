"""Conformance runner for P-STMO vectors (``VectorKind.PSTMO``).

The vector's ``config`` holds the published constructor arguments (``frames``, ``stride_num``,
``layers``, ``channel``, ``d_hid``, ``n_joints``, ``out_joints``); its ``state_dict`` has the official
key names without ``module.``; ``inputs`` are ``x`` and optionally ``x_flip`` ``(B, 2, T, J, 1)``.
"""

from __future__ import annotations

from typing import Any

import torch

from model.checkpoints.pstmo import load_pstmo_state_dict
from model.pstmo import PSTMO, PSTMOConfig, flip_official_layout


def pstmo_config_from_vector(config: dict[str, Any]) -> PSTMOConfig:
    """The :class:`PSTMOConfig` of a vector's ``config`` (heads from ``fixed_in_code``, default 8)."""
    fixed = config.get("fixed_in_code", {})
    return PSTMOConfig(
        frames=int(config["frames"]),
        stride_num=tuple(int(s) for s in config["stride_num"]),
        layers=int(config["layers"]),
        channel=int(config["channel"]),
        d_hid=int(config["d_hid"]),
        n_joints=int(config.get("n_joints", 17)),
        out_joints=int(config.get("out_joints", 17)),
        heads=int(fixed.get("attention_heads", 8)),
    )


def run_pstmo_vector(vector: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Build, load strictly, and compute ``out``, ``out_vte`` and (given ``x_flip``) their flip averages.

    Returns:
        ``out`` ``(B, 3, 1, J, 1)``, ``out_vte`` ``(B, 3, T, J, 1)``, and ``out_flip_tta`` /
        ``out_vte_flip_tta`` of the same shapes when the vector has them (H36M-17 joints), on ``inputs['x_flip']``
        when the vector stores it, else on the project's own mirror of ``x`` (:func:`~model.pstmo.flip_official_layout`).
    """
    model = PSTMO(pstmo_config_from_vector(vector["config"]))
    load_pstmo_state_dict(model, vector["state_dict"], "conformance vector (P-STMO)")
    model.eval()
    x = vector["inputs"]["x"].to(torch.float32)
    out, out_vte = model(x)
    results = {"out": out, "out_vte": out_vte}
    if {"out_flip_tta", "out_vte_flip_tta"} & set(vector["outputs"]):
        stored_flip = vector["inputs"].get("x_flip")
        x_flip = flip_official_layout(x) if stored_flip is None else stored_flip.to(torch.float32)
        tta, tta_vte = model.forward_flip_tta(x, x_flip)
        results |= {"out_flip_tta": tta, "out_vte_flip_tta": tta_vte}
    return results
