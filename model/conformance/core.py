"""Recognising a vector's model, comparing outputs with the project's tolerance."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import torch

from model.checkpoints.common import CheckpointError, read_checkpoint

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
    raise ConformanceError(f"unrecognised conformance config with keys {sorted(map(str, config))}")


@dataclass(frozen=True)
class OutputCheck:
    """One output's comparison, element by element against each element's tolerance.

    Attributes:
        max_abs_err: the largest absolute error over the output (inf: shape mismatch or missing output).
        tolerance: the tolerance of the element with that largest error.
        shape_ok: the output exists and has the reference's shape.
        worst_ratio: the largest ``error / tolerance`` over the elements; the output passes when it is <= 1.
    """

    name: str
    max_abs_err: float
    tolerance: float
    shape_ok: bool
    worst_ratio: float

    @property
    def passed(self) -> bool:
        return self.shape_ok and self.worst_ratio <= 1.0


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
    """Compare one output element by element.

    Each element's tolerance is ``tolerance`` when given, else 1e-5 absolute, or 1e-4 where the reference
    ``|value| > 1`` (the conformance README's rule, per value). An element equal to its reference (including the
    same infinity, or NaN where the reference is NaN) has error 0; a NaN against a number has error inf.
    """
    if tuple(got.shape) != tuple(want.shape):
        tol = tolerance if tolerance is not None else ABS_TOL
        return OutputCheck(name, float("inf"), tol, shape_ok=False, worst_ratio=float("inf"))
    want_f = want.detach().to(device="cpu", dtype=torch.float64)
    got_f = got.detach().to(device="cpu", dtype=torch.float64)
    if tolerance is not None:
        tol_t = torch.full_like(want_f, tolerance)
    else:
        tol_t = torch.full_like(want_f, ABS_TOL).masked_fill_(want_f.abs() > 1, LARGE_TOL)
    same = (got_f == want_f) | (got_f.isnan() & want_f.isnan())
    err = torch.where(same, 0.0, (got_f - want_f).abs().nan_to_num(nan=float("inf")))
    if err.numel() == 0:
        return OutputCheck(name, 0.0, tolerance if tolerance is not None else ABS_TOL, True, 0.0)
    at_max = int(err.argmax())
    ratio = err / tol_t
    return OutputCheck(
        name,
        float(err.reshape(-1)[at_max]),
        float(tol_t.reshape(-1)[at_max]),
        shape_ok=True,
        worst_ratio=float(ratio.max()),
    )


_TENSOR_SECTIONS: Final = ("state_dict", "inputs", "outputs")


def load_vector(path: str | Path) -> dict[str, Any]:
    """Read a vector file safely (``weights_only``) and check its layout.

    Raises:
        ConformanceError: unreadable file; not a dict with ``state_dict``, ``inputs``, ``outputs`` (dicts of
            named tensors; ``outputs`` not empty) and ``config`` (a dict).
    """
    try:
        vec = read_checkpoint(path)
    except CheckpointError as e:
        raise ConformanceError(str(e)) from e
    if not isinstance(vec, dict) or not {"state_dict", "inputs", "outputs", "config"} <= set(vec):
        raise ConformanceError(f"{path}: not a conformance vector (needs state_dict, inputs, outputs, config)")
    if not isinstance(vec["config"], dict):
        raise ConformanceError(f"{path}: 'config' must be a dict, got {type(vec['config']).__name__}")
    for section in _TENSOR_SECTIONS:
        entries = vec[section]
        if not isinstance(entries, dict):
            raise ConformanceError(f"{path}: '{section}' must be a dict of tensors, got {type(entries).__name__}")
        bad = [repr(k) for k, v in entries.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
        if bad:
            raise ConformanceError(f"{path}: '{section}' entries that are not named tensors: {', '.join(bad[:10])}")
    if not vec["outputs"]:
        raise ConformanceError(f"{path}: 'outputs' is empty: there is nothing to reproduce")
    return vec


def _run(runner: Callable[[dict[str, Any]], dict[str, torch.Tensor]], vec: dict[str, Any], path: str | Path) -> Any:
    """The runner's outputs; a vector that lacks what its kind needs is a :class:`ConformanceError` naming it."""
    try:
        with torch.inference_mode():
            return runner(vec)
    except KeyError as e:
        raise ConformanceError(f"{path}: the vector lacks {e.args[0]!r} (config, inputs or state_dict)") from e
    except (TypeError, AttributeError, IndexError) as e:
        raise ConformanceError(f"{path}: malformed vector ({type(e).__name__}: {e})") from e


def check_file(path: str | Path) -> tuple[VectorKind, list[OutputCheck]]:
    """Run one vector file through the project's model and compare every stored output.

    Raises:
        ConformanceError: the file is not a vector of a known kind, or lacks or mistypes what its kind needs.
        ValueError, RuntimeError: the project's model refuses the vector's config or inputs (named in the message).
    """
    from model.conformance.registry import RUNNERS

    vec = load_vector(path)
    kind = detect_kind(vec["config"])
    runner = RUNNERS.get(kind)
    if runner is None:
        raise ConformanceError(f"{path}: no runner for model kind {kind}")
    got = _run(runner, vec, path)
    checks = []
    for name, want in vec["outputs"].items():
        if isinstance(got.get(name), torch.Tensor):
            checks.append(compare(name, got[name], want, KIND_TOLERANCES.get(kind, {}).get(name)))
        else:
            checks.append(OutputCheck(name, float("inf"), ABS_TOL, shape_ok=False, worst_ratio=float("inf")))
    return kind, checks
