"""P-STMO through ONNX Runtime on the CPU: the lifter's optional second backend (``models.<name>.backend``).

One graph, exported once with the published op sequence (the fast path's fused kernels do not trace) and cached
like the HRNet export (:class:`~service.engine.onnx_cache.ExportCache`): ``keypoints (N, T, J, 2)`` normalised
screen coordinates → ``pose (N, J, 3)``, the centre frame's pose, root not zeroed. Outputs equal the torch
network's to float32 rounding (docs/benchmarks.md "Lifter backend").
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from model.fastpath import set_fast_path
from model.pstmo import PSTMO
from model.skeleton import flip_pose
from service.engine.onnx_cache import Cached, ExportCache, cpu_session, export_key, export_onnx
from service.engine.types import FloatArray

INPUT = "keypoints"
OUTPUT = "pose"


class CentrePose(torch.nn.Module):
    """``(N, T, J, 2)`` → the centre frame's ``(N, J, 3)`` pose of ``model`` (root not zeroed)."""

    def __init__(self, model: PSTMO) -> None:
        super().__init__()
        self.model = model

    def forward(self, keypoints: torch.Tensor) -> torch.Tensor:
        out, _ = self.model(keypoints.permute(0, 3, 1, 2).unsqueeze(-1))
        centre: torch.Tensor = out[:, :, 0, :, 0].transpose(1, 2)
        return centre


def export_pstmo_onnx(model: PSTMO) -> bytes:
    """The ONNX graph of :class:`CentrePose` over a float32 CPU copy of ``model`` (reference op sequence)."""
    ref = set_fast_path(copy.deepcopy(model).float().cpu().eval(), False)
    return export_onnx(CentrePose(ref), torch.zeros(2, model.cfg.frames, model.cfg.n_joints, 2), INPUT, (OUTPUT,))


def mirror(a: FloatArray, perm: Sequence[int]) -> FloatArray:
    """``a`` (``(..., J, C)``, x first) mirrored by :func:`model.skeleton.flip_pose` (left/right joints swapped by
    ``perm``, x negated); a new array."""
    out: FloatArray = flip_pose(torch.from_numpy(a), list(perm)).numpy()
    return out


class OnnxPSTMO:
    """The graph ``model`` of :func:`export_pstmo_onnx` run by ONNX Runtime on ``threads`` CPU threads (0 = ONNX
    Runtime's default) that sleep when idle."""

    def __init__(self, model: bytes, threads: int) -> None:
        self.session: Any = cpu_session(model, threads)

    @classmethod
    def from_cache(cls, model: PSTMO, cache: ExportCache, name: str, threads: int) -> Cached[OnnxPSTMO]:
        """The cached graph of ``model`` (exported and cached on a miss or a corrupt entry), as a session."""
        key = export_key("PSTMO", model, f"N,{model.cfg.frames},{model.cfg.n_joints},2 float32")
        return cache.load_or_export(name, key, lambda: export_pstmo_onnx(model), lambda g: cls(g, threads))

    def centre_pose(self, keypoints: FloatArray) -> FloatArray:
        """``(N, T, J, 2)`` float32 → ``(N, J, 3)`` float32, the network's units, root not zeroed."""
        pose: FloatArray = self.session.run([OUTPUT], {INPUT: np.ascontiguousarray(keypoints, np.float32)})[0]
        return pose

    def lift(self, keypoints: FloatArray, flip_test: bool, flip_perm: Sequence[int], root: int) -> FloatArray:
        """:meth:`model.pstmo.PSTMO.lift` on ONNX Runtime: ``(N, T, J, 2)`` → ``(N, J, 3)`` with joint ``root``
        set to 0; the flip test's plain and mirrored windows go through one forward."""
        if not flip_test:
            pose = self.centre_pose(keypoints)
        else:
            both = self.centre_pose(np.concatenate([keypoints, mirror(keypoints, flip_perm)]))
            n = len(keypoints)
            pose = (both[:n] + mirror(both[n:], flip_perm)) / np.float32(2)
        pose[:, root] = 0.0
        return pose
