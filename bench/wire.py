"""Gateway → worker wire: decoded pixels (before) vs encoded images and clips (after), side by side in one run.

Both ways go through the real path: a :class:`~service.rpc.remote_engine.RemoteEngineClient` to a worker
servicer around an :class:`~service.engine.inprocess.InProcessEngine` (tiny random-weight models: hrnet-micro
detector, capf-tiny lifter) on a loopback gRPC port, all in this process. ``raw``: the gateway decodes the JPEG
(:func:`service.api.media.decode_image`, as before) and ships ``(H, W, 3) uint8``; ``encoded``: it checks the
headers (:func:`service.api.media.validate_image`) and ships the JPEG, which the worker's decode stage
decodes. Printed: bytes per frame on the wire (the serialised ``WorkerFrame``) and end-to-end frames/s over
``--requests`` image estimates, ``--concurrency`` at a time.

Clips (``--clip-frames`` > 0): ``raw``: the gateway decodes the MP4 (:func:`bench.clip_paths.run_clip_decoded_here`,
as it did before) and the frames go as ``(H, W, 3) uint8`` in ``PushFrames`` chunks of ``--chunk`` frames;
``encoded``: :func:`service.api.clips.run_clip` probes the header and the MP4 goes in one ``PushClip`` call,
decoded by the worker. Bytes per frame: the serialised requests (every ``PushFramesRequest``, resp. the
``PushClipRequest``) over the clip's frames; frames/s: clip frames over the wall time of the whole clip::

    python bench/wire.py --requests 200 --width 640 --height 480 --clip-frames 48
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.clip_paths import run_clip_decoded_here  # noqa: E402
from service.api.clips import run_clip  # noqa: E402
from service.api.media import (  # noqa: E402
    Media,
    MediaKind,
    clip_limits,
    decode_image,
    validate_image,
)
from service.client.sources import write_synthetic_clip  # noqa: E402
from service.config import (  # noqa: E402
    DetectorSettings,
    EngineSettings,
    LifterKind,
    LimitSettings,
    ModelSpec,
    WorkerSettings,
)
from service.engine.clips import decoded_clip  # noqa: E402
from service.engine.inprocess import InProcessEngine  # noqa: E402
from service.engine.types import EncodedClip, EstimateOptions, EstimateRequest, Frame, ImageFrame  # noqa: E402
from service.metrics import Metrics  # noqa: E402
from service.proto_gen.pose3d.v1 import worker_pb2 as wpb  # noqa: E402
from service.rpc import codec  # noqa: E402
from service.rpc.remote_engine import RemoteEngineClient  # noqa: E402
from tests.service.worker_support import serve_worker  # noqa: E402

MESSAGE_LIMIT = 65 * 1024 * 1024
CLIP_LIMITS = LimitSettings(max_clip_frames=100_000, max_clip_seconds=100_000)


def worker_settings(threads: int) -> WorkerSettings:
    return WorkerSettings(
        allow_random_weights=True,
        detector=DetectorSettings(arch="hrnet-micro", flip_test=False),
        models={"capf": ModelSpec(kind=LifterKind.CAPF, arch="capf-tiny", flip_test=False)},
        default_image_model="capf",
        default_clip_model="capf",
        engine=EngineSettings(max_batch_size=16, max_delay_ms=2.0, torch_threads=threads),
    )


async def start_worker(
    settings: WorkerSettings, message_limit: int = MESSAGE_LIMIT
) -> tuple[str, object, InProcessEngine]:
    """A worker servicer around a started in-process engine on a loopback port: ``(address, server, engine)``."""
    engine = InProcessEngine(settings, Metrics())
    await engine.start()
    server, _, address = await serve_worker(engine, message_limit)
    return address, server, engine


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


async def clip_wire_bytes(mode: str, clip: bytes, chunk: int) -> int:
    """Bytes the gateway sends a worker for ``clip``: every ``PushFramesRequest`` of raw frames (``raw``) or
    the one ``PushClipRequest`` (``encoded``)."""
    encoded = EncodedClip(clip, "mp4", clip_limits(CLIP_LIMITS))
    if mode == "encoded":
        message = wpb.PushClipRequest(stream_id="clip-" + "x" * 24, clip=codec.clip_to_pb(encoded), chunk_frames=chunk)
        return message.ByteSize()
    total, frames = 0, list[Frame]()
    async with decoded_clip(encoded, None) as decoder:
        async for frame in decoder.frames():
            frames.append(frame)
            if len(frames) == chunk:
                total += wpb.PushFramesRequest(
                    stream_id="x" * 30, frames=[codec.frame_to_pb(f) for f in frames]
                ).ByteSize()
                frames = []
    if frames:
        total += wpb.PushFramesRequest(stream_id="x" * 30, frames=[codec.frame_to_pb(f) for f in frames]).ByteSize()
    return total


async def run_clip_mode(client: RemoteEngineClient, mode: str, clip: bytes) -> tuple[float, int]:
    """Frames per second of one clip through the worker, and its frames."""
    path = run_clip_decoded_here if mode == "raw" else run_clip
    upload = Media(MediaKind.MP4, clip)
    started = time.perf_counter()
    outcome = await path(client, upload, EstimateOptions(model="capf"), CLIP_LIMITS, 1, time.monotonic() + 3600)
    return outcome.frames_processed / (time.perf_counter() - started), outcome.frames_processed


async def compare_clips(client: RemoteEngineClient, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_synthetic_clip(Path(tmp) / "c.mp4", args.clip_frames, args.width, args.height).read_bytes()
    print(
        f"# clip: MP4 (mpeg4) of {args.clip_frames} frames {args.width}x{args.height}, {len(clip)} bytes "
        f"({len(clip) / args.clip_frames:.0f} bytes/frame encoded); raw: PushFrames chunks of {args.chunk} frames"
    )
    print(f"{'clip':<8} {'bytes/frame':>12} {'x encoded input':>16} {'frames/s':>9}")
    await run_clip_mode(client, "encoded", clip)  # warm-up both paths
    await run_clip_mode(client, "raw", clip)
    for mode in ("raw", "encoded") * args.rounds:
        size = await clip_wire_bytes(mode, clip, args.chunk) / args.clip_frames
        fps, frames = await run_clip_mode(client, mode, clip)
        assert frames == args.clip_frames
        print(f"{mode:<8} {size:>12.0f} {size / (len(clip) / args.clip_frames):>16.2f} {fps:>9.1f}", flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the worker")
    parser.add_argument("--rounds", type=int, default=2, help="raw/encoded rounds, alternated")
    parser.add_argument("--clip-frames", type=int, default=0, help="also a clip of this many frames (0: images only)")
    parser.add_argument("--chunk", type=int, default=8, help="clip frames per worker step (worker_clip_chunk_frames)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (args.height, args.width, 3), dtype=np.uint8)
    jpeg = cv2.imencode(".jpg", cv2.GaussianBlur(noise, (0, 0), 3), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    address, server, engine = await start_worker(worker_settings(args.threads))
    client = RemoteEngineClient(
        [address], max_message_bytes=MESSAGE_LIMIT, call_timeout_s=600.0, clip_chunk_frames=args.chunk
    )
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
            print(f"{mode:<8} {size:>12} {size / len(jpeg):>16.2f} {fps:>9.1f}", flush=True)
        if args.clip_frames:
            await compare_clips(client, args)
    finally:
        await client.aclose()
        await server.stop(0)  # type: ignore[attr-defined]
        await engine.aclose()


if __name__ == "__main__":
    asyncio.run(main())
