"""Engine benchmarks, all in one run on one machine: ``python -m bench.engine [--quick]``.

(a) lifter throughput served through the engine at saturating concurrency vs the bare model at the same batch
    size (target ≥ 0.9);
(b) engine throughput with dynamic batching vs ``max_batch_size = 1``;
(c) per-frame cost of one stream at 100, 1 000 and 10 000 frames (must stay flat);
(d) Redis vs in-memory frame buffer, per-frame overhead (starts its own ``redis-server`` on a free port).

Models have random weights (the cost of a forward does not depend on the values). Keypoint input is used so
that the lifter and the engine are measured, not the detector (``bench/bench_detector.py`` covers that).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Sequence

import numpy as np
import torch

from bench.redis_server import start_redis
from service.config import CommonSettings, Device, EngineSettings, LifterKind, ModelSpec
from service.engine.framebuffer import FrameBuffer, MemoryFrameBuffer
from service.engine.framebuffer.redis import RedisFrameBuffer
from service.engine.inprocess import InProcessEngine
from service.engine.types import (
    EstimateOptions,
    KeypointFrame,
)
from service.engine.work import push
from service.metrics import Metrics

DEVICE = Device.CPU


def settings(arch: str, frames: int, batch: int, threads: int, redis_url: str = "") -> CommonSettings:
    return CommonSettings(
        device=DEVICE,
        allow_random_weights=True,
        redis_url=redis_url,
        models={"lifter": ModelSpec(kind=LifterKind.PSTMO, arch=arch, frames=frames, flip_test=False)},
        default_clip_model="lifter",
        default_image_model="lifter",
        engine=EngineSettings(max_batch_size=batch, max_delay_ms=2.0, max_queue=100_000, torch_threads=threads),
    )


def keypoints(n: int, seed: int = 0) -> list[KeypointFrame]:
    rng = np.random.default_rng(seed)
    base = rng.random((17, 2), dtype=np.float32) * 400 + 100
    walk = np.cumsum(rng.normal(0, 3, (n, 17, 2)), axis=0).astype(np.float32)
    ones = np.ones(17, np.float32)
    return [KeypointFrame(base + walk[i], ones, (640, 480), frame_index=i) for i in range(n)]


async def started(s: CommonSettings, buffer: FrameBuffer | None = None) -> InProcessEngine:
    engine = InProcessEngine(s, Metrics(), buffer)
    await engine.start()
    return engine


def bare_throughput(engine: InProcessEngine, batch: int, seconds: float) -> float:
    """Windows/s of the bare model at ``batch`` windows per forward (same thread settings, no engine)."""
    lifter = engine.pipeline.lifters["lifter"]
    model = lifter.model  # type: ignore[attr-defined]
    kp = torch.randn(batch, lifter.spec.frames, 17, 2) * 0.3
    with torch.inference_mode():
        model.lift(kp.to(lifter.device)).cpu()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            model.lift(kp.to(lifter.device)).cpu()  # the engine also moves inputs in and results out
            n += batch
    return n / (time.perf_counter() - t0)


async def streams_throughput(engine: InProcessEngine, streams: int, seconds: float) -> tuple[float, float]:
    """Windows/s lifted when ``streams`` streams push frames as fast as they can (one window per frame once the
    window lag is filled), and the mean lift batch size."""
    lag = engine.pipeline.lifters["lifter"].window.lag_right
    frames = keypoints(int(seconds * 20_000) + lag + 1)
    ids = [(await engine.open_stream(EstimateOptions(model="lifter"))).stream_id for _ in range(streams)]
    for sid in ids:  # fill the lag so that every push emits a window
        for f in frames[:lag]:
            await push(engine, sid, [f])
    lift = engine.pipeline.lift["lifter"]
    done = 0
    stop = time.perf_counter() + seconds

    async def pusher(sid: str) -> None:
        nonlocal done
        i = lag
        while time.perf_counter() < stop:
            results = await push(engine, sid, [frames[i]])
            done += len(results)  # (not `done += len(await ...)`: that reads `done` before awaiting)
            i += 1

    runs, units = lift.batches_run, lift.units_run
    t0 = time.perf_counter()
    await asyncio.gather(*(pusher(sid) for sid in ids))
    elapsed = time.perf_counter() - t0
    mean_batch = (lift.units_run - units) / max(1, lift.batches_run - runs)
    for sid in ids:
        await engine.pipeline.buffer.delete(sid)
    return done / elapsed, mean_batch


async def per_frame_ms(engine: InProcessEngine, lengths: Sequence[int]) -> dict[int, float]:
    """Mean wall time per pushed frame of one stream, frames pushed one after another."""
    frames = keypoints(max(lengths), seed=1)
    out: dict[int, float] = {}
    for n in lengths:
        sid = (await engine.open_stream(EstimateOptions(model="lifter"))).stream_id
        t0 = time.perf_counter()
        for f in frames[:n]:
            await push(engine, sid, [f])
        await engine.close_stream(sid)
        out[n] = (time.perf_counter() - t0) / n * 1000.0
    return out


async def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    global DEVICE
    DEVICE = Device(args.device)
    secs = 2.0 if args.quick else args.seconds
    print(
        f"torch {torch.__version__} on {DEVICE.value}, {args.threads} intra-op thread(s), "
        f"lifter {args.arch} ({args.frames} frames)"
    )

    # (a) + (b)
    batched = await started(settings(args.arch, args.frames, args.batch, args.threads))
    bare = bare_throughput(batched, args.batch, secs)
    served, mean_batch = await streams_throughput(batched, args.concurrency, secs)
    await batched.aclose()
    single = await started(settings(args.arch, args.frames, 1, args.threads))
    served_1, _ = await streams_throughput(single, args.concurrency, secs)
    await single.aclose()
    print(f"(a) bare model, batch {args.batch}: {bare:9.1f} windows/s")
    print(f"    engine, {args.concurrency} streams:   {served:9.1f} windows/s (mean batch {mean_batch:.1f})")
    print(f"    ratio engine / bare = {served / bare:.3f}  (target >= 0.9)")
    print(f"(b) engine, max_batch_size 1: {served_1:9.1f} windows/s")
    print(f"    ratio dynamic batching / batch 1 = {served / served_1:.2f}")
    for arch, frames in [("pstmo-27", 27)] if args.arch != "pstmo-27" else []:
        rates = []
        for batch in (args.batch, 1):
            engine = await started(settings(arch, frames, batch, args.threads))
            rates.append((await streams_throughput(engine, args.concurrency, secs))[0])
            await engine.aclose()
        print(f"    {arch}: batched {rates[0]:.1f}, batch 1 {rates[1]:.1f} windows/s, ratio {rates[0] / rates[1]:.2f}")

    # (c) flat per-frame cost (a tiny lifter, so the engine's own cost shows)
    lengths = [100, 1000] if args.quick else [100, 1000, 10_000]
    tiny = await started(settings("pstmo-tiny-27", 27, args.batch, args.threads))
    costs = await per_frame_ms(tiny, lengths)
    await tiny.aclose()
    print(
        "(c) one stream, pstmo-tiny-27, per frame: " + ", ".join(f"{n} frames {ms:.3f} ms" for n, ms in costs.items())
    )
    print(f"    ratio longest / shortest = {costs[lengths[-1]] / costs[lengths[0]]:.2f}  (flat = 1)")

    # (d) Redis vs memory frame buffer
    n = 300 if args.quick else 2000
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_redis(tmp)
        try:
            memory = await started(settings("pstmo-tiny-27", 27, args.batch, args.threads), MemoryFrameBuffer())
            mem_ms = (await per_frame_ms(memory, [n]))[n]
            await memory.aclose()
            redis_engine = await started(
                settings("pstmo-tiny-27", 27, args.batch, args.threads, url), RedisFrameBuffer(url)
            )
            red_ms = (await per_frame_ms(redis_engine, [n]))[n]
            await redis_engine.aclose()
        finally:
            proc.terminate()
            proc.wait(5)
    print(f"(d) {n}-frame stream, per frame: memory {mem_ms:.3f} ms, redis {red_ms:.3f} ms")
    print(f"    Redis overhead {red_ms - mem_ms:+.3f} ms/frame, ratio {red_ms / mem_ms:.2f}")


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.engine", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="pstmo-243", help="P-STMO preset for (a)/(b) (published sizes: pstmo-27/81/243)")
    p.add_argument("--frames", type=int, default=243)
    p.add_argument("--batch", type=int, default=32, help="max_batch_size of the engine and the bare batch")
    p.add_argument("--concurrency", type=int, default=128, help="concurrent streams for (a)/(b)")
    p.add_argument("--threads", type=int, default=max(1, min(4, torch.get_num_threads())))
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--quick", action="store_true", help="short run (CI smoke): 2 s per measurement, (c) up to 1 000")
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
