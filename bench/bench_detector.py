"""Crops per second of the top-down detector stage (crop → HRNet → decode) at several batch sizes.

    .venv/bin/python bench/bench_detector.py                       # HRNet-W32, CPU, batches 1 8 32
    .venv/bin/python bench/bench_detector.py --device cuda --half  # GPU, float16

Random weights (speed does not depend on them); one 720p frame with ``batch`` person boxes per call, so
each call is ONE network forward of ``batch`` crops (twice the crops with ``--flip-test``). Prints one
line per batch size: median seconds per call and crops per second.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from model.hrnet import HRNET_PRESETS, PoseHRNet
from service.engine.detector import TopDownDetector


def bench(arch: str, device: torch.device, half: bool, batches: list[int], repeats: int, flip_test: bool) -> None:
    torch.manual_seed(0)
    detector = TopDownDetector(PoseHRNet(HRNET_PRESETS[arch]), device, half=half)
    detector.warmup()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(720, 1280, 3), dtype=np.uint8)
    for batch in batches:
        x1 = rng.uniform(0, 1000, batch)
        y1 = rng.uniform(0, 300, batch)
        boxes = np.stack([x1, y1, x1 + 200, y1 + 400], axis=1).astype(np.float32)
        scores = np.ones(batch, dtype=np.float32)
        detector.detect([image], [boxes], [scores], flip_test=flip_test)  # warm this shape
        times = []
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            detector.detect([image], [boxes], [scores], flip_test=flip_test)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        print(
            f"{arch} {device.type}{' fp16' if half else ''} flip_test={flip_test} batch={batch:3d}: "
            f"{med * 1000:8.1f} ms/call  {batch / med:8.1f} crops/s",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="w32", choices=sorted(HRNET_PRESETS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--half", action="store_true", help="float16 (CUDA only)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    parser.add_argument("--flip-test", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bench(args.arch, torch.device(args.device), args.half, args.batches, args.repeats, args.flip_test)


if __name__ == "__main__":
    main()
