"""What the ONNX detector backend costs at start-up: a cold start (export + session) vs a cached one (read + session).

``python -m bench.onnx_startup [--arch w32] [--threads 2] [--rounds 2]`` builds the HRNet detector the way the
loader does (random weights, seeded) with ``detector.backend = "onnx"`` against a fresh cache directory, then again
against the now-filled one, ``--rounds`` times each, and prints seconds per step with the configuration and the
load average beside every figure. The torch backend's start (fold + channels-last) is timed in the same run.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import onnxruntime as ort
import torch

from model.checkpoints.hrnet import load_detector
from model.hrnet import HRNET_PRESETS, PoseHRNet
from service.engine.detector import TopDownDetector
from service.engine.hrnet_onnx import hrnet_cache_key, use_onnx_backend
from service.engine.onnx_cache import ExportCache


def _timed(label: str, step: Callable[[], object]) -> float:
    load = os.getloadavg()[0]
    start = time.perf_counter()
    origin = step()
    seconds = time.perf_counter() - start
    print(f"  {label:<28} {seconds:7.2f} s   (load average {load:.2f} → {os.getloadavg()[0]:.2f}) {origin or ''}")
    return seconds


def run(arch: str, threads: int, rounds: int) -> None:
    """Time the torch start, a cold ONNX start and a cached ONNX start of HRNet ``arch``, ``rounds`` times each."""
    torch.set_num_threads(threads)
    print(
        f"HRNet {arch}, random weights, {threads} threads, torch {torch.__version__}, onnxruntime {ort.__version__}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    )
    net: PoseHRNet = load_detector(HRNET_PRESETS[arch], None, None, seed=zlib.crc32(b"detector"))
    cpu = torch.device("cpu")
    _timed("cache key (weights sha256)", lambda: hrnet_cache_key(net)["weights_sha256"][:12])
    for r in range(rounds):
        print(f"round {r + 1}:")
        _timed("torch backend (fold, NHWC)", lambda: TopDownDetector(net, cpu, keep_features=True) and None)
        with tempfile.TemporaryDirectory(prefix="pose3d-onnx-bench-") as tmp:
            cache = ExportCache(Path(tmp))

            _timed("onnx, empty cache (export)", lambda c=cache: _onnx_start(net, c, threads))  # type: ignore[misc]
            _timed("onnx, cached", lambda c=cache: _onnx_start(net, c, threads))  # type: ignore[misc]


def _onnx_start(net: PoseHRNet, cache: ExportCache, threads: int) -> str:
    """The loader's ONNX start: a detector, then its graph from ``cache`` (exported on a miss)."""
    detector = TopDownDetector(
        net, torch.device("cpu"), keep_features=True, channels_last=False, fold_batch_norms=False
    )
    return use_onnx_backend(detector, net, cache, threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--arch", default="w32", choices=sorted(HRNET_PRESETS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    run(args.arch, args.threads, args.rounds)


if __name__ == "__main__":
    main()
