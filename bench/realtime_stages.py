"""Where the realtime profile's video time goes, per stage, and what its settings buy: one interleaved run.

    python -m bench.realtime_stages [--frames 60] [--rounds 3] [--sizes t,s] [--rtmpose-threads 1,2]
                                    [--detect-every 10] [--lifter-backend auto] [--lift-delay-ms 0]
                                    [--no-person-detector]

- **Bare stages** (20 calls each after a warm-up, median wall ms and mean CPU ms of this process per call):
  the person detector YOLOX-tiny (letterbox + ONNX forward + NMS, one thread as the engine runs it), RTMPose's
  crop + normalise (``crop_inputs``), its ONNX forward (per size and thread count), the SimCC decode,
  P-STMO-81's lift of 1 and of 4 windows per forward (1 torch thread, and 1 ONNX Runtime thread: the profile's
  ``backend = "auto"``), the pose-guide's box and its JSON round trip.
- **Through the engine** (:class:`InProcessEngine`, the ``realtime`` profile with its person detector in the
  loop as ``bench.peer_mediapipe`` runs it — ``bench/peer_ours.py`` says how random weights are made to track a
  person): a causal clip of ``--frames`` 640x480 frames per variant (RTMPose size x ``detector.rtmpose_threads``
  x ``detector.detect_every`` x the lifter's ``backend``), every variant once per round in the same order;
  frames/s, the process's CPU ms per frame, person-detector runs per 100 frames, each stage's busy ms per frame
  from ``pose3d_stage_duration_seconds`` (stages run on different threads and overlap, so they may add up to more
  than the wall time), and the CPU ms per frame of each group of threads (:func:`thread_cpu`: the event loop,
  the lifter's thread, the CPU pool running RTMPose and the person detector, camera placement, and the rest —
  libraries' own pools), which says what besides the networks costs CPU.

Load averages are printed with every round: other work on the machine shows there.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import torch

from bench.peer_mediapipe import test_inputs
from bench.peer_ours import profile_settings
from model.joints import H36M_FLIP_PERM
from model.pstmo import PSTMO, PSTMO_PRESETS
from model.rtmpose_net import export, gflops
from model.topdown import box_to_center_scale
from service.config import CommonSettings, StageBatchSettings
from service.engine.inprocess import InProcessEngine, build_engine
from service.engine.person_boxes import OnnxPersonDetector
from service.engine.pose_guide import Guide, attach_guide, pose_to_box, read_guide
from service.engine.pstmo_onnx import OnnxPSTMO, export_pstmo_onnx
from service.engine.random_onnx import random_onnx
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


def bare_stages(onnx: dict[str, Path], threads: list[int], image: np.ndarray, work: Path) -> None:
    yolox = OnnxPersonDetector(random_onnx("the person detector", "yolox-tiny-person", work), score_threshold=0.0)
    print(f"  YOLOX-tiny person detector (416x416, 1 thread): {timed(lambda: yolox.detect(image, 1))}")
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
    onnx_net = OnnxPSTMO(export_pstmo_onnx(net), threads=1)
    for batch in (1, 4):
        kp = torch.randn(batch, 81, 17, 2) * 0.3
        with torch.inference_mode():
            cost = timed(lambda kp=kp: net.lift(kp))  # type: ignore[misc]
        print(f"  P-STMO-81 lift, {batch} window(s) per forward, 1 torch thread: {cost}")
        cost = timed(lambda kp=kp: onnx_net.lift(kp.numpy(), False, H36M_FLIP_PERM, 0))  # type: ignore[misc]
        print(f"  P-STMO-81 lift, {batch} window(s) per forward, 1 onnxruntime thread: {cost}")
    kps = np.random.rand(1, 17, 2).astype(np.float32) * 400
    tracker = b'{"tracks":[]}'

    def guide() -> None:
        read_guide(attach_guide(tracker, Guide(1, pose_to_box(kps), np.ones(1, np.float32))))

    print(f"  pose-guide box + JSON round trip: {timed(guide)}")


def settings(args: argparse.Namespace, variant: Variant) -> CommonSettings:
    """The realtime profile as ``bench.peer_mediapipe`` runs it, with ``variant``'s RTMPose size and threads,
    person-detector interval and lifter backend."""
    child = argparse.Namespace(work=args.work, rtmpose_size=variant.size, person_detector=args.person_detector,
                               threads=1, device="cpu", half=False)  # fmt: skip
    s: CommonSettings = profile_settings("realtime", child)
    det = s.detector.model_copy(update={"rtmpose_threads": variant.threads, "detect_every": variant.every})
    models = {k: m.model_copy(update={"backend": variant.lifter}) for k, m in s.models.items()}
    lift = StageBatchSettings(max_delay_ms=variant.lift_delay_ms)
    engine = s.engine.model_copy(update={"lift": lift})
    return s.model_copy(update={"detector": det, "models": models, "engine": engine})


@dataclass(frozen=True)
class Variant:
    """One engine of the run: RTMPose size and threads, detector interval, lifter backend, the lift stage's
    batching delay (``engine.lift.max_delay_ms``: windows of a clip wait for one another, several per forward)."""

    size: str
    threads: int
    every: int
    lifter: str
    lift_delay_ms: float

    def __str__(self) -> str:
        delay = f", lift delay {self.lift_delay_ms:g} ms" if self.lift_delay_ms else ""
        return f"RTMPose-{self.size}, {self.threads} thread(s), detect every {self.every}, lifter {self.lifter}{delay}"


def stage_seconds(engine: InProcessEngine) -> dict[str, float]:
    get = engine.metrics.registry.get_sample_value
    return {s: get("pose3d_stage_duration_seconds_sum", {"stage": s}) or 0.0 for s in STAGES}


def lift_batches(engine: InProcessEngine) -> tuple[float, float]:
    """Windows lifted and lift forwards so far."""
    get = engine.metrics.registry.get_sample_value
    return get("pose3d_batch_size_sum", {"stage": "lift"}) or 0.0, get(
        "pose3d_batch_size_count", {"stage": "lift"}
    ) or 0.0


THREAD_GROUPS: Final = ("MainThread", "pose3d-infer", "pose3d-decode", "pose3d-world")
"""The threads whose CPU is reported apart (by name prefix: the event loop, the torch / lifter thread, the CPU pool
that runs RTMPose and the person detector, camera placement); every other thread (a library's own pool:
OpenCV's, ONNX Runtime's, torch's) is ``other``."""


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of this process's threads so far, by :data:`THREAD_GROUPS` (Linux ``/proc``;
    empty elsewhere)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for task in Path("/proc/self/task").glob("*"):
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended
            continue
        name = names.get(int(task.name), "")
        group = next((g for g in THREAD_GROUPS if name.startswith(g)), "other")
        out[group] = out.get(group, 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


async def clip_run(engine: InProcessEngine, frames: list[Frame], people: int | None) -> dict[str, float]:
    before, runs, lifts = stage_seconds(engine), engine.metrics.person_detector_run_count(), lift_batches(engine)
    t0, c0, threads = time.perf_counter(), time.process_time(), thread_cpu()
    await collect(engine, Work("clip", frames, EstimateOptions(mode=WindowMode.CAUSAL, max_people=people)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = len(frames)
    threads = {g: v - threads.get(g, 0.0) for g, v in thread_cpu().items()}
    after, runs = stage_seconds(engine), engine.metrics.person_detector_run_count() - runs
    windows, forwards = (a - b for a, b in zip(lift_batches(engine), lifts, strict=True))
    out = {"frames/s": n / wall, "cpu ms/frame": cpu * 1000 / n, "detector runs/100": runs * 100 / n}
    out["windows/lift"] = windows / max(forwards, 1.0)
    out.update({f"{s} ms/frame": (after[s] - before[s]) * 1000 / n for s in STAGES})
    out.update({f"{g} cpu ms/frame": threads.get(g, 0.0) * 1000 / n for g in (*THREAD_GROUPS, "other")})
    return out


async def engine_variants(args: argparse.Namespace, clip: np.ndarray) -> None:
    frames: list[Frame] = [ImageFrame(f, frame_index=i, timestamp_s=i / 30) for i, f in enumerate(clip)]
    people = 1 if args.person_detector else None
    engines = {}
    for axes in itertools.product(
        args.sizes, args.rtmpose_threads, args.detect_every, args.lifter_backend, args.lift_delay_ms
    ):
        variant = Variant(*axes)
        engines[str(variant)] = eng = await build_engine(settings(args, variant), Metrics())
        await clip_run(eng, frames[:5], people)
    cells: dict[str, list[dict[str, float]]] = {k: [] for k in engines}
    for r in range(args.rounds):
        load = os.getloadavg()[0]
        for name, eng in engines.items():
            cells[name].append(await clip_run(eng, frames, people))
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
    parser.add_argument("--detect-every", default="10", help="detector.detect_every values, comma-separated")
    parser.add_argument("--lifter-backend", default="auto", help="models.pstmo-81.backend values (torch, onnx, auto)")
    parser.add_argument("--lift-delay-ms", default="0", help="engine.lift.max_delay_ms values (windows per forward)")
    parser.add_argument("--person-detector", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    args.lifter_backend = args.lifter_backend.split(",")
    args.lift_delay_ms = [float(d) for d in args.lift_delay_ms.split(",")]
    args.rtmpose_threads = [int(t) for t in args.rtmpose_threads.split(",")]
    args.detect_every = [int(k) for k in args.detect_every.split(",")]
    args.sizes = args.sizes.split(",")
    args.work = Path(tempfile.mkdtemp(prefix="rt-stages-"))
    onnx = {s: export(s, args.work / f"rtmpose-{s}.onnx") for s in args.sizes}
    _, clip = test_inputs(args.frames)
    print(
        f"realtime profile ({profile_path('realtime').name}), random weights; person detector "
        f"{'YOLOX-tiny (as bench.peer_mediapipe)' if args.person_detector else 'none (whole frame)'}; torch "
        f"{torch.__version__}, 1 torch / onnxruntime thread (P-STMO-81); input 640x480; clip {args.frames} frames, causal; "
        f"{args.rounds} rounds; cpus {os.cpu_count()}; load averages {os.getloadavg()}\nbare stages:"
    )
    bare_stages(onnx, args.rtmpose_threads, clip[0], args.work)
    asyncio.run(engine_variants(args, clip))
    print(f"load averages at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
