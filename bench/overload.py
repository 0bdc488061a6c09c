"""``python -m bench.overload`` (also ``python -m bench overload``): goodput under 3× overload, admission by expected
time vs by count, side by side in one run (issue 10).

For each admission mode (``engine.admission = "time"``, then ``"count"``, the rule before issue 10) the bench starts
a real ``pose3d serve`` in a child process (uvicorn, the in-process engine, tiny random-weight models: HRNet-micro
and CA-PF tiny, ``--threads`` torch threads) on a free port, then

1. measures **capacity**: ``--concurrency`` closed-loop clients post one JPEG each (``POST /v1/pose3d``, one person,
   whole-frame box) for ``--capacity-seconds``, after a short warm-up;
2. drives ``--load`` × that capacity **open loop** (Poisson arrivals, fixed seed) for ``--seconds``, every request
   with ``X-Request-Timeout: --deadline-s``, and waits for every request to end;

and prints capacity, offered rate, goodput (200s that met their deadline and completed inside the window, per
second) ÷ capacity, the share of admitted requests (all but 429/503) that met their deadline, refusal latency
p50/p99, counts by status, and the configuration (models, threads, input size, device, torch version, load
average). ``--out`` receives ``overload.json`` and ``overload.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.metadata
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.overload_report import Outcome, markdown, summarise
from bench.overload_server import BatchOverrides, ServedGateway, gateway_settings
from service.client.sources import encode_frame, synthetic_image
from service.config import EngineSettings

TIMEOUT_HEADER = "X-Request-Timeout"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.overload", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--seconds", type=float, default=30.0, help="open-loop phase length (default 30)")
    p.add_argument(
        "--load",
        type=float,
        nargs="+",
        default=[3.0],
        help="offered rate ÷ measured capacity, one run each (default 3)",
    )
    p.add_argument("--concurrency", type=int, default=8, help="closed-loop clients measuring capacity (default 8)")
    p.add_argument("--capacity-seconds", type=float, default=10.0, help="capacity phase length (default 10)")
    p.add_argument(
        "--deadline-s", type=float, default=30.0, help="X-Request-Timeout of every request (default 30: the service's)"
    )
    p.add_argument("--size", default="320x240", help="JPEG width x height (default 320x240)")
    p.add_argument("--batch", type=int, default=None, help="engine.max_batch_size (default: the shipped default)")
    p.add_argument("--delay-ms", type=float, default=None, help="engine.max_delay_ms (default: the shipped default)")
    p.add_argument(
        "--detect-batch", type=int, default=None, help="engine.detect.max_batch_size (default: the shipped default)"
    )
    p.add_argument("--threads", type=int, default=1, help="engine.torch_threads of the server (default 1)")
    p.add_argument(
        "--wait-fraction",
        type=float,
        default=None,
        help="engine.admission_wait_fraction: share of the deadline a request may wait (default: the shipped one)",
    )
    p.add_argument("--modes", nargs="+", choices=("time", "count"), default=["time", "count"])
    p.add_argument("--seed", type=int, default=10, help="seed of the Poisson arrivals")
    p.add_argument("--out", type=Path, default=Path("bench/results"), help="directory for overload.json/.md")
    return p.parse_args(argv)


async def _post(client: httpx.AsyncClient, jpeg: bytes, headers: dict[str, str], t0: float) -> Outcome:
    sent = time.perf_counter() - t0
    try:
        response = await client.post("/v1/pose3d", files={"file": ("person.jpg", jpeg, "image/jpeg")}, headers=headers)
        status = response.status_code
    except httpx.HTTPError:
        status = 0
    return Outcome(sent, time.perf_counter() - t0, status)


async def capacity(client: httpx.AsyncClient, jpeg: bytes, concurrency: int, seconds: float) -> float:
    """Successful requests per second of ``concurrency`` closed-loop clients over ``seconds``."""
    t0 = time.perf_counter()
    done: list[Outcome] = []

    async def loop() -> None:
        while time.perf_counter() - t0 < seconds:
            done.append(await _post(client, jpeg, {}, t0))

    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return sum(1 for o in done if o.status == 200 and o.done <= seconds) / seconds


async def open_loop(
    client: httpx.AsyncClient, jpeg: bytes, rate: float, seconds: float, deadline_s: float, seed: int
) -> list[Outcome]:
    """Poisson arrivals at ``rate``/s for ``seconds``, each request with ``deadline_s``; every outcome, once all
    requests have ended."""
    rng = random.Random(seed)
    headers = {TIMEOUT_HEADER: f"{deadline_s:g}"}
    t0 = time.perf_counter()
    tasks: list[asyncio.Task[Outcome]] = []
    at = rng.expovariate(rate)
    while at < seconds:
        await asyncio.sleep(max(0.0, at - (time.perf_counter() - t0)))
        tasks.append(asyncio.create_task(_post(client, jpeg, headers, t0)))
        at += rng.expovariate(rate)
    return list(await asyncio.gather(*tasks))


def overrides(args: argparse.Namespace) -> BatchOverrides:
    """The batch settings the command line changed from the shipped defaults."""
    return BatchOverrides(args.batch, args.delay_ms, args.detect_batch, args.wait_fraction)


async def run_mode(mode: str, args: argparse.Namespace, jpeg: bytes, workdir: Path) -> list[dict[str, Any]]:
    """One gateway with ``engine.admission = mode``: its capacity, then each ``--load`` in turn against it."""
    settings = gateway_settings(mode, args.threads, args.deadline_s, overrides(args))
    results: list[dict[str, Any]] = []
    with ServedGateway(settings, workdir / f"gateway-{mode}") as served:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
        timeout = httpx.Timeout(args.deadline_s + 30.0)
        async with httpx.AsyncClient(base_url=served.url, limits=limits, timeout=timeout) as client:
            for _ in range(2 * args.concurrency):  # warm-up: first batches measure the stages' rates
                await _post(client, jpeg, {}, time.perf_counter())
            cap = await capacity(client, jpeg, args.concurrency, args.capacity_seconds)
            if cap <= 0:
                raise SystemExit(f"{mode}: no request succeeded while measuring capacity (see {served.log_path})")
            for load in args.load:
                load_before = os.getloadavg()
                outcomes = await open_loop(client, jpeg, load * cap, args.seconds, args.deadline_s, args.seed)
                load_after = os.getloadavg()
                result = summarise(outcomes, cap, load * cap, args.seconds, args.deadline_s)
                result.update(mode=mode, load=load, load_average_before=load_before, load_average_after=load_after)
                print(json.dumps({k: v for k, v in result.items() if k != "latencies"}), flush=True)
                results.append(result)
                await asyncio.sleep(args.deadline_s)  # the queues drain before the next load
    return results


def configuration(args: argparse.Namespace) -> dict[str, Any]:
    from bench.suite import cpu_name

    engine = EngineSettings.model_validate(overrides(args).engine())
    detect_batch, _ = engine.stage_batch("detect")
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "models": "detector hrnet-micro (flip off) → CA-PF capf-tiny (flip off), random weights",
        "engine": {k: getattr(engine, k) for k in ("max_batch_size", "max_delay_ms", "max_queue")}
        | {"torch_threads": args.threads, "detect.max_batch_size": detect_batch}
        | {k: getattr(engine, k) for k in ("admission_wait_fraction", "rate_window_s")},
        "batch_settings": "overridden on the command line" if overrides(args).engine() else "shipped defaults",
        "gateway_max_inflight_requests": 256,
        "input": f"JPEG {args.size}, one person, whole-frame box",
        "device": f"cpu ({cpu_name()}), {os.cpu_count()} cores",
        "torch": importlib.metadata.version("torch"),
        "python": sys.version.split()[0],
        "concurrency": args.concurrency,
        "load": args.load,
        "seconds": args.seconds,
        "capacity_seconds": args.capacity_seconds,
        "deadline_s": args.deadline_s,
        "arrivals": f"Poisson, seed {args.seed}",
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    width, height = (int(v) for v in args.size.lower().split("x"))
    jpeg = encode_frame(synthetic_image(0, width, height), "jpeg")
    config = configuration(args)
    runs = []
    with tempfile.TemporaryDirectory(prefix="pose3d-overload-") as tmp:
        for mode in args.modes:
            loads = ", ".join(f"{load:g}x" for load in args.load)
            print(f"[{mode}] starting the gateway, measuring capacity, then {loads} for {args.seconds:g} s each",
                  flush=True)  # fmt: skip
            runs.extend(await run_mode(mode, args, jpeg, Path(tmp)))
    return {"configuration": config, "runs": runs}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = asyncio.run(run(args))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "overload.json").write_text(json.dumps(result, indent=1) + "\n")
    text = markdown(result)
    (args.out / "overload.md").write_text(text)
    print(text)
    print(f"wrote {args.out / 'overload.json'}, {args.out / 'overload.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
