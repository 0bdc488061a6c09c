"""Serving overhead per layer, side by side in one run: ``python -m bench.overhead`` (or ``python -m bench overhead``).

The same tiny random-weight models (hrnet-micro detector → CA-PF tiny for an image, P-STMO tiny 9 for one frame of
2D keypoints) are timed through every layer, one request of one frame at a time (batch 1) and with
``--concurrency`` clients at once (under load, so the batchers form batches):

- ``bare``: the stage functions the engine's batchers call (decode, detector, CA-PF tokens, lift), called in
  sequence on this thread, at batch 1 and at the mean batch the engine's detect (image) / lift (keypoints)
  batcher formed under load;
- ``engine``: the in-process engine (``InProcessEngine.estimate``, the dynamic batchers);
- ``rest`` / ``grpc``: ``POST /v1/pose3d`` (keep-alive httpx client) and unary ``Estimate`` against one
  ``pose3d serve`` child process;
- ``remote_rest`` / ``remote_grpc``: the same against ``pose3d gateway`` routing to a ``pose3d worker`` over gRPC.

Printed: µs per request (batch 1: mean latency) and per frame (under load: wall time ÷ frames) of every layer and
the overhead of each layer over the one below (engine − bare, REST − engine, gRPC − engine, remote − in-process),
engine ÷ bare under load (target ≤ 1.05), next to Triton's published per-request figure (``TRITON``). Every figure
carries its load average; the configuration heads the report. Writes ``overhead.json`` and ``overhead.md`` into
``--out``. Loopback only; the clients run in this process, so they share the CPUs with the servers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import torch

from bench.overhead_layers import (
    CASES,
    MODEL,
    Call,
    Inputs,
    Timing,
    engine_call,
    grpc_call,
    grpc_channel,
    median_timing,
    rest_call,
    time_bare,
    timed_lanes,
)
from bench.overhead_report import overheads, write_report
from bench.overhead_servers import Served, model_settings
from service.config import CommonSettings
from service.engine.inprocess import InProcessEngine
from service.metrics import Metrics
from service.proto_gen.pose3d.v1 import pose3d_pb2_grpc

Log = Callable[[str], None]
Results = dict[str, dict[str, dict[str, Timing]]]  # case → layer → "batch1" | "load" → timing


@dataclass(frozen=True)
class Options:
    """Per round, layer and case: ``requests`` at batch 1, ``load_requests`` with ``concurrency`` in flight;
    ``warmup``: untimed requests per layer and case first; ``width × height``: the JPEG's pixels;
    ``max_delay_ms``: every batcher's wait for company (``None``: the shipped default)."""

    width: int = 320
    height: int = 240
    threads: int = 1
    requests: int = 20
    load_requests: int = 48
    concurrency: int = 8
    warmup: int = 8
    rounds: int = 3
    cases: tuple[str, ...] = CASES
    max_delay_ms: float | None = None

    def settings(self) -> dict[str, Any]:
        """The models and engine settings of the in-process engine and of every child."""
        return model_settings(self.threads, self.max_delay_ms)


def configuration(opts: Options, inputs: Inputs) -> dict[str, Any]:
    """What every figure was measured with (printed above the tables and stored in the JSON)."""
    return {
        "models": {
            "image": "hrnet-micro detector → capf-tiny (random weights, no flip test, whole-frame box)",
            "keypoints": "pstmo-tiny-9 (random weights, no flip test), one H36M frame",
        },
        "input": f"{inputs.width}x{inputs.height} JPEG q90 ({len(inputs.jpeg)} bytes); 17 keypoints",
        "torch_threads": opts.threads,
        "device": "cpu",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "batching": "engine max_batch_size 32 (default), max_delay_ms "
        + ("5 (default)" if opts.max_delay_ms is None else f"{opts.max_delay_ms:g}"),
        "requests": {
            "batch1": opts.requests,
            "load": opts.load_requests,
            "concurrency": opts.concurrency,
            "rounds": opts.rounds,
            "per": "round, layer and case; figures: the median round",
        },
        "clients": "in the bench process (httpx.AsyncClient keep-alive; grpc.aio channel), loopback",
        "load_avg_start": os.getloadavg(),
    }


def _log_timing(log: Log, case: str, layer: str, mode: str, t: Timing) -> None:
    log(
        f"{case:<9} {layer:<11} {mode:<6} {t.us_per_request:>11.0f} µs/request {t.us_per_frame:>10.0f} µs/frame "
        f"(n {t.requests}, conc {t.concurrency}, batch {t.batch}; load {t.load_avg[0]:.2f}→{t.load_avg[1]:.2f})"
    )


def _stage(engine: InProcessEngine, case: str) -> Any:
    """The batcher whose mean batch sets the bare batch under load: detect (image), lift (keypoints)."""
    pipe = engine.pipeline
    return pipe.detect if case == "image" else pipe.lift[MODEL[case]]


@dataclass
class Layers:
    """Every layer, started together so that rounds can alternate them: the engine, and per served layer a
    factory of its one-request call for a case."""

    engine: InProcessEngine
    served: dict[str, Callable[[str], Call]]


async def start_layers(opts: Options, inputs: Inputs, stack: AsyncExitStack, workdir: Path) -> Layers:
    """The in-process engine, ``pose3d serve``, and ``pose3d gateway`` → ``pose3d worker``, all ready; closed by
    ``stack``."""
    torch.set_num_threads(opts.threads)
    engine = InProcessEngine(CommonSettings(**opts.settings()), Metrics())
    await engine.start()
    stack.push_async_callback(engine.aclose)
    served: dict[str, Callable[[str], Call]] = {}
    for prefix, remote in (("", False), ("remote_", True)):
        ep = stack.enter_context(Served(opts.settings(), workdir / (prefix or "local"), remote))
        client = await stack.enter_async_context(httpx.AsyncClient(base_url=ep.rest, timeout=120.0))
        channel = grpc_channel(ep.grpc)
        stack.push_async_callback(channel.close)
        stub = pose3d_pb2_grpc.Pose3DStub(channel)  # type: ignore[no-untyped-call]
        served[prefix + "rest"] = partial(rest_call, client, inputs=inputs)
        served[prefix + "grpc"] = partial(grpc_call, stub, inputs=inputs)
    return Layers(engine, served)


async def one_round(opts: Options, inputs: Inputs, layers: Layers, case: str, log: Log) -> dict[str, dict[str, Timing]]:
    """Every layer of ``case`` once, batch 1 and under load; bare under load at the batch the engine just formed."""
    engine, got = layers.engine, dict[str, dict[str, Timing]]()
    call = engine_call(engine, case, inputs)
    got["bare"] = {"batch1": time_bare(engine, case, inputs, 1, opts.requests)}
    got["engine"] = {"batch1": await timed_lanes(call, opts.requests, 1)}
    stage = _stage(engine, case)
    runs, units = stage.batches_run, stage.units_run
    got["engine"]["load"] = await timed_lanes(call, opts.load_requests, opts.concurrency)
    formed = (stage.units_run - units) / max(1, stage.batches_run - runs)
    got["bare"]["load"] = time_bare(engine, case, inputs, max(1, round(formed)), opts.load_requests)
    for name, make in layers.served.items():
        served_call = make(case)
        got[name] = {"batch1": await timed_lanes(served_call, opts.requests, 1)}
        got[name]["load"] = await timed_lanes(served_call, opts.load_requests, opts.concurrency)
    for layer, modes in got.items():
        for mode, t in modes.items():
            _log_timing(log, case, layer, mode, t)
    return got


async def warm_up(opts: Options, inputs: Inputs, layers: Layers, case: str) -> None:
    """Untimed: ``opts.warmup`` requests of every layer of ``case`` (first calls pay for lazy initialisation)."""
    time_bare(layers.engine, case, inputs, 1, opts.warmup)
    calls = [engine_call(layers.engine, case, inputs), *(make(case) for make in layers.served.values())]
    for call in calls:
        await timed_lanes(call, opts.warmup, min(opts.warmup, opts.concurrency))


async def measure(opts: Options, inputs: Inputs, log: Log) -> tuple[Results, dict[str, float]]:
    """``opts.rounds`` rounds, each timing every case through every layer in turn (so the drift of a shared machine
    hits all layers); per layer and mode the round with the median µs/frame."""
    rounds: dict[str, list[dict[str, dict[str, Timing]]]] = {case: [] for case in opts.cases}
    async with AsyncExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pose3d-overhead-")))
        layers = await start_layers(opts, inputs, stack, workdir)
        for case in opts.cases:
            await warm_up(opts, inputs, layers, case)
        for r in range(opts.rounds):
            log(f"# round {r + 1} of {opts.rounds}")
            for case in opts.cases:
                rounds[case].append(await one_round(opts, inputs, layers, case, log))
    results: Results = {}
    for case, got in rounds.items():
        results[case] = {
            layer: {mode: median_timing([g[layer][mode] for g in got]) for mode in got[0][layer]} for layer in got[0]
        }
    formed = {case: float(results[case]["bare"]["load"].batch) for case in opts.cases}
    return results, formed


async def run(opts: Options, log: Log) -> dict[str, Any]:
    """Every layer of every case; the report as JSON-ready data."""
    inputs = Inputs.make(opts.width, opts.height)
    config = configuration(opts, inputs)
    log("# " + "; ".join(f"{k}: {v}" for k, v in config.items()))
    results, formed = await measure(opts, inputs, log)
    config["load_avg_end"] = os.getloadavg()
    return {
        "configuration": config,
        "options": asdict(opts),
        "formed_batch": formed,
        "results": {
            c: {la: {m: t.as_dict() for m, t in ms.items()} for la, ms in ls.items()} for c, ls in results.items()
        },
        "overheads": overheads(results),
    }


def parse_args(argv: list[str] | None = None) -> tuple[Options, Path]:
    p = argparse.ArgumentParser(
        prog="python -m bench.overhead", description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument("--out", type=Path, default=Path("bench/results"), help="directory for overhead.json/.md")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the engine and every child")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--requests", type=int, default=20, help="batch-1 requests per round, layer and case")
    p.add_argument("--load-requests", type=int, default=48, help="requests per round, layer and case under load")
    p.add_argument("--rounds", type=int, default=3, help="rounds alternating the layers (median reported)")
    p.add_argument("--concurrency", type=int, default=8, help="clients in flight under load")
    p.add_argument("--warmup", type=int, default=8, help="untimed requests per layer and case first")
    p.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    p.add_argument("--max-delay-ms", type=float, default=None, help="every batcher's wait (default: shipped 5 ms)")
    a = p.parse_args(argv)
    for name in ("threads", "width", "height", "requests", "load_requests", "concurrency", "rounds"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    counts = (a.requests, a.load_requests, a.concurrency, a.warmup, a.rounds)
    opts = Options(a.width, a.height, a.threads, *counts, tuple(a.cases), a.max_delay_ms)
    return opts, a.out


def main(argv: list[str] | None = None) -> int:
    opts, out = parse_args(argv)
    report = asyncio.run(run(opts, lambda line: print(line, flush=True)))
    paths = write_report(report, out)
    print(paths["markdown"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
