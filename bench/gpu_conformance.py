"""Conformance vectors on an accelerator: ``python -m bench.gpu_conformance [--device cuda] [--half]``.

fp32: every output of every shipped vector (``tests/data/conformance/*.pt``) within the vector's own tolerance
(:func:`model.conformance.core.compare`), computed on ``--device``. ``--half`` also runs each vector under
``torch.autocast`` (float16 on CUDA, bfloat16 on CPU) and requires 3D outputs within 1 mm and 2D keypoints within
0.05 px of the published values (feature maps and scores are reported, not judged). Exits 0 only if all hold.

The lifter and backbone vectors run with ``torch.set_default_device`` and the vector loaded onto the device;
the mmpose vector (crops made with OpenCV on the host) runs its network on the device through a wrapper.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.conformance.core import KIND_TOLERANCES, VectorKind, compare, detect_kind
from model.conformance.registry import RUNNERS
from model.conformance.run_mmpose import run_mmpose_topdown

VECTORS = Path(__file__).resolve().parents[1] / "tests" / "data" / "conformance"
HALF_LIMIT_M = 1e-3
HALF_LIMIT_PX = 0.05


def half_limit(name: str) -> float | None:
    """The half-precision limit of an output: 1 mm for 3D poses, 0.05 px for 2D keypoints, else not judged."""
    if name.startswith("keypoints"):
        return HALF_LIMIT_PX
    if name.startswith(("out", "pose3d")):
        return HALF_LIMIT_M
    return None


class OnDevice(nn.Module):
    """Runs a heatmap network on ``device`` (under autocast when ``dtype`` is set); outputs float32 on the host."""

    def __init__(self, net: nn.Module, device: torch.device, dtype: torch.dtype | None) -> None:
        super().__init__()
        self.net = net.to(device)
        self.device = device
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        with autocast(self.device, self.dtype):
            heat, feats = self.net(x.to(self.device))
        return heat.float().cpu(), [f.float().cpu() for f in feats]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


@contextlib.contextmanager
def default_device(device: torch.device) -> Iterator[None]:
    previous = torch.get_default_device()
    torch.set_default_device(device)
    try:
        yield
    finally:
        torch.set_default_device(previous)


def run_vector(path: Path, device: torch.device, dtype: torch.dtype | None) -> tuple[VectorKind, dict[str, Any]]:
    """The outputs of one vector computed on ``device`` (autocast to ``dtype`` if given), and the vector."""
    host = torch.load(path, map_location="cpu", weights_only=True)
    kind = detect_kind(host["config"])
    with torch.inference_mode():
        if kind is VectorKind.MMPOSE_TOPDOWN:
            got = run_mmpose_topdown(host, prepare=lambda net: OnDevice(net, device, dtype))
        else:
            vec = torch.load(path, map_location=device, weights_only=True)
            with default_device(device), autocast(device, dtype):
                got = RUNNERS[kind](vec)
    return kind, {"got": got, "want": host["outputs"]}


def check(path: Path, device: torch.device, half: torch.dtype | None) -> bool:
    """Print one line per output; True when every judged output holds."""
    ok = True
    kind, r = run_vector(path, device, None)
    for name, want in r["want"].items():
        c = compare(name, r["got"][name], want, KIND_TOLERANCES.get(kind, {}).get(name))
        print(
            f"{path.name} [{kind}] fp32 {name}: max_abs_err={c.max_abs_err:.3e} tol={c.tolerance:.0e} "
            f"{'ok' if c.passed else 'FAIL'}"
        )
        ok = ok and c.passed
    if half is None:
        return ok
    _, r = run_vector(path, device, half)
    for name, want in r["want"].items():
        err = (r["got"][name].detach().float().cpu() - want.float()).abs().max().item()
        limit = half_limit(name)
        verdict = "reported" if limit is None else ("ok" if err <= limit else "FAIL")
        print(f"{path.name} [{kind}] {half} {name}: max_abs_err={err:.3e} limit={limit} {verdict}")
        ok = ok and (limit is None or err <= limit)
    return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gpu_conformance", description=__doc__)
    p.add_argument("--device", default="cuda")
    p.add_argument("--half", action="store_true", help="also autocast (float16 on CUDA, bfloat16 on CPU)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    half = (torch.float16 if device.type == "cuda" else torch.bfloat16) if args.half else None
    ok = True
    for path in sorted(VECTORS.glob("*.pt")):
        try:
            ok = check(path, device, half) and ok
        except Exception as e:  # report every vector, then fail
            print(f"{path.name}: ERROR {type(e).__name__}: {e}")
            ok = False
    print(f"conformance on {device}: " + ("all within limits" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
