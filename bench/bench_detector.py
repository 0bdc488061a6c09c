"""Crops per second and CPU per crop of the top-down detector stage (crop → HRNet → decode) by batch size.

    .venv/bin/python bench/bench_detector.py                       # HRNet-W32, CPU, batches 1 8 32
    .venv/bin/python bench/bench_detector.py --device cuda --half  # GPU, float16
    .venv/bin/python bench/bench_detector.py --threads 2 --batches 2 4 8 16 32 --backends torch onnx --rounds 2

Random weights (speed does not depend on them; denormals flushed, as trained weights give none); one 720p
frame with ``batch`` person boxes per call, so each call is ONE network forward of ``batch`` crops (twice the
crops with ``--flip-test``). ``--backends``: ``torch`` (as served: BatchNorms folded, channels-last) and/or
``onnx`` (ONNX Runtime, the CPU's ``auto`` backend), each round running every backend and batch in turn. Prints
one line per (round, backend, batch): median ms per call, crops per second, and this process's CPU ms per crop
(every thread; what ``CPU_DETECT_BATCH`` in ``service/config.py`` was chosen from).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import numpy as np
import torch

from model.hrnet import HRNET_PRESETS, PoseHRNet
from service.engine.detector import TopDownDetector
from service.engine.hrnet_onnx import OnnxHRNet


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def detector_of(arch: str, device: torch.device, half: bool, backend: str, threads: int) -> TopDownDetector:
    """The served detector stage over random weights: ``torch`` as the engine folds it, or ``onnx``."""
    torch.manual_seed(0)
    net = PoseHRNet(HRNET_PRESETS[arch]).eval()
    detector = TopDownDetector(net, device, half=half)
    if backend == "onnx":
        detector.use_network(OnnxHRNet.from_torch(net, None, threads))
    detector.warmup()
    return detector


def time_batch(detector: TopDownDetector, batch: int, repeats: int, flip_test: bool) -> tuple[float, float]:
    """Median seconds per call of ``batch`` crops, and CPU seconds per crop over the timed calls."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(720, 1280, 3), dtype=np.uint8)
    x1, y1 = rng.uniform(0, 1000, batch), rng.uniform(0, 300, batch)
    boxes = np.stack([x1, y1, x1 + 200, y1 + 400], axis=1).astype(np.float32)
    scores = np.ones(batch, dtype=np.float32)
    detector.detect([image], [boxes], [scores], flip_test=flip_test)  # warm this shape
    times, cpu0 = [], _cpu_s()
    for _ in range(repeats):
        if detector.device.type == "cuda":
            torch.cuda.synchronize(detector.device)
        t0 = time.perf_counter()
        detector.detect([image], [boxes], [scores], flip_test=flip_test)
        if detector.device.type == "cuda":
            torch.cuda.synchronize(detector.device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), (_cpu_s() - cpu0) / (repeats * batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="w32", choices=sorted(HRNET_PRESETS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--half", action="store_true", help="float16 (CUDA only)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--backends", nargs="+", default=["torch"], choices=["torch", "onnx"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch / ONNX Runtime CPU threads (0 = default)")
    parser.add_argument("--flip-test", action="store_true")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    detectors = {b: detector_of(args.arch, device, args.half, b, args.threads) for b in args.backends}
    print(f"configuration: {args.arch}, {device.type}{' fp16' if args.half else ''}, flip_test={args.flip_test}, "
          f"threads {torch.get_num_threads()}, torch {torch.__version__}, 720p frame, {args.repeats} calls per batch")  # fmt: skip
    for rnd in range(args.rounds):
        for backend, detector in detectors.items():
            for batch in args.batches:
                med, cpu = time_batch(detector, batch, args.repeats, args.flip_test)
                print(
                    f"round {rnd} {backend:5s} batch={batch:3d}: {med * 1000:8.1f} ms/call "
                    f"{batch / med:7.1f} crops/s {cpu * 1000:7.1f} CPU ms/crop",
                    flush=True,
                )


if __name__ == "__main__":
    main()
