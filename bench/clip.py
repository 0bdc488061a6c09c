"""Clip frames per second through the gateway's clip path, before vs after batching, in one run.

    .venv/bin/python -m bench.clip                      # HRNet-W32 detector, 48 frames of 640x480, CPU
    .venv/bin/python -m bench.clip --quick              # hrnet-micro, 24 frames: a smoke run in seconds
    .venv/bin/python -m bench.clip --remote             # also through a worker over gRPC (loopback)
    .venv/bin/python -m bench.clip --device cuda        # GPU

"Before" is :func:`bench.clip_paths.run_clip_frame_by_frame` (each decoded frame pushed into an engine
stream and answered before the next is decoded: batches of one); "after" is :func:`service.api.clips.run_clip`
(the clip sent encoded; the engine decodes it on a thread, taking frames a detector batch ahead: a clip's frames
share batches). Both
run on the same started engine, on the same synthetic MP4 (one whole-frame person per frame), after a
warm-up of each. Random weights: speed does not depend on them. With ``--remote`` the engine sits behind a
``pose3d.v1`` worker servicer on a loopback gRPC port and the gateway side is a ``RemoteEngineClient``
(before: one ``PushFrame`` per frame; after: one ``PushClip`` call carrying the encoded clip). Prints frames/s, people per detector
batch, and the after/before ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from prometheus_client import generate_latest

from bench.clip_paths import run_clip_frame_by_frame
from service.api.clips import ClipOutcome, run_clip
from service.api.media import Media, MediaKind
from service.client.sources import write_synthetic_clip
from service.config import (
    CommonSettings,
    DetectorSettings,
    Device,
    EngineSettings,
    LifterKind,
    LimitSettings,
    ModelSpec,
)
from service.engine.inprocess import InProcessEngine
from service.engine.types import EngineClient, EstimateOptions
from service.metrics import Metrics
from service.rpc.remote_engine import RemoteEngineClient
from tests.service.worker_support import serve_worker

ClipPath = Callable[..., Awaitable[ClipOutcome]]
PATHS: dict[str, ClipPath] = {"before (frame by frame)": run_clip_frame_by_frame, "after (batched)": run_clip}


@dataclass(frozen=True)
class Measured:
    frames_per_s: float
    people_per_detect_batch: float


def settings(args: argparse.Namespace) -> CommonSettings:
    return CommonSettings(
        device=Device(args.device),
        allow_random_weights=True,
        detector=DetectorSettings(arch=args.detector, flip_test=False),
        models={"lifter": ModelSpec(kind=LifterKind.PSTMO, arch=args.lifter, frames=args.window, flip_test=False)},
        default_clip_model="lifter",
        default_image_model="lifter",
        engine=EngineSettings(
            max_batch_size=args.batch, max_delay_ms=args.delay_ms, request_timeout_s=3600, torch_threads=args.threads
        ),
    )


def detect_batches(metrics: Metrics) -> tuple[float, float]:
    """(batches, people) the detector has run so far."""
    text = generate_latest(metrics.registry).decode()
    values = {"count": 0.0, "sum": 0.0}
    for line in text.splitlines():
        for key in values:
            if line.startswith(f'pose3d_batch_size_{key}{{stage="detect"}}'):
                values[key] = float(line.split()[-1])
    return values["count"], values["sum"]


async def measure(path: ClipPath, engine: EngineClient, clip: bytes, metrics: Metrics) -> Measured:
    upload = Media(MediaKind.MP4, clip)
    limits = LimitSettings(max_clip_frames=100_000, max_clip_seconds=100_000, max_body_bytes=1 << 40)
    batches, people = detect_batches(metrics)
    started = time.perf_counter()
    outcome = await path(engine, upload, EstimateOptions(), limits, 1, time.monotonic() + 3600)
    seconds = time.perf_counter() - started
    batches_after, people_after = detect_batches(metrics)
    ran = batches_after - batches
    return Measured(outcome.frames_processed / seconds, (people_after - people) / ran if ran else 0.0)


async def compare(label: str, engine: EngineClient, clip: bytes, warm: bytes, metrics: Metrics) -> None:
    results: dict[str, Measured] = {}
    for name, path in PATHS.items():
        await measure(path, engine, warm, metrics)
        results[name] = got = await measure(path, engine, clip, metrics)
        print(f"  {label:10s} {name:24s} {got.frames_per_s:8.2f} frames/s   "
              f"{got.people_per_detect_batch:5.1f} people per detector batch", flush=True)  # fmt: skip
    before, after = (m.frames_per_s for m in results.values())
    print(f"  {label:10s} ratio after/before: {after / before:.2f}x", flush=True)


async def main(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_synthetic_clip(Path(tmp) / "clip.mp4", args.frames, args.width, args.height).read_bytes()
        warm = write_synthetic_clip(Path(tmp) / "warm.mp4", 2 * args.batch, args.width, args.height).read_bytes()
    metrics = Metrics()
    engine = InProcessEngine(settings(args), metrics)
    await engine.start()
    print(f"clip: {args.frames} frames of {args.width}x{args.height}; detector {args.detector}, lifter {args.lifter} "
          f"({args.window} frames), max_batch_size {args.batch}, max_delay_ms {args.delay_ms}, "
          f"torch threads {torch.get_num_threads()}, device {args.device}", flush=True)  # fmt: skip
    try:
        await compare("in-process", engine, clip, warm, metrics)
        if args.remote:
            server, _, address = await serve_worker(engine, 128 * 1024 * 1024, metrics)
            remote = RemoteEngineClient([address], clip_chunk_frames=args.batch, call_timeout_s=3600)
            await remote.start()
            try:
                await compare("remote", remote, clip, warm, metrics)
            finally:
                await remote.aclose()
                await server.stop(0)
    finally:
        await engine.aclose()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detector", default="w32", help="HRNet preset (w32, w48, hrnet-tiny, hrnet-micro)")
    parser.add_argument("--lifter", default="pstmo-tiny-27", help="P-STMO preset")
    parser.add_argument("--window", type=int, default=27, help="the lifter's frames")
    parser.add_argument("--frames", type=int, default=48, help="frames in the clip")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--batch", type=int, default=8, help="engine max_batch_size (people per detector forward)")
    parser.add_argument("--delay-ms", type=float, default=5.0, help="engine max_delay_ms")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    parser.add_argument("--device", default="cpu", choices=[d.value for d in Device])
    parser.add_argument("--remote", action="store_true", help="also through a loopback gRPC worker")
    parser.add_argument("--quick", action="store_true", help="hrnet-micro, 24 frames of 320x240")
    args = parser.parse_args(argv)
    if args.quick:
        args.detector, args.frames, args.width, args.height = "hrnet-micro", 24, 320, 240
    return args


if __name__ == "__main__":
    asyncio.run(main(parse()))
