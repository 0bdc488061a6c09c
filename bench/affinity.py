"""Does stream affinity pay when the frame buffer is shared? Sticky streams vs gRPC's round_robin, side by side.

Two workers (each an :class:`~service.engine.inprocess.InProcessEngine` behind a worker gRPC servicer on a
loopback port, in this process; tiny random-weight models: hrnet-micro detector, P-STMO tiny 9-frame lifter)
share one Redis frame buffer (a ``redis-server`` this script starts on a free port). ``--streams`` streams push
``--frames`` JPEG frames each, concurrently, through a :class:`~service.rpc.remote_engine.RemoteEngineClient`:

- ``sticky``: the client is given the two addresses and keeps every stream on the worker that served its
  previous frame (the client's own round robin + affinity, when it had one);
- ``rr``: the client is given ONE target ``ipv4:a,b`` and gRPC's ``round_robin`` policy spreads every call,
  so consecutive frames of a stream land on alternate workers and each reads the stream's state from Redis.

Printed per mode (alternated over ``--rounds``): frames/s over all streams and p50 / p95 latency of one
``push_frame`` call; then, per mode, one stream with Savitzky-Golay smoothing (whose state lives in the worker
process): the frames it answered of those pushed, and the largest difference from the same stream on one worker::

    python bench/affinity.py --streams 8 --frames 40 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.redis_server import start_redis  # noqa: E402
from bench.wire import start_worker  # noqa: E402
from service.config import (  # noqa: E402
    DetectorSettings,
    EngineSettings,
    LifterKind,
    ModelSpec,
    WorkerSettings,
)
from service.engine.types import EstimateOptions, FrameResult, ImageFrame  # noqa: E402
from service.engine.work import push  # noqa: E402
from service.geometry.smoothing import SmoothingMethod, SmoothingSpec  # noqa: E402
from service.rpc.remote_engine import RemoteEngineClient  # noqa: E402

MESSAGE_LIMIT = 8 * 1024 * 1024


def worker_settings(redis_url: str, threads: int) -> WorkerSettings:
    return WorkerSettings(
        allow_random_weights=True,
        redis_url=redis_url,
        detector=DetectorSettings(arch="hrnet-micro", flip_test=False),
        models={"pstmo": ModelSpec(kind=LifterKind.PSTMO, arch="pstmo-tiny-9", frames=9, flip_test=False)},
        default_image_model="pstmo",
        default_clip_model="pstmo",
        engine=EngineSettings(max_batch_size=16, max_delay_ms=2.0, torch_threads=threads),
    )


async def run_mode(
    client: RemoteEngineClient, jpeg: bytes, streams: int, frames: int, tag: str
) -> tuple[float, list[float]]:
    """Frames/s over ``streams`` concurrent streams of ``frames`` frames, and every push's latency (s)."""
    latencies: list[float] = []

    async def one_stream(s: int) -> None:
        info = await client.open_stream(EstimateOptions(model="pstmo"), stream_id=f"{tag}-{s}")
        for i in range(frames):
            started = time.perf_counter()
            await push(client, info.stream_id, [ImageFrame(image=jpeg, frame_index=i, timestamp_s=i / 30)])
            latencies.append(time.perf_counter() - started)
        await client.close_stream(info.stream_id)

    started = time.perf_counter()
    await asyncio.gather(*(one_stream(s) for s in range(streams)))
    return streams * frames / (time.perf_counter() - started), latencies


async def smoothed_stream(client: RemoteEngineClient, jpeg: bytes, frames: int, tag: str) -> list[FrameResult]:
    """Every result of one stream with Savitzky-Golay smoothing (pushes and the close), in frame order."""
    smoothing = SmoothingSpec(SmoothingMethod.SAVGOL, half_window=4, polyorder=2)
    info = await client.open_stream(EstimateOptions(model="pstmo", smoothing=smoothing), stream_id=tag)
    results: list[FrameResult] = []
    for i in range(frames):
        results += await push(client, info.stream_id, [ImageFrame(image=jpeg, frame_index=i, timestamp_s=i / 30)])
    results += await client.close_stream(info.stream_id)
    return sorted(results, key=lambda r: r.frame_index)


def largest_difference(got: list[FrameResult], reference: list[FrameResult]) -> float:
    """The largest |Δ| (m) between the 3D poses of the frames both answered."""
    ref = {r.frame_index: r for r in reference}
    deltas = [
        float(np.abs(p.keypoints_3d - q.keypoints_3d).max())
        for r in got
        if r.frame_index in ref
        for p, q in zip(r.people, ref[r.frame_index].people, strict=False)
    ]
    return max(deltas, default=0.0)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--frames", type=int, default=40, help="frames per stream")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--rounds", type=int, default=2, help="sticky/rr rounds, alternated")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (args.height, args.width, 3), dtype=np.uint8)
    jpeg = cv2.imencode(".jpg", cv2.GaussianBlur(noise, (0, 0), 3), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    with tempfile.TemporaryDirectory() as tmp:
        redis, url = start_redis(tmp)
        workers = [await start_worker(worker_settings(url, args.threads), MESSAGE_LIMIT) for _ in range(2)]
        addresses = [address for address, _, _ in workers]
        clients = {
            "sticky": RemoteEngineClient(addresses, max_message_bytes=MESSAGE_LIMIT, call_timeout_s=600.0),
            "rr": RemoteEngineClient(["ipv4:" + ",".join(addresses)], max_message_bytes=MESSAGE_LIMIT,
                                     call_timeout_s=600.0),
        }  # fmt: skip
        print(
            f"# {os.cpu_count()} CPUs; 2 workers in this process sharing one Redis frame buffer; hrnet-micro "
            f"detector + pstmo-tiny-9 lifter (random weights), torch threads {args.threads} per worker, CPU; "
            f"{args.width}x{args.height} JPEG of {len(jpeg)} bytes; {args.streams} streams x {args.frames} frames, "
            "all streams concurrent, one push_frame at a time per stream"
        )
        print(f"{'mode':<8} {'frames/s':>9} {'p50 ms':>8} {'p95 ms':>8}")
        try:
            for client in clients.values():
                await client.start()
                await run_mode(client, jpeg, 2, 12, "warm")  # warm-up both paths
            for r in range(args.rounds):
                for mode in ("sticky", "rr") if r % 2 == 0 else ("rr", "sticky"):  # alternate who goes first
                    fps, lat = await run_mode(clients[mode], jpeg, args.streams, args.frames, f"{mode}{r}")
                    p50, p95 = statistics.median(lat) * 1000, statistics.quantiles(lat, n=20)[-1] * 1000
                    print(f"{mode:<8} {fps:>9.1f} {p50:>8.1f} {p95:>8.1f}", flush=True)
            single = RemoteEngineClient(addresses[:1], max_message_bytes=MESSAGE_LIMIT, call_timeout_s=600.0)
            await single.start()
            reference = await smoothed_stream(single, jpeg, args.frames, "smooth-one")
            await single.aclose()
            print(f"{'smoothed':<8} {'answered':>9} {'max |d| m':>10}  (one stream, savgol, vs the same on one worker)")
            for mode, client in clients.items():
                got = await smoothed_stream(client, jpeg, args.frames, f"smooth-{mode}")
                diff = largest_difference(got, reference)
                print(f"{mode:<8} {len(got):>4}/{args.frames:<4} {diff:>10.4f}", flush=True)
        finally:
            for client in clients.values():
                await client.aclose()
            for _, server, engine in workers:
                await server.stop(0)  # type: ignore[attr-defined]
                await engine.aclose()
            redis.terminate()
            redis.wait(5)


if __name__ == "__main__":
    asyncio.run(main())
