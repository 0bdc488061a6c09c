"""The typed mapping from vector kind to runner.

A runner takes the loaded vector dict, builds the project's model from ``vector['config']``,
loads ``vector['state_dict']`` through the project's key map (strictly), runs ``vector['inputs']``
and returns ``{output_name: tensor}`` for every name in ``vector['outputs']``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from model.conformance.core import VectorKind
from model.conformance.run_capf import run_capf_full, run_capf_lifter
from model.conformance.run_hrnet import run_hrnet_backbone
from model.conformance.run_mmpose import run_mmpose_topdown
from model.conformance.run_pstmo import run_pstmo_vector

Runner = Callable[[dict[str, Any]], dict[str, torch.Tensor]]

RUNNERS: dict[VectorKind, Runner] = {
    VectorKind.CAPF_LIFTER: run_capf_lifter,
    VectorKind.CAPF_FULL: run_capf_full,
    VectorKind.HRNET_BACKBONE: run_hrnet_backbone,
    VectorKind.MMPOSE_TOPDOWN: run_mmpose_topdown,
    VectorKind.PSTMO: run_pstmo_vector,
}
