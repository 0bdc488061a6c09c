"""Child process of ``bench.peer_mediapipe``: our profiles built from ONE source tree, timed on command.

The driver runs this file (``runpy.run_path``) with ``PYTHONPATH=<tree>`` and a scratch working directory, so
``service`` is imported from that tree — this build, or the ``--baseline`` worktree of an older commit — and
nothing else of ``bench`` is imported. It builds an :class:`InProcessEngine` per profile named on the command
line (random weights, the tree's own ``service/profiles/<name>.toml``), says it is ready, then answers one JSON
command per line on stdin with one JSON line on stdout, prefixed ``@peer`` (libraries may print too):

- ``{"op": "images", "profile": p, "n": n}``: ``n`` requests of one JPEG each (decode included) →
  ``{"rate": images/s, "cpu_ms": CPU ms per image}``;
- ``{"op": "video", "profile": p, "frames": k, "mode": "centred" | "causal"}``: one clip request of the first ``k``
  frames → ``{"rate": frames/s, "cpu_ms": CPU ms per frame, "detector_runs": person-detector runs}``.

CPU time is this process's (every thread: torch's, ONNX Runtime's, the event loop's). The inputs are the
driver's ``image.jpg`` and ``clip_rgb.npy`` in ``--work``.

Settings per profile (what differs from the profile file, and why):

- every profile: ``allow_random_weights`` (no weights can be downloaded here), ``request_timeout_s`` 3600 (a
  loaded machine is slow), checkpoints removed (random weights stand in, in the same architecture);
- ``default``: ``engine.torch_threads = --threads`` (the profile leaves it to the machine);
- ``realtime``: RTMPose of ``--rtmpose-size``; with ``--person-detector`` its YOLOX-tiny runs as the profile
  configures it (pose-guided boxes, the detector on the first frame and on a lost track). Random weights find no
  person, so that the detector runs on the profile's schedule as for a tracked person: YOLOX's
  ``person_score_threshold`` is 0 (its best box is the person), requests ask for ``max_people = 1`` (MediaPipe
  Pose follows one person too; with its one person tracked, the profile's every-``detect_every`` look is skipped,
  docs/realtime.md), and RTMPose is :func:`tracked_rtmpose` (random weights whose SimCC vectors peak
  on a standing pose: a random RTMPose puts every joint on one pixel, a lost track every other frame). Without
  ``--person-detector``: the whole frame is the box on detection frames, RTMPose is the plain random one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any, Final

PREFIX = "@peer "


def profile_settings(name: str, args: argparse.Namespace) -> Any:
    """``CommonSettings`` of profile ``name`` as the module doc says."""
    from service.config import CommonSettings, load_settings_file
    from service.profiles import profile_path

    data: dict[str, Any] = load_settings_file(profile_path(name))
    for spec in data.get("models", {}).values():
        spec.pop("checkpoint", None)
    engine = {**data.get("engine", {}), "request_timeout_s": 3600.0}
    if name == "default":
        engine["torch_threads"] = args.threads
    if name == "realtime":
        det = data["detector"]
        det["rtmpose_onnx"] = f"rtmpose-{args.rtmpose_size}"
        if args.person_detector:
            det.update(person_score_threshold=0.0, rtmpose_onnx=tracked_rtmpose(args.rtmpose_size, args.work))
        else:
            det["person_detector_onnx"] = None
    data.update(engine=engine, weights_dir=args.work / "weights", allow_random_weights=True, device=args.device)
    if args.half:
        data["half_precision"] = True
    return CommonSettings(**data)


STANDING: Final = (
    (96, 50), (100, 46), (92, 46), (106, 50), (86, 50), (120, 80), (72, 80), (128, 115), (64, 115), (130, 145),
    (62, 145), (110, 140), (82, 140), (112, 175), (80, 175), (112, 210), (80, 210),
)  # fmt: skip
"""COCO-17 joints of a standing person in 192x256 crop pixels, centred, 64% of the crop's height: the pose-guided
box (extent x 1.25, then the crop's own 1.25 padding) gives the next frame the same crop."""


def tracked_rtmpose(size: str, work: Path) -> Path:
    """RTMPose-``size``'s ONNX as :func:`model.rtmpose_net.export` writes it (same architecture, inputs, outputs
    and random weights), its SimCC vectors scaled by 1e-3 and added to peaks of 1.0 at :data:`STANDING` (bins =
    2 x pixels): every crop decodes to that pose with scores about 1. Cost: two element-wise ops on
    ``(B, 17, 384 + 512)`` more per forward."""
    import torch

    from model.rtmpose_net import RTMPose

    class Tracked(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.net = RTMPose(size).eval()
            self.peak_x, self.peak_y = torch.zeros(17, 384), torch.zeros(17, 512)
            for j, (x, y) in enumerate(STANDING):
                self.peak_x[j, 2 * x], self.peak_y[j, 2 * y] = 1.0, 1.0

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            sx, sy = self.net(x)
            return sx * 1e-3 + self.peak_x, sy * 1e-3 + self.peak_y

    path = work / f"rtmpose-{size}-tracked.onnx"
    torch.onnx.export(Tracked().eval(), (torch.zeros(1, 3, 256, 192),), str(path), input_names=["input"],
                      output_names=["simcc_x", "simcc_y"], opset_version=17, dynamo=False,
                      dynamic_axes={"input": {0: "batch"}, "simcc_x": {0: "batch"}, "simcc_y": {0: "batch"}})  # fmt: skip
    return path


async def run_frames(engine: Any, request_id: str, frames: list[Any], options: Any) -> int:
    """Run ``frames`` as one request through whichever engine API the tree under test has (this build's one
    ``submit`` primitive, or an older build's ``estimate``); the number of frame results."""
    try:
        from service.engine.types import Work
        from service.engine.work import collect
    except ImportError:  # an older build (the --baseline tree)
        from service.engine.types import EstimateRequest

        return len((await engine.estimate(EstimateRequest(request_id, frames, options))).frames)
    return len((await collect(engine, Work(request_id, frames, options))).frames)


class Ours:
    """The engines of one tree and the inputs they are timed on."""

    def __init__(self, args: argparse.Namespace) -> None:
        import numpy as np

        self.args = args
        self.jpeg = (args.work / "image.jpg").read_bytes()
        self.clip = np.load(args.work / "clip_rgb.npy")
        self.engines: dict[str, Any] = {}

    async def start(self) -> dict[str, Any]:
        """Build every profile's engine; what each start took and reported (backend, weights)."""
        from service.engine.inprocess import build_engine
        from service.metrics import Metrics

        started: dict[str, Any] = {}
        for name in self.args.profiles:
            t0 = time.perf_counter()
            self.engines[name] = engine = await build_engine(profile_settings(name, self.args), Metrics())
            detail = (await engine.ready()).detail
            started[name] = {"start_s": time.perf_counter() - t0, "detail": {k: str(v) for k, v in detail.items()}}
        return started

    def max_people(self, profile: str) -> int | None:
        """1 where the random person detector would find many (see the module doc), else the default."""
        return 1 if profile == "realtime" and self.args.person_detector else None

    async def images(self, profile: str, n: int) -> dict[str, float]:
        from service.engine.types import EstimateOptions, ImageFrame

        engine = self.engines[profile]
        options = EstimateOptions(max_people=self.max_people(profile))
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(n):
            await run_frames(engine, f"img{i}", [ImageFrame(self.jpeg)], options)
        return {"rate": n / (time.perf_counter() - t0), "cpu_ms": (time.process_time() - c0) * 1000 / n}

    async def video(self, profile: str, frames: int, mode: str) -> dict[str, float]:
        from service.engine.types import EstimateOptions, Frame, ImageFrame, WindowMode

        engine = self.engines[profile]
        clip: list[Frame] = [ImageFrame(f, frame_index=i, timestamp_s=i / 30) for i, f in enumerate(self.clip[:frames])]
        options = EstimateOptions(mode=WindowMode(mode), max_people=self.max_people(profile))
        runs = engine.metrics.person_detector_run_count()
        t0, c0 = time.perf_counter(), time.process_time()
        answered = await run_frames(engine, "clip", clip, options)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        assert answered == len(clip)
        runs = engine.metrics.person_detector_run_count() - runs
        return {"rate": len(clip) / wall, "cpu_ms": cpu * 1000 / len(clip), "detector_runs": runs}

    async def serve(self) -> None:
        """Answer commands from stdin until it closes."""
        reply({"ready": await self.start(), "torch": _torch_version()})
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            cmd = json.loads(line)
            if cmd["op"] == "images":
                reply(await self.images(cmd["profile"], cmd["n"]))
            else:
                reply(await self.video(cmd["profile"], cmd["frames"], cmd["mode"]))
        for engine in self.engines.values():
            await engine.aclose()


def reply(payload: dict[str, Any]) -> None:
    print(PREFIX + json.dumps(payload), flush=True)


def _torch_version() -> str:
    import torch

    return str(torch.__version__)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, required=True, help="the driver's folder: image.jpg, clip_rgb.npy")
    p.add_argument("--profiles", nargs="+", default=["default", "realtime"])
    p.add_argument("--threads", type=int, default=2, help="torch threads of the default profile")
    p.add_argument("--rtmpose-size", default="t")
    p.add_argument("--device", default="cpu")
    p.add_argument("--half", action="store_true", help="half precision (CUDA)")
    p.add_argument("--person-detector", action=argparse.BooleanOptionalAction, default=True)
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(Ours(parse()).serve())
