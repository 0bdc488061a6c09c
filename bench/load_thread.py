"""``python -m bench.load_thread [--rounds R] [--steps N] [--burners K]``: what the thread the models load on costs
the inference thread afterwards.

One child process per load mode, the modes interleaved round by round in one run; each loads the overload bench's
engine (HRNet-micro → CA-PF tiny, random weights, the shipped ``engine.torch_threads``) through
``service.engine.loader.load_engine``, then runs N inferences (2 top-down crops detected, one CA-PF lift) on the
pipeline's inference thread with 2 ms between them, and reports the process's CPU seconds and the wall seconds.
Modes:

- ``executor``: the load steps on ``asyncio.to_thread`` (the default executor's thread, which stays; joined at exit).
- ``loading_thread``: on ``service.startup.loading_thread`` (one daemon thread that stays; not joined).
- ``exiting``: on a daemon thread per step that ends with it (the reverted 2cd62ad): libgomp frees the pool torch
  made for that thread, counts no more threads than CPUs, and the inference team spins ~300 000 times after every
  parallel region instead of 100.

``--burners K`` runs K busy-looping processes beside it (as ``make test-stressed`` does).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

_T = TypeVar("_T")
MODES = ("executor", "loading_thread", "exiting")


async def _exiting_thread(fn: Callable[..., _T], *args: object) -> _T:
    """``fn(*args)`` on a daemon thread of its own that ends with it (the reverted change)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[_T] = loop.create_future()

    def run() -> None:
        result = fn(*args)
        loop.call_soon_threadsafe(done.set_result, result)

    threading.Thread(target=run, daemon=True).start()
    return await done


async def _child(mode: str, steps: int) -> dict[str, Any]:
    import numpy as np

    from service.config import CommonSettings, DetectorSettings, LifterKind, ModelSpec
    from service.engine import loader
    from service.metrics import Metrics

    if mode == "executor":
        loader.loading_thread = asyncio.to_thread  # type: ignore[assignment]
    elif mode == "exiting":
        loader.loading_thread = _exiting_thread  # type: ignore[assignment]
    settings = CommonSettings(
        allow_random_weights=True,
        detector=DetectorSettings(arch="hrnet-micro", flip_test=False),
        models={"capf": ModelSpec(kind=LifterKind.CAPF, arch="capf-tiny", frames=1, flip_test=False)},
        default_image_model="capf",
        default_clip_model="capf",
    )
    pipeline = await loader.load_engine(settings, Metrics())
    detector, lifter = pipeline.detector, pipeline.lifters["capf"]
    assert detector is not None
    images = [np.zeros((240, 320, 3), np.uint8)] * 2
    boxes = [np.array([[20.0, 10.0, 300.0, 230.0]], np.float32)] * 2
    scores = [np.ones(1, np.float32)] * 2

    def step() -> None:
        detector.detect(images, boxes, scores, flip_test=False, flip_features=True)
        lifter.warmup()

    loop = asyncio.get_running_loop()
    for _ in range(3):
        await loop.run_in_executor(pipeline.infer_pool, step)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(steps):
        await loop.run_in_executor(pipeline.infer_pool, step)
        await asyncio.sleep(0.002)  # the gap between batches a served stream leaves
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    threads = len(os.listdir("/proc/self/task"))
    await pipeline.aclose()
    return {"mode": mode, "cpu_ms": 1000 * cpu / steps, "wall_ms": 1000 * wall / steps, "threads": threads}


def _run_child(mode: str, steps: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.load_thread", "--child", mode, "--steps", str(steps)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.load_thread", description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="rounds, each running every mode once")
    p.add_argument("--steps", type=int, default=30, help="inferences per child")
    p.add_argument("--burners", type=int, default=0, help="busy-looping processes beside it")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(asyncio.run(_child(args.child, args.steps))), flush=True)
        os._exit(0)  # an "exiting" child's pool threads are not waited for either
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.burners)]
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in args.modes}
    try:
        for r in range(args.rounds):
            for mode in args.modes:
                runs[mode].append(res := _run_child(mode, args.steps))
                print(f"round {r + 1} {mode:15s} cpu {res['cpu_ms']:7.1f} ms  wall {res['wall_ms']:7.1f} ms  "
                      f"threads {res['threads']}", flush=True)  # fmt: skip
    finally:
        for burner in burners:
            burner.kill()
    print(f"load {os.getloadavg()[0]:.1f}, {args.burners} burners; medians per inference:")
    for mode, rs in runs.items():
        cpu, wall = (statistics.median(r[k] for r in rs) for k in ("cpu_ms", "wall_ms"))
        print(f"  {mode:15s} cpu {cpu:7.1f} ms  wall {wall:7.1f} ms  ({1000 / wall:.1f}/s)")


if __name__ == "__main__":
    main()
