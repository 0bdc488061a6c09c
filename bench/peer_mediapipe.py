"""Side by side with MediaPipe Pose on this CPU: images/s and video frames/s, both our profiles, one interleaved run.

    python -m bench.peer_mediapipe [--rounds 5] [--images 10] [--frames 100] [--default-frames 30] [--threads 2]

- **MediaPipe** 0.10.21 (the last wheel that bundles its models; ``model_complexity=1``, BlazePose full — the
  only one that works offline) runs in its own virtual environment (``--mp-venv``, built here on first use with
  ``pip install mediapipe==0.10.21 'numpy<2'``) as a child process that times itself; images with
  ``static_image_mode=True`` (JPEG decode included), the clip with ``static_image_mode=False`` (its tracking).
- **Ours**, in this process through :class:`InProcessEngine` (no HTTP), random weights:
  ``default`` profile = HRNet-W32 + CA-PF (images) / P-STMO-243 centred (clip), flip test on, as the papers
  (``--threads`` torch threads, 2 as in issue 16's baseline);
  ``realtime`` profile (``service/profiles/realtime.toml``) = RTMPose-t + P-STMO-81 causal, no flip test,
  pose-guided boxes, its own threads (1 torch, ``detector.rtmpose_threads`` onnxruntime). No RTMPose weights can
  be downloaded here, so its ONNX is **the profile's RTMPose size (``--rtmpose-size`` for another) in its real
  architecture with random weights** (``model/rtmpose_net.py``: RTMPose-t 3.34 M parameters and 0.71 GFLOP
  per crop, the publisher's 0.36 G multiply-adds; -s 5.47 M, 1.35 GFLOP), exported on the fly. Neither profile has a person detector configured (whole frame
  on detection frames), MediaPipe runs its own.
- Input: a photograph of a person (matplotlib's ``grace_hopper.jpg`` sample) padded to 640x480; the clip is it
  sliding 1 px per frame. The default profile's clip uses the first ``--default-frames`` frames (it is slow);
  rates are per frame so they compare.
- Each round measures every cell once, in the same order; the table gives the median over rounds and the
  spread (min–max). Load averages are printed before and after: other work on the machine shows there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from service.config import CommonSettings, EngineSettings, load_settings_file
from service.engine.inprocess import InProcessEngine, build_engine
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

MP_VERSION = "0.10.21"
MP_WORKER = r"""
import json, sys, time
import cv2, numpy as np
import mediapipe as mp
pose_mod = mp.solutions.pose
for line in sys.stdin:
    cmd = json.loads(line)
    if cmd["op"] == "image":
        data = open(cmd["path"], "rb").read()
        found = 0
        with pose_mod.Pose(static_image_mode=True, model_complexity=1) as pose:
            pose.process(np.zeros((64, 64, 3), np.uint8))
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(cmd["n"]):
                rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                found += pose.process(rgb).pose_landmarks is not None
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(json.dumps({"seconds": dt, "cpu": cpu, "count": cmd["n"], "found": found}), flush=True)
    elif cmd["op"] == "video":
        frames = np.load(cmd["path"])
        found = 0
        with pose_mod.Pose(static_image_mode=False, model_complexity=1) as pose:
            t0, c0 = time.perf_counter(), time.process_time()
            for f in frames:
                found += pose.process(f).pose_landmarks is not None
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(json.dumps({"seconds": dt, "cpu": cpu, "count": len(frames), "found": found}), flush=True)
    else:
        print(json.dumps({"version": mp.__version__}), flush=True)
"""


def ensure_mediapipe(venv: Path) -> Path:
    """The venv's python with MediaPipe installed (built on first use)."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import mediapipe"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"mediapipe=={MP_VERSION}", "numpy<2"], check=True)
    return python


def test_inputs(frames: int) -> tuple[bytes, np.ndarray]:
    """A 640x480 JPEG of a person, and a clip ``(frames, 480, 640, 3) uint8`` RGB of it sliding right."""
    import matplotlib

    photo = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    rgb = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    scale = 480 / rgb.shape[0]
    rgb = cv2.resize(rgb, (int(rgb.shape[1] * scale), 480))
    canvas = np.full((480, 640, 3), 90, np.uint8)
    x0 = (640 - rgb.shape[1]) // 2
    canvas[:, x0 : x0 + rgb.shape[1]] = rgb
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    clip = np.stack([np.roll(canvas, i - frames // 2, axis=1) for i in range(frames)])
    return jpeg.tobytes(), clip


def profile_settings(name: str, threads: int, rtmpose_onnx: Path) -> CommonSettings:
    """Our profile ``name`` with random weights (and the random RTMPose-s ONNX for ``realtime``)."""
    engine = EngineSettings(torch_threads=threads, request_timeout_s=3600.0)  # a loaded machine is slow
    if name == "default":
        return CommonSettings(allow_random_weights=True, engine=engine)
    data: dict[str, Any] = load_settings_file(profile_path("realtime"))
    data["detector"].update(rtmpose_onnx=rtmpose_onnx, person_detector_onnx=None)
    for spec in data["models"].values():
        spec.pop("checkpoint", None)
    data["engine"] = {**data.get("engine", {}), "request_timeout_s": 3600.0}  # keeps the profile's torch_threads
    return CommonSettings(**data, allow_random_weights=True)


async def ours_images(engine: InProcessEngine, jpeg: bytes, n: int) -> tuple[float, float]:
    """Images/s and this process's CPU ms per image."""
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        await collect(engine, Work(f"img{i}", [ImageFrame(jpeg)]))
    return n / (time.perf_counter() - t0), (time.process_time() - c0) * 1000 / n


async def ours_clip(engine: InProcessEngine, clip: np.ndarray, mode: WindowMode) -> tuple[float, float]:
    """Video frames/s and this process's CPU ms per frame."""
    frames: list[Frame] = [ImageFrame(f, frame_index=i, timestamp_s=i / 30) for i, f in enumerate(clip)]
    t0, c0 = time.perf_counter(), time.process_time()
    result = await collect(engine, Work("clip", frames, EstimateOptions(mode=mode)))
    assert len(result.frames) == len(frames)
    return len(frames) / (time.perf_counter() - t0), (time.process_time() - c0) * 1000 / len(frames)


def mp_call(proc: subprocess.Popen[str], cmd: dict[str, Any]) -> dict[str, Any]:
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.write(json.dumps(cmd) + "\n")
    proc.stdin.flush()
    answer: dict[str, Any] = json.loads(proc.stdout.readline())
    return answer


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):7.2f} ({min(values):.2f}–{max(values):.2f})"


async def run(args: argparse.Namespace, proc: subprocess.Popen[str], work: Path) -> None:
    from model.rtmpose_net import export, gflops

    jpeg, clip = test_inputs(args.frames)  # the JPEG is read back from work/ by each round
    (work / "image.jpg").write_bytes(jpeg)
    np.save(work / "clip_rgb.npy", clip)
    onnx = export(args.rtmpose_size, work / f"rtmpose-{args.rtmpose_size}-random.onnx")
    mp_version = mp_call(proc, {"op": "version"})["version"]
    engines = {
        p: await build_engine(profile_settings(p, args.threads, onnx), Metrics()) for p in ("default", "realtime")
    }
    rts = engines["realtime"].settings
    print(
        f"MediaPipe {mp_version} (model_complexity=1) in {args.mp_venv}; ours: random weights, torch "
        f"{torch.__version__}, default profile {args.threads} torch threads, realtime profile "
        f"{rts.engine.torch_threads} torch thread(s) + {rts.detector.rtmpose_threads or rts.engine.torch_threads} "
        "onnxruntime thread(s); "
        f"RTMPose-{args.rtmpose_size} architecture ONNX "
        f"({gflops(args.rtmpose_size):.2f} GFLOP/crop); input 640x480; {args.images} images, clip {args.frames} "
        f"frames ({args.default_frames} for the default profile); {args.rounds} rounds; cpus {os.cpu_count()}"
    )
    cells: dict[str, list[float]] = {}
    for r in range(args.rounds):
        before = os.getloadavg()
        found = await one_round(args, proc, engines, work, clip, cells)
        runs = engines["realtime"].metrics.person_detector_run_count()
        print(
            f"round {r + 1}: load {before[0]:.2f} → {os.getloadavg()[0]:.2f}; "
            + ", ".join(f"{k} {v[-1]:.2f}" for k, v in cells.items() if not k.endswith("cpu"))
            + f"; MediaPipe found a pose on {found}/{args.frames} frames; realtime detector runs so far {runs}"
        )
    for eng in engines.values():
        await eng.aclose()
    report(cells)


async def one_round(
    args: argparse.Namespace,
    proc: subprocess.Popen[str],
    engines: dict[str, InProcessEngine],
    work: Path,
    clip: np.ndarray,
    cells: dict[str, list[float]],
) -> int:
    """Every cell once, MediaPipe first; appends rates and CPU ms per item to ``cells``; MediaPipe's found count."""
    jpeg = (work / "image.jpg").read_bytes()
    got = mp_call(proc, {"op": "image", "path": str(work / "image.jpg"), "n": args.images * 3})
    measured = {"mediapipe images": (got["count"] / got["seconds"], got["cpu"] * 1000 / got["count"])}
    got = mp_call(proc, {"op": "video", "path": str(work / "clip_rgb.npy")})
    measured["mediapipe video"] = (got["count"] / got["seconds"], got["cpu"] * 1000 / got["count"])
    for p, eng in engines.items():
        n = args.images if p == "default" else args.images * 3
        measured[f"{p} images"] = await ours_images(eng, jpeg, n)
        sub = clip[: args.default_frames] if p == "default" else clip
        mode = WindowMode.CENTRED if p == "default" else WindowMode.CAUSAL
        measured[f"{p} video"] = await ours_clip(eng, sub, mode)
    for key, (rate, cpu_ms) in measured.items():
        cells.setdefault(key, []).append(rate)
        cells.setdefault(f"{key} cpu", []).append(cpu_ms)
    found: int = got["found"]
    return found


def report(cells: dict[str, list[float]]) -> None:
    """The table (median and min–max over rounds), the ratios of medians and the median of per-round ratios."""
    print("\n| | MediaPipe | ours, default profile | ours, realtime profile |\n|---|---|---|---|")
    names = {"images": "images/s (decode included)", "video": "video frames/s"}
    for what in ("images", "video"):
        for suffix, label in (("", names[what]), (" cpu", f"CPU ms per {'image' if what == 'images' else 'frame'}")):
            row = [summary(cells[f"{k} {what}{suffix}"]) for k in ("mediapipe", "default", "realtime")]
            print(f"| {label} | " + " | ".join(row) + " |")
    for what in ("images", "video"):
        ours, mp = cells[f"realtime {what}"], cells[f"mediapipe {what}"]
        paired = statistics.median(a / b for a, b in zip(ours, mp, strict=True))
        print(
            f"{what}: realtime / MediaPipe = {statistics.median(ours) / statistics.median(mp):.2f} "
            f"(median of per-round ratios {paired:.2f}), "
            f"realtime / default = {statistics.median(ours) / statistics.median(cells[f'default {what}']):.2f}"
        )
    print(f"load averages at the end: {os.getloadavg()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=10, help="images per round for the default profile (x3 others)")
    parser.add_argument("--frames", type=int, default=100, help="clip frames (MediaPipe and the realtime profile)")
    parser.add_argument("--default-frames", type=int, default=30, help="clip frames for the default profile")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads of the default profile")
    parser.add_argument("--rtmpose-size", choices=["t", "s", "m"], default=None, help="default: the profile's")
    parser.add_argument("--mp-venv", default="/tmp/mpvenv")
    args = parser.parse_args()
    if args.rtmpose_size is None:  # the profile's rtmpose_onnx is a catalogue name "rtmpose-<size>"
        args.rtmpose_size = str(load_settings_file(profile_path("realtime"))["detector"]["rtmpose_onnx"])[-1]
    python = ensure_mediapipe(Path(args.mp_venv))
    proc = subprocess.Popen([str(python), "-c", MP_WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        asyncio.run(run(args, proc, Path(tempfile.mkdtemp(prefix="peer-mp-"))))
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait()


if __name__ == "__main__":
    main()
