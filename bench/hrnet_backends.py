"""HRNet-W32 under torch, ONNX Runtime and OpenVINO on this CPU, equal outputs checked, one interleaved run.

    python -m bench.hrnet_backends [--batches 2 16] [--rounds 5] [--threads 2] [--bf16]

One random-weight HRNet-W32 (BatchNorm statistics perturbed as in the network suite) at 256x192, three runtimes
on the same weights and inputs, each timed once per round in the same order (median over rounds):

- ``torch``: what the detector serves with ``backend = "torch"``: BatchNorms folded, ReLU and adds fused, NHWC;
- ``onnxruntime``: ``backend = "onnx"`` (:class:`service.engine.hrnet_onnx.OnnxHRNet`: the cached export,
  CPU execution provider, intra-op threads that sleep when idle);
- ``openvino f32``: the same ONNX graph compiled by OpenVINO's CPU plugin with ``INFERENCE_PRECISION_HINT=f32``
  (its default on a CPU with AVX512-BF16, as this one, is bfloat16: not equal outputs), ``LATENCY`` hint,
  ``--threads`` inference threads, dynamic batch as served;
- ``--bf16``: also OpenVINO at its default precision (bfloat16), for the figure only.

The suite's perturbed random weights give denormal activations, which torch's kernels pay for dearly on this CPU
(one loaded run, batch 2: 1 260 ms CPU per crop without, 490 ms with ``--flush-denormal``); the engine's own
HRNet did not show it (``bench.peer_mediapipe``: about 400 ms CPU per flip-tested frame on both backends).
Batch 2 is one image with the flip test (plain + mirrored crop), 16 a clip's detector batch. Per runtime: wall ms
and CPU ms (this process, all threads) per crop, and the largest heatmap difference from torch's. Needs the
``openvino`` extra (``pip install -e '.[openvino]'``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.networks import hrnet_case
from model.fastpath import set_fast_path
from model.hrnet import PoseHRNet
from service.engine.hrnet_onnx import OUTPUTS, OnnxHRNet, export_hrnet_onnx

Runner = Callable[[np.ndarray], np.ndarray]
"""``(B, 3, 256, 192) float32`` crops → ``(B, 17, 64, 48)`` heatmaps."""


def openvino_runner(model: bytes, threads: int, precision: str) -> Runner:
    """The ONNX graph compiled by OpenVINO's CPU plugin (``precision`` ``f32`` or ``bf16``)."""
    import openvino as ov

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hrnet.onnx"
        path.write_bytes(model)
        config = {
            "INFERENCE_PRECISION_HINT": precision,
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
        }
        compiled = ov.Core().compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()

    def run(crops: np.ndarray) -> np.ndarray:
        request.infer({0: crops})
        return np.asarray(request.get_output_tensor(0).data).copy()

    return run


def runners(threads: int, bf16: bool) -> dict[str, Runner]:
    case = hrnet_case("w32", "HRNet-W32")
    fast = case.fast_model
    set_fast_path(fast, True)

    def torch_run(crops: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(crops).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            heatmaps = fast(x)[0]
        return np.asarray(heatmaps.contiguous().numpy())

    assert isinstance(case.model, PoseHRNet)
    model = export_hrnet_onnx(case.model)
    onnx = OnnxHRNet(model, threads)
    out: dict[str, Runner] = {
        "torch": torch_run,
        "onnxruntime": lambda crops: onnx.session.run([OUTPUTS[0]], {"crops": crops})[0],
        "openvino f32": openvino_runner(model, threads, "f32"),
    }
    if bf16:
        out["openvino bf16"] = openvino_runner(model, threads, "bf16")
    return out


def timed(run: Runner, crops: np.ndarray, seconds: float) -> tuple[float, float]:
    """Wall and CPU ms per crop over at least ``seconds`` (one warm-up call first)."""
    run(crops)
    calls, t0, c0 = 0, time.perf_counter(), time.process_time()
    while (wall := time.perf_counter() - t0) < seconds or calls < 2:
        run(crops)
        calls += 1
    n = calls * len(crops)
    return wall * 1000 / n, (time.process_time() - c0) * 1000 / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", type=int, nargs="+", default=[2, 16])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=2.0, help="minimum seconds per timing")
    p.add_argument("--threads", type=int, default=2, help="torch, ONNX Runtime and OpenVINO threads")
    p.add_argument("--bf16", action="store_true", help="also OpenVINO at bfloat16 (not equal outputs)")
    p.add_argument("--flush-denormal", action="store_true", help="torch.set_flush_denormal(True) (see the doc)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(args.flush_denormal)
    import onnxruntime
    import openvino

    print(
        f"HRNet-W32 256x192, random weights; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
        f"openvino {openvino.__version__}; {args.threads} threads each; batches {args.batches}; {args.rounds} "
        f"rounds x >= {args.seconds} s; torch flush_denormal {args.flush_denormal}; cpus {os.cpu_count()}; load averages {os.getloadavg()}"
    )
    run = runners(args.threads, args.bf16)
    rng = np.random.default_rng(0)
    cells: dict[tuple[int, str], list[tuple[float, float]]] = {}
    for batch in args.batches:
        crops = rng.standard_normal((batch, 3, 256, 192), dtype=np.float32)
        want = run["torch"](crops)
        diffs = {name: float(np.abs(r(crops) - want).max()) for name, r in run.items()}
        for r in range(args.rounds):
            for name, fn in run.items():
                cells.setdefault((batch, name), []).append(timed(fn, crops, args.seconds))
            print(f"batch {batch} round {r + 1}: load {os.getloadavg()[0]:.2f}; " + ", ".join(
                f"{name} {cells[(batch, name)][-1][0]:.1f} ms/crop" for name in run))  # fmt: skip
        report(batch, run, cells, diffs)
    print(f"load averages at the end: {os.getloadavg()}")


def report(batch: int, run: dict[str, Any], cells: dict[tuple[int, str], list[tuple[float, float]]],
           diffs: dict[str, float]) -> None:  # fmt: skip
    print(f"\n| batch {batch} | wall ms/crop | CPU ms/crop | crops/s | vs torch | max heatmap diff vs torch |")
    print("|---|---|---|---|---|---|")
    base = statistics.median(w for w, _ in cells[(batch, "torch")])
    for name in run:
        walls = [w for w, _ in cells[(batch, name)]]
        wall, cpu = statistics.median(walls), statistics.median(c for _, c in cells[(batch, name)])
        print(f"| {name} | {wall:.1f} ({min(walls):.1f}–{max(walls):.1f}) | {cpu:.1f} | {1000 / wall:.2f} | "
              f"{base / wall:.2f}x | {diffs[name]:.2e} |")  # fmt: skip
    print()


if __name__ == "__main__":
    main()
