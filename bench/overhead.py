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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import torch

from bench.overhead_layers import (
    CASES,
    MODEL,
    Inputs,
    Timing,
    engine_call,
    grpc_call,
    grpc_channel,
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
    """``requests``: batch-1 requests per layer; ``load_requests`` with ``concurrency`` in flight under load;
    ``warmup``: untimed requests per layer and case first; ``width × height``: the JPEG's pixels."""

    width: int = 320
    height: int = 240
    threads: int = 1
    requests: int = 60
    load_requests: int = 160
    concurrency: int = 8
    warmup: int = 8
    cases: tuple[str, ...] = CASES


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
        "batching": "shipped engine defaults (max_batch_size 32, max_delay_ms 5)",
        "requests": {"batch1": opts.requests, "load": opts.load_requests, "concurrency": opts.concurrency},
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


async def measure_in_process(opts: Options, inputs: Inputs, results: Results, log: Log) -> dict[str, float]:
    """Bare and engine timings of every case; returns per case the mean batch the engine formed under load."""
    torch.set_num_threads(opts.threads)
    engine = InProcessEngine(CommonSettings(**model_settings(opts.threads)), Metrics())
    await engine.start()
    formed: dict[str, float] = {}
    try:
        for case in opts.cases:
            call = engine_call(engine, case, inputs)
            await timed_lanes(call, opts.warmup, 1)
            time_bare(engine, case, inputs, 1, opts.warmup)
            got = results.setdefault(case, {})
            got["bare"] = {"batch1": time_bare(engine, case, inputs, 1, opts.requests)}
            got["engine"] = {"batch1": await timed_lanes(call, opts.requests, 1)}
            stage = _stage(engine, case)
            runs, units = stage.batches_run, stage.units_run
            got["engine"]["load"] = await timed_lanes(call, opts.load_requests, opts.concurrency)
            formed[case] = (stage.units_run - units) / max(1, stage.batches_run - runs)
            batch = max(1, round(formed[case]))
            got["bare"]["load"] = time_bare(engine, case, inputs, batch, opts.load_requests)
            for layer in ("bare", "engine"):
                for mode, t in got[layer].items():
                    _log_timing(log, case, layer, mode, t)
    finally:
        await engine.aclose()
    return formed


async def measure_served(opts: Options, inputs: Inputs, remote: bool, results: Results, log: Log) -> None:
    """REST and gRPC timings of every case against ``pose3d serve`` (or gateway → worker when ``remote``)."""
    prefix = "remote_" if remote else ""
    with tempfile.TemporaryDirectory(prefix="pose3d-overhead-") as tmp, Served(
        model_settings(opts.threads), Path(tmp), remote
    ) as ep:  # fmt: skip
        channel = grpc_channel(ep.grpc)
        try:
            async with httpx.AsyncClient(base_url=ep.rest, timeout=120.0) as client:
                stub = pose3d_pb2_grpc.Pose3DStub(channel)  # type: ignore[no-untyped-call]
                for case in opts.cases:
                    calls = {"rest": rest_call(client, case, inputs), "grpc": grpc_call(stub, case, inputs)}
                    for name, call in calls.items():
                        await timed_lanes(call, opts.warmup, min(opts.warmup, opts.concurrency))
                        layer = prefix + name
                        got = results[case].setdefault(layer, {})
                        got["batch1"] = await timed_lanes(call, opts.requests, 1)
                        got["load"] = await timed_lanes(call, opts.load_requests, opts.concurrency)
                        for mode, t in got.items():
                            _log_timing(log, case, layer, mode, t)
        finally:
            await channel.close()


async def run(opts: Options, log: Log) -> dict[str, Any]:
    """Every layer of every case; the report as JSON-ready data."""
    inputs = Inputs.make(opts.width, opts.height)
    config = configuration(opts, inputs)
    log("# " + "; ".join(f"{k}: {v}" for k, v in config.items()))
    results: Results = {}
    formed = await measure_in_process(opts, inputs, results, log)
    await measure_served(opts, inputs, False, results, log)
    await measure_served(opts, inputs, True, results, log)
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
    p.add_argument("--requests", type=int, default=60, help="batch-1 requests per layer and case")
    p.add_argument("--load-requests", type=int, default=160, help="requests per layer and case under load")
    p.add_argument("--concurrency", type=int, default=8, help="clients in flight under load")
    p.add_argument("--warmup", type=int, default=8, help="untimed requests per layer and case first")
    p.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    a = p.parse_args(argv)
    for name in ("threads", "width", "height", "requests", "load_requests", "concurrency"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    opts = Options(a.width, a.height, a.threads, a.requests, a.load_requests, a.concurrency, a.warmup, tuple(a.cases))
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
