"""Side by side with MediaPipe Pose on this CPU: images/s, video frames/s and CPU ms per item, one interleaved run.

    python -m bench.peer_mediapipe [--baseline TREE] [--rounds 5] [--images 8] [--frames 100] [--default-frames 20]

- **MediaPipe** 0.10.21 (the last wheel that bundles its models; ``model_complexity=1``, BlazePose full — the
  only one that works offline) runs in its own virtual environment (``--mp-venv``, built here on first use with
  ``pip install mediapipe==0.10.21 'numpy<2'``) as a child process that times itself; images with
  ``static_image_mode=True`` (JPEG decode included), the clip with ``static_image_mode=False`` (its tracking:
  its person detector runs when the track is lost).
- **Ours**, in a child process per source tree and profile (``bench/peer_ours.py``: :class:`InProcessEngine`,
  no HTTP, random weights; its module doc lists every setting that differs from the profile files; one profile
  per process, because torch's thread count is the process's):
  ``default`` profile (the tree's ``service/profiles/default.toml``: HRNet-W32 + CA-PF for images, P-STMO-243
  centred for the clip, flip test on, as the papers; ``--threads`` torch threads, 2 as in issue 16);
  ``realtime`` profile (RTMPose-t + P-STMO-81 causal, no flip test, pose-guided boxes, **its person detector
  YOLOX-tiny in the loop** on detection frames — ``--no-person-detector`` for the whole frame instead); the
  networks are the real architectures with random weights (RTMPose-t 0.71 GFLOP per crop, YOLOX-tiny at 416x416).
  The realtime rows report the person detector's runs per 100 frames.
- ``--baseline TREE`` (e.g. ``git worktree add ../base faaed5b``, the build before the ONNX Runtime default)
  also runs **that tree's** ``--profiles``, each in its own child (same interpreter and packages, ``service``
  from ``TREE``), interleaved with this tree's in every round: the table gets ``default (baseline)`` and
  ``realtime (baseline)`` columns and the ratios this / baseline (``--baseline-profiles``: which of them; default
  only ``default``, since faaed5b's realtime profile predates its person detector).
- Input: a photograph of a person (matplotlib's ``grace_hopper.jpg`` sample) padded to 640x480; the clip is it
  sliding 1 px per frame. The default profile's clip uses the first ``--default-frames`` frames (it is slow);
  rates are per frame so they compare. CPU ms are each process's own (all its threads).
- Duration at the defaults: about 7 minutes at load average 6 on 2 cores with the baseline (10 images and 30
  default-profile frames per round then), so about 5 with these defaults; a quiet machine takes a fraction.
- Each round measures every cell once, in the same order; the table gives the median over rounds and the
  spread (min–max). Load averages are printed with every round: other work on the machine shows there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

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
    bgr = cv2.imread(str(photo))
    assert bgr is not None, f"cannot read {photo}"
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    scale = 480 / rgb.shape[0]
    rgb = cv2.resize(rgb, (int(rgb.shape[1] * scale), 480))
    canvas = np.full((480, 640, 3), 90, np.uint8)
    x0 = (640 - rgb.shape[1]) // 2
    canvas[:, x0 : x0 + rgb.shape[1]] = rgb
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    clip = np.stack([np.roll(canvas, i - frames // 2, axis=1) for i in range(frames)])
    return jpeg.tobytes(), clip


def mp_call(proc: subprocess.Popen[str], cmd: dict[str, Any]) -> dict[str, Any]:
    """One command to the MediaPipe child, its JSON answer."""
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.write(json.dumps(cmd) + "\n")
    proc.stdin.flush()
    answer: dict[str, Any] = json.loads(proc.stdout.readline())
    return answer


@dataclass
class Child:
    """A ``bench/peer_ours.py`` process: our ``profiles`` built from ``tree``, labelled ``name`` in the table."""

    name: str
    tree: Path
    profiles: list[str]
    proc: subprocess.Popen[str]
    log: Path

    def call(self, cmd: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send ``cmd`` (None: only read), return the next ``@peer`` answer; fails with the child's stderr."""
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        if cmd is not None:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith(PREFIX):
                answer: dict[str, Any] = json.loads(line[len(PREFIX) :])
                return answer
        self.proc.wait()
        tail = self.log.read_text()[-4000:]
        raise SystemExit(f"{self.name} ({self.tree}) exited with {self.proc.returncode}:\n{tail}")


PREFIX = "@peer "


def start_child(name: str, tree: Path, profiles: list[str], args: argparse.Namespace, work: Path) -> Child:
    """Start ``bench/peer_ours.py`` on ``tree`` and wait until its engines are built (printing their start)."""
    script = Path(__file__).resolve().with_name("peer_ours.py")
    argv = [str(script), "--work", str(work), "--threads", str(args.threads), "--rtmpose-size", args.rtmpose_size]
    argv += ["--profiles", *profiles, "--person-detector" if args.person_detector else "--no-person-detector"]
    argv += ["--device", args.device] + ["--half"] * args.half
    run = f"import runpy, sys; sys.argv = {argv!r}; runpy.run_path({str(script)!r}, run_name='__main__')"
    env = {**os.environ, "PYTHONPATH": str(tree)}  # `service` from `tree`, nothing from the caller's folder
    log = work / f"{name}-{'-'.join(profiles)}.log"
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-c", run], env=env, cwd=work, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=err, text=True)  # fmt: skip
    child = Child(name, tree, profiles, proc, log)
    ready = child.call()
    for profile, info in ready["ready"].items():
        runtime = "HRNet " + info["detail"].get("detector_backend", "torch") if profile == "default" else "RTMPose"
        lifters = "; ".join(f"{k[6:-8]} {v}" for k, v in info["detail"].items() if k.endswith(":backend"))
        print(
            f"  {name} {profile}: started in {info['start_s']:.1f} s; 2D detector: {runtime}; lifter: {lifters or 'torch'}"
        )
    return child


def one_round(args: argparse.Namespace, mp: subprocess.Popen[str] | None, children: list[Child], work: Path,
              cells: dict[str, list[float]]) -> int:  # fmt: skip
    """Every cell once, MediaPipe first; appends rates, CPU ms per item and detector runs per 100 frames to
    ``cells``; returns on how many clip frames MediaPipe found a pose (-1: not run)."""
    measured, found = {}, -1
    if mp is not None:
        got = mp_call(mp, {"op": "image", "path": str(work / "image.jpg"), "n": args.images * 3})
        measured["mediapipe images"] = (got["count"] / got["seconds"], got["cpu"] * 1000 / got["count"])
        got = mp_call(mp, {"op": "video", "path": str(work / "clip_rgb.npy")})
        measured["mediapipe video"] = (got["count"] / got["seconds"], got["cpu"] * 1000 / got["count"])
        found = got["found"]
    for child in children:
        for p in child.profiles:
            col = column(child.name, p)
            n = args.images if p == "default" else args.images * 3
            a = child.call({"op": "images", "profile": p, "n": n})
            measured[f"{col} images"] = (a["rate"], a["cpu_ms"])
            frames = args.default_frames if p == "default" else args.frames
            a = child.call({"op": "video", "profile": p, "frames": frames, "mode": MODE[p]})
            measured[f"{col} video"] = (a["rate"], a["cpu_ms"])
            cells.setdefault(f"{col} detector runs", []).append(a["detector_runs"] * 100 / frames)
    for key, (rate, cpu_ms) in measured.items():
        cells.setdefault(key, []).append(rate)
        cells.setdefault(f"{key} cpu", []).append(cpu_ms)
    return int(found)


MODE = {"default": "centred", "realtime": "causal"}


def column(child: str, profile: str) -> str:
    return f"{profile} ({child})" if profile == "default" or child == "baseline" else profile


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def ratio(cells: dict[str, list[float]], num: str, den: str) -> str:
    """Ratio of medians, and the median of per-round ratios (a busy spell hits both cells of a round)."""
    a, b = cells[num], cells[den]
    paired = statistics.median(x / y for x, y in zip(a, b, strict=True))
    return f"{statistics.median(a) / statistics.median(b):.2f} (median of per-round ratios {paired:.2f})"


def report(cells: dict[str, list[float]], columns: list[str]) -> None:
    """The table (median and min–max over rounds) and the ratios the issue's targets are stated in."""
    print("\n| | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns))
    rows = [("images", "", "images/s (decode included)"), ("images", " cpu", "CPU ms per image"),
            ("video", "", "video frames/s"), ("video", " cpu", "CPU ms per video frame")]  # fmt: skip
    for what, suffix, label in rows:
        print(f"| {label} | " + " | ".join(summary(cells[f"{c} {what}{suffix}"]) for c in columns) + " |")
    runs = [summary(cells[f"{c} detector runs"]) if f"{c} detector runs" in cells else "—" for c in columns]
    print("| person detector runs per 100 video frames | " + " | ".join(runs) + " |")
    if "default (baseline) video" in cells:
        for what in ("video", "images"):
            print(f"default profile {what}/s, this / baseline: "
                  + ratio(cells, f"default (this) {what}", f"default (baseline) {what}"))  # fmt: skip
    if "realtime (baseline) video" in cells:
        print(
            "realtime video frames/s, this / baseline: " + ratio(cells, "realtime video", "realtime (baseline) video")
        )
        print("realtime CPU ms per video frame, this / baseline: "
              + ratio(cells, "realtime video cpu", "realtime (baseline) video cpu"))  # fmt: skip
    if "realtime video" in cells and "mediapipe video" in cells:
        print("realtime video frames/s / MediaPipe's: " + ratio(cells, "realtime video", "mediapipe video")
              + " (target >= 1.5)")  # fmt: skip
        print("realtime CPU ms per video frame / MediaPipe's: "
              + ratio(cells, "realtime video cpu", "mediapipe video cpu") + " (target <= 1)")  # fmt: skip
        print("realtime images/s / MediaPipe's: " + ratio(cells, "realtime images", "mediapipe images"))


def run(args: argparse.Namespace, mp: subprocess.Popen[str] | None, work: Path) -> None:
    jpeg, clip = test_inputs(args.frames)
    (work / "image.jpg").write_bytes(jpeg)
    np.save(work / "clip_rgb.npy", clip)
    here = Path(__file__).resolve().parents[1]
    print(
        f"{mp_header(mp, args.mp_venv)}; ours: {args.device}{' half' if args.half else ''}, random weights, python {platform.python_version()}, default profile {args.threads} torch threads, realtime "
        f"profile RTMPose-{args.rtmpose_size} + P-STMO-81, person detector "
        f"{'YOLOX-tiny (thresholds 0, max_people 1)' if args.person_detector else 'none (whole frame)'}; input "
        f"640x480; {args.images} images per round ({args.images * 3} for MediaPipe and realtime), clip {args.frames} "
        f"frames ({args.default_frames} for the default profile); {args.rounds} rounds; cpus {os.cpu_count()}; "
        f"load averages {fmt_load()}"
    )
    children = []
    if args.baseline is not None:
        print(f"  baseline: {args.baseline} ({git_head(args.baseline)})")
        base_profiles = [p for p in args.profiles if p in args.baseline_profiles]
        children += [start_child("baseline", args.baseline.resolve(), [p], args, work) for p in base_profiles]
    print(f"  this: {here} ({git_head(here)})")
    children += [start_child("this", here, [p], args, work) for p in args.profiles]
    cells: dict[str, list[float]] = {}
    try:
        for r in range(args.rounds):
            load = fmt_load()
            found = one_round(args, mp, children, work, cells)
            print(
                f"round {r + 1}: load {load} → {fmt_load()}; "
                + ", ".join(f"{k} {v[-1]:.2f}" for k, v in cells.items() if not k.endswith(("cpu", "runs")))
                + (f"; MediaPipe found a pose on {found}/{args.frames} frames" if found >= 0 else "")
            )
    finally:
        for child in children:
            assert child.proc.stdin is not None
            child.proc.stdin.close()
            child.proc.wait()
    columns = ["mediapipe"] * (mp is not None) + [column(c.name, p) for c in children for p in c.profiles]
    report(cells, columns)
    print(f"load averages at the end: {fmt_load()}")
    if args.json is not None:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "cells": cells}))


def mp_header(mp: subprocess.Popen[str] | None, venv: Path) -> str:
    if mp is None:
        return "MediaPipe not run"
    return f"MediaPipe {mp_call(mp, {'op': 'version'})['version']} (model_complexity=1) in {venv}"


def fmt_load() -> str:
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


def git_head(tree: Path) -> str:
    out = subprocess.run(["git", "-C", str(tree), "log", "-1", "--format=%h %s"], capture_output=True, text=True)
    return out.stdout.strip()[:70] or "not a git tree"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, default=None, help="an older tree: its profiles beside ours")
    parser.add_argument("--baseline-profiles", nargs="+", choices=["default", "realtime"], default=["default"],
                        help="the baseline tree's profiles to run (default: default; a tree before the realtime "
                        "profile's person detector cannot run realtime)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=8, help="images per round for the default profile (x3 others)")
    parser.add_argument("--frames", type=int, default=100, help="clip frames (MediaPipe and the realtime profile)")
    parser.add_argument("--default-frames", type=int, default=20, help="clip frames for the default profile")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads of the default profile")
    parser.add_argument("--profiles", nargs="+", choices=["default", "realtime"], default=["default", "realtime"])
    parser.add_argument("--rtmpose-size", choices=["t", "s", "m"], default="t")
    parser.add_argument("--person-detector", action=argparse.BooleanOptionalAction, default=True,
                        help="realtime profile: its YOLOX-tiny in the loop (default) or the whole frame")  # fmt: skip
    parser.add_argument("--mediapipe", action=argparse.BooleanOptionalAction, default=True,
                        help="run MediaPipe (its venv needs PyPI on first use)")  # fmt: skip
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="our engines' device")
    parser.add_argument("--half", action="store_true", help="our engines in half precision (CUDA)")
    parser.add_argument("--mp-venv", type=Path, default=Path(tempfile.gettempdir()) / "mpvenv")
    parser.add_argument("--json", type=Path, default=None, help="also write every cell's values here")
    return parser.parse_args(argv)


def main() -> None:
    args = parse()
    mp = None
    if args.mediapipe:
        python = str(ensure_mediapipe(args.mp_venv))
        mp = subprocess.Popen([python, "-c", MP_WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        with tempfile.TemporaryDirectory(prefix="peer-mp-") as work:
            run(args, mp, Path(work))
    finally:
        if mp is not None and mp.stdin is not None:
            mp.stdin.close()
            mp.wait()


if __name__ == "__main__":
    main()
