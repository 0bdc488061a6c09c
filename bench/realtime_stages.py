"""Where the realtime profile's video time goes, per stage, and what its settings buy: one interleaved run.

    python -m bench.realtime_stages [--frames 60] [--rounds 3] [--sizes t,s] [--rtmpose-threads 1,2]

- **Bare stages** (20 calls each after a warm-up, median wall ms and mean CPU ms of this process per call):
  RTMPose's crop + normalise (``crop_inputs``), its ONNX forward (per size and thread count), the SimCC decode,
  P-STMO-81's lift of 1 and of 4 windows per forward (1 torch thread, as the profile), the pose-guide's box and
  its JSON round trip.
- **Through the engine** (:class:`InProcessEngine`, the ``realtime`` profile, random weights, no person
  detector: the whole frame on detection frames): a causal clip of ``--frames`` 640x480 frames per variant
  (RTMPose size x ``detector.rtmpose_threads``), every variant once per round in the same order; frames/s,
  the process's CPU ms per frame, and each stage's busy ms per frame from ``pose3d_stage_duration_seconds``
  (detect and lift run on different threads and overlap, so they may add up to more than the wall time).

RTMPose's ONNX is its real architecture with random weights (``model/rtmpose_net.py``), as in
``bench/peer_mediapipe.py``. Load averages are printed with every round: other work on the machine shows there.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.peer_mediapipe import test_inputs
from model.pstmo import PSTMO, PSTMO_PRESETS
from model.rtmpose_net import export, gflops
from model.topdown import box_to_center_scale
from service.config import CommonSettings, load_settings_file
from service.engine.inprocess import InProcessEngine, build_engine
from service.engine.pose_guide import Guide, attach_guide, pose_to_box, read_guide
from service.engine.rtmpose import INPUT_SIZE, RTMPoseDetector, crop_inputs, decode_simcc
from service.engine.types import (
    EstimateOptions,
    Frame,
    ImageFrame,
    WindowMode,
    Work,
)
from service.engine.work import collect
from service.metrics import Metrics
from service.profiles import profile_path

STAGES = ("decode", "boxes", "detect", "buffer", "lift")


def timed(fn: Callable[[], object], n: int = 20) -> str:
    """``fn``'s median wall ms and mean CPU ms (this process, all threads) per call, after one warm-up call."""
    fn()
    walls = []
    c0 = time.process_time()
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
    cpu = (time.process_time() - c0) / n
    return f"{statistics.median(walls) * 1000:.2f} ms wall, {cpu * 1000:.2f} ms CPU"


def bare_stages(onnx: dict[str, Path], threads: list[int], image: np.ndarray) -> None:
    box = np.array([[200.0, 40.0, 440.0, 470.0]], np.float32)
    geometry = box_to_center_scale(box, input_size=INPUT_SIZE)
    crop = crop_inputs(image, geometry)
    print(f"  crop + normalise, one 256x192 crop: {timed(lambda: crop_inputs(image, geometry))}")
    for size, path in onnx.items():
        for t in threads:
            det = RTMPoseDetector(path, intra_op_threads=t)
            cost = timed(lambda det=det: det.forward(crop))  # type: ignore[misc]
            print(f"  RTMPose-{size} forward ({gflops(size):.2f} GFLOP), {t} onnxruntime thread(s): {cost}")
    x, y = np.random.rand(1, 17, 384).astype(np.float32), np.random.rand(1, 17, 512).astype(np.float32)
    print(f"  SimCC decode: {timed(lambda: decode_simcc(x, y))}")
    torch.set_num_threads(1)
    net = PSTMO(PSTMO_PRESETS["pstmo-81"]).eval()
    for batch in (1, 4):
        kp = torch.randn(batch, 81, 17, 2) * 0.3
        with torch.inference_mode():
            cost = timed(lambda kp=kp: net.lift(kp))  # type: ignore[misc]
        print(f"  P-STMO-81 lift, {batch} window(s) per forward, 1 torch thread: {cost}")
    kps = np.random.rand(1, 17, 2).astype(np.float32) * 400
    tracker = b'{"tracks":[]}'

    def guide() -> None:
        read_guide(attach_guide(tracker, Guide(1, pose_to_box(kps), np.ones(1, np.float32))))

    print(f"  pose-guide box + JSON round trip: {timed(guide)}")


def settings(onnx: Path, rtmpose_threads: int) -> CommonSettings:
    """The realtime profile with a random-weight RTMPose ONNX, no person detector, random P-STMO weights."""
    data: dict[str, Any] = load_settings_file(profile_path("realtime"))
    data["detector"].update(rtmpose_onnx=onnx, person_detector_onnx=None, rtmpose_threads=rtmpose_threads)
    for spec in data["models"].values():
        spec.pop("checkpoint", None)
    data["engine"] = {**data["engine"], "request_timeout_s": 3600.0}
    return CommonSettings(**data, allow_random_weights=True)


def stage_seconds(engine: InProcessEngine) -> dict[str, float]:
    get = engine.metrics.registry.get_sample_value
    return {s: get("pose3d_stage_duration_seconds_sum", {"stage": s}) or 0.0 for s in STAGES}


async def clip_run(engine: InProcessEngine, frames: list[Frame]) -> dict[str, float]:
    before = stage_seconds(engine)
    t0, c0 = time.perf_counter(), time.process_time()
    await collect(engine, Work("clip", frames, EstimateOptions(mode=WindowMode.CAUSAL)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = len(frames)
    after = stage_seconds(engine)
    out = {"frames/s": n / wall, "cpu ms/frame": cpu * 1000 / n}
    out.update({f"{s} ms/frame": (after[s] - before[s]) * 1000 / n for s in STAGES})
    return out


async def engine_variants(args: argparse.Namespace, onnx: dict[str, Path], clip: np.ndarray) -> None:
    frames: list[Frame] = [ImageFrame(f, frame_index=i, timestamp_s=i / 30) for i, f in enumerate(clip)]
    engines = {}
    for size, path in onnx.items():
        for t in args.rtmpose_threads:
            engines[f"RTMPose-{size}, {t} thread(s)"] = eng = await build_engine(settings(path, t), Metrics())
            await collect(eng, Work("warm", frames[:5], EstimateOptions(mode=WindowMode.CAUSAL)))
    cells: dict[str, list[dict[str, float]]] = {k: [] for k in engines}
    for r in range(args.rounds):
        load = os.getloadavg()[0]
        for name, eng in engines.items():
            cells[name].append(await clip_run(eng, frames))
        print(f"round {r + 1}: load {load:.2f}; " + ", ".join(f"{k} {v[-1]['frames/s']:.2f}" for k, v in cells.items()))
    for eng in engines.values():
        await eng.aclose()
    keys = list(next(iter(cells.values()))[0])
    print("\n| variant | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys))
    for name, runs in cells.items():
        row = [statistics.median(r[k] for r in runs) for k in keys]
        fps = [r["frames/s"] for r in runs]
        first = f"{row[0]:.2f} ({min(fps):.2f}–{max(fps):.2f})"
        print(f"| {name} | {first} | " + " | ".join(f"{v:.1f}" for v in row[1:]) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="t,s", help="RTMPose sizes, comma-separated (t, s, m)")
    parser.add_argument("--rtmpose-threads", default="1,2", help="detector.rtmpose_threads values, comma-separated")
    args = parser.parse_args()
    args.rtmpose_threads = [int(t) for t in args.rtmpose_threads.split(",")]
    work = Path(tempfile.mkdtemp(prefix="rt-stages-"))
    onnx = {s: export(s, work / f"rtmpose-{s}.onnx") for s in args.sizes.split(",")}
    _, clip = test_inputs(args.frames)
    print(
        f"realtime profile ({profile_path('realtime').name}), random weights; torch {torch.__version__}, "
        f"1 torch thread (P-STMO-81); input 640x480; clip {args.frames} frames, causal; {args.rounds} rounds; "
        f"cpus {os.cpu_count()}; load averages {os.getloadavg()}\nbare stages:"
    )
    bare_stages(onnx, args.rtmpose_threads, clip[0])
    asyncio.run(engine_variants(args, onnx, clip))
    print(f"load averages at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
