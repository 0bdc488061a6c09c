"""Redis frame buffer overhead per stream frame, before/after side by side: ``python -m bench.redis_overhead``.

For each case, one stream is pushed frame by frame through ``InProcessEngine`` twice per round — with the
in-memory frame buffer and with the Redis one (a ``redis-server`` this bench starts on a free port) — and
the steady-state wall time per frame is compared (the window lag is filled first, untimed, so every timed
frame lifts one window). Redis round trips per frame are counted on the client (each command or
pipeline sent is one). Cases (random weights, keypoint or decoded-image input, ``max_delay_ms`` 0: a lone
stream gains nothing from waiting for company, so the cost is the work itself):

- ``tiny-keypoints``: P-STMO tiny 27 frames, 2D keypoint frames (not tracked);
- ``tiny-images``: hrnet-micro detector + P-STMO tiny 27 on 120×160 frames with a client box (tracked: the
  tracker state is written with every frame);
- ``default-keypoints``: the default clip model, P-STMO-S 243 (flip test on), 2D keypoint frames;
- ``buffer-27`` / ``buffer-243``: the frame buffer alone (no engine, no model): the stream step's tracker read
  and append for one-person frames in order, windows of 27 / 243 frames (P-STMO tiny 27 / P-STMO-S 243).

``--baseline DIR`` also runs every case on the code in ``DIR`` (e.g. a ``git worktree`` of the previous
commit): each child process imports ``service`` from its tree (this file imports no ``service`` code; only
``bench.redis_server``), children of both trees alternate, and the medians are reported side by side in one table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.redis_server import start_redis

CASES = ("tiny-keypoints", "tiny-images", "default-keypoints", "buffer-27", "buffer-243")
DEFAULT_CASES = ("tiny-keypoints", "default-keypoints")  # tiny-images: the detector's cost drowns the difference


# -- child: one tree, one case ---------------------------------------------------------------------


def _settings(case: str, threads: int) -> Any:
    from service.config import CommonSettings, DetectorSettings, EngineSettings, LifterKind, ModelSpec

    if case == "default-keypoints":
        spec = ModelSpec(kind=LifterKind.PSTMO, arch="pstmo-243", frames=243)
    else:
        spec = ModelSpec(kind=LifterKind.PSTMO, arch="pstmo-tiny-27", frames=27, flip_test=False)
    return CommonSettings(
        allow_random_weights=True,
        detector=DetectorSettings(arch="hrnet-micro", flip_test=False),
        models={"lifter": spec},
        default_clip_model="lifter",
        default_image_model="lifter",
        engine=EngineSettings(max_batch_size=8, max_delay_ms=0.0, torch_threads=threads, request_timeout_s=3600),
    )


def _frames(case: str, n: int) -> list[Any]:
    import numpy as np

    from service.engine.types import ImageFrame, KeypointFrame

    rng = np.random.default_rng(0)
    if case == "tiny-images":
        out = []
        for i in range(n):
            img = rng.integers(0, 60, (120, 160, 3), dtype=np.uint8)
            img[20 + i % 40 : 60 + i % 40, 30 : 50 + i % 40] = 230
            out.append(ImageFrame(image=img, frame_index=i))
        return out
    base = rng.random((17, 2), dtype=np.float32) * 400 + 100
    walk = np.cumsum(rng.normal(0, 3, (n, 17, 2)), axis=0).astype(np.float32)
    ones = np.ones(17, np.float32)
    return [KeypointFrame(base + walk[i], ones, (640, 480), frame_index=i) for i in range(n)]


class _RoundTrips:
    """Counts commands and pipelines sent to Redis (one round trip each) by every connection of this process."""

    def __init__(self) -> None:
        from redis.asyncio.connection import AbstractConnection

        self.count = 0
        original = AbstractConnection.send_packed_command
        counter = self

        async def counted(conn: Any, command: Any, check_health: bool = True) -> None:
            counter.count += 1
            await original(conn, command, check_health)

        AbstractConnection.send_packed_command = counted  # type: ignore[method-assign,assignment]


async def _per_frame(engine: Any, frames: list[Any], lag: int, trips: _RoundTrips) -> tuple[float, float]:
    """Milliseconds and round trips per timed frame of one stream."""
    from service.engine.types import EstimateOptions
    from service.engine.work import push

    sid = (await engine.open_stream(EstimateOptions(model="lifter"))).stream_id
    for f in frames[:lag]:  # fill the window lag untimed: every timed frame then lifts one window
        await push(engine, sid, [f])
    sent, started = trips.count, time.perf_counter()
    for f in frames[lag:]:
        await push(engine, sid, [f])
    timed = len(frames) - lag
    ms, per_frame_trips = (time.perf_counter() - started) / timed * 1000.0, (trips.count - sent) / timed
    await engine.close_stream(sid)
    return ms, per_frame_trips


def _record(index: int) -> Any:
    import numpy as np

    from service.engine.framebuffer import FrameRecord

    rng = np.random.default_rng(index)
    f = np.float32
    kp = rng.random((1, 17, 2), dtype=f)
    return FrameRecord(index, index / 30, (640, 480), np.zeros(1, np.int32), rng.random((1, 4), dtype=f),
                       rng.random(1, dtype=f), kp * 500, kp, rng.random((1, 17), dtype=f), np.zeros((1, 0, 17, 0), f))  # fmt: skip


async def _append_ms(buf: Any, frames: int, window: int) -> float:
    """Milliseconds per frame of the stream step's buffer work alone: the tracker state read (on the old code a
    round trip, ``read_tracker``; on the new one this process's copy) and the append, ``frames`` one-person
    frames in order, windows of ``window`` frames."""
    import uuid

    from service.engine.framebuffer import StreamMeta
    from service.engine.types import WindowMode
    from service.engine.windows import WindowSpec

    meta = StreamMeta(f"bench-{uuid.uuid4().hex}", "x", WindowMode.CENTRED, False)
    spec, records = WindowSpec(window), [_record(i) for i in range(frames)]
    await buf.create(meta)
    started = time.perf_counter()
    for r in records:
        if hasattr(buf, "read_tracker"):  # the code before: (state, tracker, version) read, then the append
            snap = await buf.read_tracker(meta.stream_id, r.frame_index)
            await buf.append(meta.stream_id, r, spec, WindowMode.CENTRED, None, snap.version)
        else:
            view = await buf.tracker(meta.stream_id)
            await buf.append(meta.stream_id, r, spec, WindowMode.CENTRED, None, view.token)
    ms = (time.perf_counter() - started) / frames * 1000.0
    await buf.delete(meta.stream_id)
    return ms


async def _buffer_child(case: str, url: str, frames: int, rounds: int) -> dict[str, Any]:
    import torch

    from service.engine.framebuffer import MemoryFrameBuffer
    from service.engine.framebuffer.redis import RedisFrameBuffer

    trips = _RoundTrips()
    window = int(case.split("-")[1])
    memory, redis = MemoryFrameBuffer(), RedisFrameBuffer(url)
    mem_ms, red_ms, per_frame_trips = [], [], []
    for _ in range(rounds):
        mem_ms.append(await _append_ms(memory, frames, window))
        sent = trips.count
        red_ms.append(await _append_ms(redis, frames, window))
        per_frame_trips.append((trips.count - sent - 2) / frames)  # less the stream's create and delete
    await redis.aclose()
    return {
        "memory_ms": mem_ms,
        "redis_ms": red_ms,
        "round_trips_per_frame": per_frame_trips,
        "torch": torch.__version__,
    }


async def _child(case: str, url: str, frames_timed: int, rounds: int, threads: int) -> dict[str, Any]:
    import torch

    if case.startswith("buffer-"):
        return await _buffer_child(case, url, frames_timed, rounds)

    from service.engine.framebuffer import MemoryFrameBuffer
    from service.engine.framebuffer.redis import RedisFrameBuffer
    from service.engine.inprocess import InProcessEngine
    from service.metrics import Metrics

    torch.set_num_threads(threads)
    trips = _RoundTrips()
    s = _settings(case, threads)
    memory = InProcessEngine(s, Metrics(), MemoryFrameBuffer())
    redis = InProcessEngine(s, Metrics(), RedisFrameBuffer(url))
    await memory.start()
    await redis.start()
    lag = memory.pipeline.lifters["lifter"].window.lag_right
    frames = _frames(case, lag + frames_timed)
    mem_ms, red_ms, per_frame_trips = [], [], []
    for _ in range(rounds):
        mem_ms.append((await _per_frame(memory, frames, lag, trips))[0])
        ms, per_frame = await _per_frame(redis, frames, lag, trips)
        red_ms.append(ms)
        per_frame_trips.append(per_frame)
    await memory.aclose()
    await redis.aclose()
    return {
        "memory_ms": mem_ms,
        "redis_ms": red_ms,
        "round_trips_per_frame": per_frame_trips,
        "torch": torch.__version__,
    }


# -- driver: redis-server, children of each tree interleaved, the table --------------------------------


def _run_child(tree: Path, case: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree)}  # `service` comes from `tree`, nothing from this file's folder
    argv = [__file__, "--child", case, "--url", url, "--frames", str(args.frames)]
    argv += ["--rounds", str(args.rounds), "--threads", str(args.threads)]
    run = f"import runpy, sys; sys.argv = {argv!r}; runpy.run_path({str(Path(__file__).resolve())!r}, run_name='__main__')"
    with tempfile.TemporaryDirectory() as cwd:
        out = subprocess.run([sys.executable, "-c", run], env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"child {case} in {tree} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _summary(runs: list[dict[str, Any]]) -> dict[str, float]:
    mem = statistics.median(m for r in runs for m in r["memory_ms"])
    red = statistics.median(m for r in runs for m in r["redis_ms"])
    trips = statistics.median(t for r in runs for t in r["round_trips_per_frame"])
    return {"memory_ms": mem, "redis_ms": red, "overhead_ms": red - mem, "ratio": red / mem, "round_trips": trips}


def main(args: argparse.Namespace) -> None:
    trees = {"after": Path(__file__).resolve().parents[1]}
    if args.baseline is not None:
        trees = {"before": args.baseline.resolve(), **trees}
    cases = args.cases or list(DEFAULT_CASES)
    load = os.getloadavg()
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPU(s), load average {load[0]:.1f}; torch threads "
        f"{args.threads}; {args.frames} timed frames x {args.rounds} rounds x {args.repeats} processes per tree; "
        "max_delay_ms 0, max_batch_size 8, random weights, CPU"
    )
    for name, tree in trees.items():
        print(f"  {name}: {tree} ({_git_head(tree)})")
    results: dict[str, dict[str, list[dict[str, Any]]]] = {case: {name: [] for name in trees} for case in cases}
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_redis(tmp)
        try:
            for case in cases:
                for _ in range(args.repeats):
                    for name, tree in trees.items():  # the trees alternate: a busy spell hits both alike
                        results[case][name].append(_run_child(tree, case, url, args))
        finally:
            proc.terminate()
            proc.wait(5)
    print(f"torch {results[cases[0]]['after'][0]['torch']}; per-frame medians (ms):")
    print("| case | tree | memory ms/frame | Redis ms/frame | Redis overhead ms | overhead % | round trips/frame |")
    print("|---|---|---|---|---|---|---|")
    for case in cases:
        for name in trees:
            s = _summary(results[case][name])
            print(
                f"| {case} | {name} | {s['memory_ms']:.3f} | {s['redis_ms']:.3f} | {s['overhead_ms']:+.3f} | "
                f"{100 * (s['ratio'] - 1):+.1f}% | {s['round_trips']:.2f} |"
            )
    if args.json is not None:
        args.json.write_text(json.dumps({"load_average": load, "args": vars(args) | {"json": str(args.json),
                             "baseline": str(args.baseline)}, "results": results}, indent=1))  # fmt: skip


def _git_head(tree: Path) -> str:
    out = subprocess.run(["git", "-C", str(tree), "log", "-1", "--format=%h %s"], capture_output=True, text=True)
    return out.stdout.strip()[:70] or "not a git tree"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.redis_overhead", description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", type=Path, default=None, help="a tree of the previous code to run side by side")
    p.add_argument("--cases", nargs="+", choices=CASES, default=None)
    p.add_argument("--frames", type=int, default=200, help="timed frames per stream (after the window lag)")
    p.add_argument("--rounds", type=int, default=3, help="memory/Redis stream pairs per process")
    p.add_argument("--repeats", type=int, default=2, help="processes per tree and case (alternating trees)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--json", type=Path, default=None, help="also write every timing here")
    p.add_argument("--child", choices=CASES, default=None, help=argparse.SUPPRESS)
    p.add_argument("--url", default="", help=argparse.SUPPRESS)
    return p.parse_args(argv)


if __name__ == "__main__":
    parsed = parse()
    if parsed.child is not None:
        child = _child(parsed.child, parsed.url, parsed.frames, parsed.rounds, parsed.threads)
        print(json.dumps(asyncio.run(child)))
    else:
        main(parsed)
