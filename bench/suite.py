"""The network suite: per network, items/s at each batch size on the fast and the reference path (interleaved),
FLOPs per item, % of the measured fp32 matmul peak, and dynamic batching ÷ batch-1 for the lifters."""

from __future__ import annotations

import datetime
import platform
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from bench.measure import PEAK_SIZE, batching_ratio, flops_per_item, interleaved
from bench.networks import NetworkCase, build_cases


@dataclass(frozen=True)
class SuiteOptions:
    """What to run: tiny models (``quick``), batch sizes, rounds, seconds per timing, threads, presets."""

    quick: bool = False
    batches: tuple[int, ...] = (1, 8, 32)
    rounds: int = 5
    min_seconds: float = 0.5
    threads: int = 1
    only: tuple[str, ...] = ()
    batching_seconds: float = 3.0
    batching: bool = True
    device: str = "cpu"


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (or ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _network_result(case: NetworkCase, opts: SuiteOptions, log: Callable[[str], None]) -> dict[str, Any]:
    flops = flops_per_item(case)
    gflops = flops / 1e9
    log(f"{case.label}: {gflops:.3f} GFLOP / {case.unit}; timing batches {list(opts.batches)}")
    rows: list[dict[str, Any]] = []
    for t in interleaved(case, opts.batches, opts.rounds, opts.min_seconds, opts.device):
        rows.append(
            {
                "batch": t.batch,
                "fast_items_s": t.fast,
                "reference_items_s": t.reference,
                "speedup": t.speedup,
                "fast_peak_pct": 100 * t.peak_fraction(True, gflops),
                "reference_peak_pct": 100 * t.peak_fraction(False, gflops),
                "fast_rounds": list(t.fast_rounds),
                "reference_rounds": list(t.reference_rounds),
                "peak_gflops_rounds": list(t.peak_rounds),
            }
        )
        log(f"  batch {t.batch}: fast {t.fast:.1f}/s, reference {t.reference:.1f}/s, {t.speedup:.2f}x (paired)")
    result: dict[str, Any] = {
        "name": case.name,
        "label": case.label,
        "unit": case.unit,
        "config": case.config,
        "gflops_per_item": gflops,
        "batches": rows,
    }
    if opts.batching and case.unit != "crop":  # lifters: the batch the engine forms across streams
        best = max(rows, key=lambda r: r["fast_items_s"])["batch"]
        result["batching"] = batching_ratio(case, max(best, 2), max(1, min(opts.rounds, 3)), opts.batching_seconds)
        log(f"  dynamic batching (max {result['batching']['max_batch']}) ÷ batch-1: {result['batching']['ratio']:.2f}")
    return result


def run_suite(opts: SuiteOptions, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every network of the suite; returns the JSON-able result with its configuration."""
    torch.set_num_threads(opts.threads)
    cases = build_cases(opts.quick, opts.only, opts.device)
    networks = [_network_result(case, opts, log) for case in cases]
    peaks = [p for net in networks for row in net["batches"] for p in row["peak_gflops_rounds"]]
    peak = statistics.median(peaks)
    config = {
        "torch": torch.__version__,
        "device": opts.device,
        "processor": cpu_name() if opts.device == "cpu" else torch.cuda.get_device_name(opts.device),
        "threads": torch.get_num_threads(),
        "rounds": opts.rounds,
        "min_seconds_per_timing": opts.min_seconds,
        "batches": list(opts.batches),
        "quick": opts.quick,
        "peak_gflops": peak,
        "peak_gflops_max": max(peaks),
        "peak_size": PEAK_SIZE,
        "models": {c.name: {"label": c.label, **c.config} for c in cases},
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    return {"config": config, "networks": networks}


def quick_options(threads: int = 1, batches: Sequence[int] = (1, 4)) -> SuiteOptions:
    """A smoke run in seconds: tiny models, one round, short timings."""
    return SuiteOptions(
        quick=True, batches=tuple(batches), rounds=1, min_seconds=0.02, threads=threads, batching_seconds=0.3
    )
