"""Gateway ↔ worker wire, side by side in one run: result pages as the old worker messages (the public
``pose3d.v1`` results, every array a ``repeated float`` built with ``.tolist()``) vs the worker link's own packed
messages (``pose3d.worker.v1``: little-endian float32 ``bytes`` + shape); then decoded pixels (before) vs encoded
images and clips (after).

Results (always; ``--results-only`` stops there): a page of ``F`` frame results of ``P`` people each (17 joints:
box, 2D keypoints and scores, 3D root-relative and camera-frame keypoints, distance, one warning), random values.
``old``: :func:`bench.old_codec.frame_result_to_pb` per frame into a ``pose3d.v1.EstimateResponse`` (what the
worker returned before), serialised, parsed and turned back into engine results (``frame_result_from_pb``);
``new``: :func:`service.rpc.link.progress_to_pb` → bytes → :func:`service.rpc.link.progress_from_pb`. Printed:
bytes per frame and encode + decode microseconds per frame (median of ``--repeat`` timed runs), with the
machine's load average.

Both ways go through the real path: a :class:`~service.rpc.remote_engine.RemoteEngineClient` to a worker
servicer around an :class:`~service.engine.inprocess.InProcessEngine` (tiny random-weight models: hrnet-micro
detector, capf-tiny lifter) on a loopback gRPC port, all in this process. ``raw``: the gateway decodes the JPEG
(:func:`service.api.media.decode_image`, as before) and ships ``(H, W, 3) uint8``; ``encoded``: it checks the
headers (:func:`service.api.media.validate_image`) and ships the JPEG, which the worker's decode stage
decodes. Printed: bytes per frame on the wire (the serialised worker ``Frame``) and end-to-end frames/s over
``--requests`` image estimates, ``--concurrency`` at a time.

Clips (``--clip-frames`` > 0): ``raw``: the gateway decodes the MP4 (:func:`bench.clip_paths.run_clip_decoded_here`,
as it did before) and the frames go as ``(H, W, 3) uint8`` in ``Submit`` calls of ``--chunk`` frames;
``encoded``: :func:`service.api.clips.run_clip` probes the header and the MP4 goes in one ``Submit`` call,
decoded by the worker. Bytes per frame: the serialised ``Work`` messages over the clip's frames; frames/s: clip
frames over the wall time of the whole clip::

    python bench/wire.py --results-only
    python bench/wire.py --requests 200 --width 640 --height 480 --clip-frames 48
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import google.protobuf
import numpy as np
from google.protobuf.internal import api_implementation

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import old_codec  # noqa: E402
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
from service.engine.types import (  # noqa: E402
    EncodedClip,
    EstimateOptions,
    Frame,
    FrameResult,
    ImageFrame,
    PersonResult,
    Progress,
    Work,
)
from service.engine.work import collect  # noqa: E402
from service.metrics import Metrics  # noqa: E402
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb  # noqa: E402
from service.proto_gen.pose3d.worker.v1 import worker_pb2 as wpb  # noqa: E402
from service.rpc import codec, link  # noqa: E402
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
            await collect(client, Work(f"{mode}-{i}", [frame], options, None))

    started = time.perf_counter()
    await asyncio.gather(*(one_lane() for _ in range(concurrency)))
    return requests / (time.perf_counter() - started)


def _work_bytes(frames: list[Frame] | EncodedClip, chunk: int) -> int:
    size: int = link.work_to_pb(Work("r", frames, stream="clip-" + "x" * 24, chunk_frames=chunk)).ByteSize()
    return size


async def clip_wire_bytes(mode: str, clip: bytes, chunk: int) -> int:
    """Bytes the gateway sends a worker for ``clip``: every ``Work`` of a chunk of raw frames (``raw``) or the one
    ``Work`` carrying the clip (``encoded``)."""
    encoded = EncodedClip(clip, "mp4", clip_limits(CLIP_LIMITS))
    if mode == "encoded":
        return _work_bytes(encoded, chunk)
    total, frames = 0, list[Frame]()
    async with decoded_clip(encoded, None) as decoder:
        async for frame in decoder.frames():
            frames.append(frame)
            if len(frames) == chunk:
                total += _work_bytes(frames, chunk)
                frames = []
    if frames:
        total += _work_bytes(frames, chunk)
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
        f"({len(clip) / args.clip_frames:.0f} bytes/frame encoded); raw: Submit calls of {args.chunk} frames"
    )
    print(f"{'clip':<8} {'bytes/frame':>12} {'x encoded input':>16} {'frames/s':>9}")
    await run_clip_mode(client, "encoded", clip)  # warm-up both paths
    await run_clip_mode(client, "raw", clip)
    for mode in ("raw", "encoded") * args.rounds:
        size = await clip_wire_bytes(mode, clip, args.chunk) / args.clip_frames
        fps, frames = await run_clip_mode(client, mode, clip)
        assert frames == args.clip_frames
        print(f"{mode:<8} {size:>12.0f} {size / (len(clip) / args.clip_frames):>16.2f} {fps:>9.1f}", flush=True)


def result_page(frames: int, people: int, seed: int = 0) -> list[FrameResult]:
    """``frames`` results of ``people`` placed people each (17 joints), random float32 values."""
    rng = np.random.default_rng(seed)

    def f32(*shape: int) -> np.ndarray:
        return rng.normal(0, 100, shape).astype(np.float32)

    def person(track: int) -> PersonResult:
        return PersonResult(track, f32(4), float(np.float32(rng.uniform())), f32(17, 2), f32(17), f32(17, 3),
                            f32(17, 3), float(np.float32(rng.uniform(1, 9))), ("low confidence",))  # fmt: skip

    return [FrameResult(i, i / 30, [person(p) for p in range(people)]) for i in range(frames)]


def old_round_trip(page: list[FrameResult]) -> tuple[int, list[FrameResult]]:
    """The old worker reply: public messages, ``repeated float`` arrays (``.tolist()``); bytes and decoded page."""
    data = pb.EstimateResponse(frames=[old_codec.frame_result_to_pb(r) for r in page]).SerializeToString()
    return len(data), [codec.frame_result_from_pb(f) for f in pb.EstimateResponse.FromString(data).frames]


def new_round_trip(page: list[FrameResult]) -> tuple[int, list[FrameResult]]:
    """The worker link's reply: one ``Progress`` of packed arrays; bytes and decoded page."""
    data = link.progress_to_pb(Progress(page, len(page))).SerializeToString()
    return len(data), link.progress_from_pb(wpb.Progress.FromString(data)).results


def compare_results(pages: list[int], people: list[int], repeat: int) -> None:
    """Bytes/frame and encode+decode µs/frame of both encodings, per page shape (alternated, median of runs)."""
    print(f"# result pages: 17 joints, box + 2D + scores + 3D + camera 3D + distance + 1 warning per person; "
          f"median of {repeat} runs; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip
    print(f"{'frames':>6} {'people':>6} {'old B/frame':>12} {'new B/frame':>12} {'old µs/frame':>13} "
          f"{'new µs/frame':>13} {'speed-up':>9}")  # fmt: skip
    for frames in pages:
        for count in people:
            page = result_page(frames, count)
            times: dict[str, list[float]] = {"old": [], "new": []}
            sizes = {"old": old_round_trip(page)[0], "new": new_round_trip(page)[0]}
            assert all(np.array_equal(a.keypoints_3d, b.keypoints_3d) for a, b in
                       zip(page[0].people, new_round_trip(page)[1][0].people, strict=True))  # fmt: skip
            runs = max(1, 2000 // (frames * count))
            for _ in range(repeat):
                for name, trip in (("old", old_round_trip), ("new", new_round_trip)):
                    started = time.perf_counter()
                    for _ in range(runs):
                        trip(page)
                    times[name].append((time.perf_counter() - started) / runs / frames * 1e6)
            old, new = float(np.median(times["old"])), float(np.median(times["new"]))
            print(f"{frames:>6} {count:>6} {sizes['old'] / frames:>12.0f} {sizes['new'] / frames:>12.0f} "
                  f"{old:>13.1f} {new:>13.1f} {old / new:>8.1f}x", flush=True)  # fmt: skip


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
    parser.add_argument("--results-only", action="store_true", help="only the result-page comparison (no engine)")
    parser.add_argument("--pages", type=int, nargs="+", default=[1, 8, 64], help="frames per result page")
    parser.add_argument("--people", type=int, nargs="+", default=[1, 3], help="people per frame")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per page shape (median)")
    args = parser.parse_args()
    print(f"# {os.cpu_count()} CPUs, {platform.python_implementation()} {platform.python_version()}, "
          f"protobuf {google.protobuf.__version__} ({api_implementation.Type()} backend), numpy {np.__version__}")  # fmt: skip
    compare_results(args.pages, args.people, args.repeat)
    if args.results_only:
        return
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
        f"{args.requests} image estimates, {args.concurrency} in flight; bytes = serialised worker Frame"
    )
    print(f"{'mode':<8} {'bytes/frame':>12} {'x encoded input':>16} {'frames/s':>9}")
    try:
        await run_mode(client, "encoded", jpeg, 8, 4)  # warm-up both paths
        await run_mode(client, "raw", jpeg, 8, 4)
        for mode in ("raw", "encoded") * args.rounds:  # alternated, so drift of a shared machine hits both
            size = link.frame_to_pb(frame_for(mode, jpeg)).ByteSize()
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
