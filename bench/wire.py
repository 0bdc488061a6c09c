"""Gateway → worker wire: decoded pixels (before) vs the encoded image (after), side by side in one run.

Both ways go through the real path: a :class:`~service.rpc.remote_engine.RemoteEngineClient` to a worker
servicer around an :class:`~service.engine.inprocess.InProcessEngine` (tiny random-weight models: hrnet-micro
detector, capf-tiny lifter) on a loopback gRPC port, all in this process. ``raw``: the gateway decodes the JPEG
(:func:`service.gateway.media.decode_image`, as before) and ships ``(H, W, 3) uint8``; ``encoded``: it checks the
headers (:func:`service.gateway.media.validate_image`) and ships the JPEG, which the worker's decode stage
decodes. Printed: bytes per frame on the wire (the serialised ``WorkerFrame``) and end-to-end frames/s over
``--requests`` image estimates, ``--concurrency`` at a time::

    python bench/wire.py --requests 200 --width 640 --height 480
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.config import (  # noqa: E402
    DetectorSettings,
    EngineSettings,
    LifterKind,
    LimitSettings,
    ModelSpec,
    WorkerSettings,
)
from service.engine.inprocess import InProcessEngine  # noqa: E402
from service.engine.types import EstimateOptions, EstimateRequest, ImageFrame  # noqa: E402
from service.gateway.media import decode_image, validate_image  # noqa: E402
from service.metrics import Metrics  # noqa: E402
from service.proto_gen.pose3d.v1 import worker_pb2_grpc  # noqa: E402
from service.rpc import codec  # noqa: E402
from service.rpc.remote_engine import RemoteEngineClient  # noqa: E402
from service.rpc.server import WORKER_SERVICE, add_health_and_reflection, new_server, set_serving  # noqa: E402
from service.worker.servicer import WorkerServicer  # noqa: E402

MESSAGE_LIMIT = 128 * 1024 * 1024


def worker_settings(threads: int) -> WorkerSettings:
    return WorkerSettings(
        allow_random_weights=True,
        detector=DetectorSettings(arch="hrnet-micro", flip_test=False),
        models={"capf": ModelSpec(kind=LifterKind.CAPF, arch="capf-tiny", flip_test=False)},
        default_image_model="capf",
        default_clip_model="capf",
        engine=EngineSettings(max_batch_size=16, max_delay_ms=2.0, torch_threads=threads),
    )


async def start_worker(settings: WorkerSettings) -> tuple[str, object, InProcessEngine]:
    engine = InProcessEngine(settings, Metrics())
    await engine.start()
    server = new_server(MESSAGE_LIMIT)
    worker_pb2_grpc.add_WorkerServicer_to_server(WorkerServicer(Metrics(), engine), server)  # type: ignore[no-untyped-call]
    health = add_health_and_reflection(server, [WORKER_SERVICE])
    await set_serving(health, [WORKER_SERVICE], serving=True)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return f"127.0.0.1:{port}", server, engine


def frame_for(mode: str, jpeg: bytes) -> ImageFrame:
    """What the gateway hands the engine client: decoded pixels (raw) or the checked encoded bytes."""
    if mode == "raw":
        return ImageFrame(image=decode_image(jpeg, LimitSettings()))
    validate_image(jpeg, LimitSettings())
    return ImageFrame(image=jpeg)


async def run_mode(client: RemoteEngineClient, mode: str, jpeg: bytes, requests: int, concurrency: int) -> float:
    """Frames per second of ``requests`` one-image estimates, ``concurrency`` in flight."""
    options = EstimateOptions(model="capf")
    todo = iter(range(requests))

    async def one_lane() -> None:
        for i in todo:
            frame = await asyncio.to_thread(frame_for, mode, jpeg)
            await client.estimate(EstimateRequest(f"{mode}-{i}", [frame], options, None))

    started = time.perf_counter()
    await asyncio.gather(*(one_lane() for _ in range(concurrency)))
    return requests / (time.perf_counter() - started)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the worker")
    parser.add_argument("--rounds", type=int, default=2, help="raw/encoded rounds, alternated")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (args.height, args.width, 3), dtype=np.uint8)
    jpeg = cv2.imencode(".jpg", cv2.GaussianBlur(noise, (0, 0), 3), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    address, server, engine = await start_worker(worker_settings(args.threads))
    client = RemoteEngineClient([address], max_message_bytes=MESSAGE_LIMIT, call_timeout_s=600.0)
    await client.start()
    print(
        f"# {os.cpu_count()} CPUs, worker in this process: hrnet-micro detector + capf-tiny lifter (random weights), "
        f"torch threads {args.threads}, CPU; {args.width}x{args.height} JPEG q90 of {len(jpeg)} bytes; "
        f"{args.requests} image estimates, {args.concurrency} in flight; bytes = serialised WorkerFrame"
    )
    print(f"{'mode':<8} {'bytes/frame':>12} {'x encoded input':>16} {'frames/s':>9}")
    try:
        await run_mode(client, "encoded", jpeg, 8, 4)  # warm-up both paths
        await run_mode(client, "raw", jpeg, 8, 4)
        for mode in ("raw", "encoded") * args.rounds:  # alternated, so drift of a shared machine hits both
            size = codec.frame_to_pb(frame_for(mode, jpeg)).ByteSize()
            fps = await run_mode(client, mode, jpeg, args.requests, args.concurrency)
            print(f"{mode:<8} {size:>12} {size / len(jpeg):>16.2f} {fps:>9.1f}")
    finally:
        await client.aclose()
        await server.stop(0)  # type: ignore[attr-defined]
        await engine.aclose()


if __name__ == "__main__":
    asyncio.run(main())
