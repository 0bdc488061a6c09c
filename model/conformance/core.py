"""Recognising a vector's model, comparing outputs with the project's tolerance."""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import torch

ABS_TOL = 1e-5
LARGE_TOL = 1e-4  # where |reference value| > 1


class ConformanceError(ValueError):
    """The file is not a conformance vector this command understands."""


class VectorKind(StrEnum):
    """Model families a vector may pin down."""

    PSTMO = "pstmo"
    CAPF_LIFTER = "capf_lifter"
    HRNET_BACKBONE = "hrnet_backbone"
    CAPF_FULL = "capf_full"
    MMPOSE_TOPDOWN = "mmpose_topdown"


def detect_kind(config: dict[str, Any]) -> VectorKind:
    """Recognise the model family from a vector's ``config`` dict."""
    if "mmpose_model" in config:
        return VectorKind.MMPOSE_TOPDOWN
    if "stride_num" in config and "frames" in config:
        return VectorKind.PSTMO
    if "poseformer" in config and "model" not in config:
        return VectorKind.CAPF_LIFTER
    if isinstance(config.get("model"), dict) and "poseformer" in config["model"] and "backbone" in config["model"]:
        return VectorKind.CAPF_FULL
    if all(k in config for k in ("STAGE2", "STAGE3", "STAGE4")):
        return VectorKind.HRNET_BACKBONE
    raise ConformanceError(f"unrecognised conformance config with keys {sorted(config)}")


@dataclass(frozen=True)
class OutputCheck:
    """One output's comparison: max absolute error against its tolerance."""

    name: str
    max_abs_err: float
    tolerance: float
    shape_ok: bool

    @property
    def passed(self) -> bool:
        return self.shape_ok and self.max_abs_err <= self.tolerance


# Per-kind output tolerances that replace the default rule (values from the conformance README).
KIND_TOLERANCES: dict[VectorKind, dict[str, float]] = {
    VectorKind.MMPOSE_TOPDOWN: {
        "keypoints": 1e-2,  # pixels
        "keypoints_flip_test": 1e-2,
        "keypoint_scores": 1e-4,
        "keypoint_scores_flip_test": 1e-4,
    },
}


def compare(name: str, got: torch.Tensor, want: torch.Tensor, tolerance: float | None = None) -> OutputCheck:
    """Compare one output: ``tolerance`` if given, else 1e-5 absolute, 1e-4 where any |want| > 1."""
    want_f = want.detach().to(torch.float64)
    tol = tolerance if tolerance is not None else LARGE_TOL if bool((want_f.abs() > 1).any()) else ABS_TOL
    if tuple(got.shape) != tuple(want.shape):
        return OutputCheck(name, float("inf"), tol, shape_ok=False)
    err = float((got.detach().to(torch.float64) - want_f).abs().max()) if want.numel() else 0.0
    return OutputCheck(name, err, tol, shape_ok=True)


def load_vector(path: str | Path) -> dict[str, Any]:
    """Read a vector file safely and check its top-level layout."""
    try:
        vec = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise ConformanceError(f"{path}: no such file") from e
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, zipfile.BadZipFile) as e:
        raise ConformanceError(f"{path}: not a readable torch file ({type(e).__name__}: {e})") from e
    if not isinstance(vec, dict) or not {"state_dict", "inputs", "outputs", "config"} <= set(vec):
        raise ConformanceError(f"{path}: not a conformance vector (needs state_dict, inputs, outputs, config)")
    return vec


def check_file(path: str | Path) -> tuple[VectorKind, list[OutputCheck]]:
    """Run one vector file through the project's model and compare every stored output."""
    from model.conformance.registry import RUNNERS

    vec = load_vector(path)
    kind = detect_kind(vec["config"])
    runner = RUNNERS.get(kind)
    if runner is None:
        raise ConformanceError(f"{path}: no runner for model kind {kind}")
    with torch.inference_mode():
        got = runner(vec)
    checks = []
    for name, want in vec["outputs"].items():
        if name not in got:
            checks.append(OutputCheck(name, float("inf"), ABS_TOL, shape_ok=False))
        else:
            checks.append(compare(name, got[name], want, KIND_TOLERANCES.get(kind, {}).get(name)))
    return kind, checks
