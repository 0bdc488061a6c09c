"""``python -m bench.profile [--quick] [--only PRESET ...] [--batch N] [--reference]``: where the time goes.

One ``torch.profiler`` CPU profile per network of the suite (fast path unless ``--reference``), after a warm-up,
printing the operators with the largest self time: the "what bounds it" column of ``bench/README.md``. Then the
bound in numbers: self time per operator class (convolution, matmul, attention, the rest), the FLOPs of each class
(``FlopCounterMode``) over its self time as GFLOP/s, and both as % of the fp32 ``torch.mm`` 2048² peak measured
right before at the same thread count.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from bench.measure import matmul_gflops

CLASSES: dict[str, tuple[str, ...]] = {
    "convolution": ("conv", "mkldnn_convolution", "_slow_conv2d"),
    "matmul": ("addmm", "aten::mm", "aten.mm", "bmm", "linear", "matmul"),
    "attention": ("scaled_dot_product", "flash_attention"),
}


def op_class(name: str) -> str:
    """``convolution``, ``matmul``, ``attention`` or ``other`` for a profiler/FLOP-counter operator name."""
    lowered = name.lower()
    for cls, keys in CLASSES.items():
        if any(k in lowered for k in keys):
            return cls
    return "other"


def flops_by_class(run: Callable[[], Any]) -> dict[str, float]:
    """FLOPs of one ``run()`` per operator class (``FlopCounterMode``'s global counts)."""
    with FlopCounterMode(display=False) as counter:
        run()
    out: dict[str, float] = defaultdict(float)
    for op, flops in counter.get_flop_counts().get("Global", {}).items():
        out[op_class(str(op))] += float(flops)
    return out


def report(label: str, run: Callable[[], Any], flop_run: Callable[[], Any], rows: int) -> None:
    """Print the top operators of one profiled ``run()`` and the per-class time, GFLOP/s and % of peak.

    FLOPs are counted on ``flop_run`` (the reference path: the same arithmetic, in ops ``FlopCounterMode``
    knows; it does not count oneDNN's fused ``_convolution_pointwise``)."""
    flops = flops_by_class(flop_run)
    peak = matmul_gflops(0.5)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total_us = sum(e.self_cpu_time_total for e in events) or 1.0
    print(f"== {label}: {total_us / 1e3:.1f} ms self time, matmul peak {peak:.1f} GFLOP/s")
    for e in events[:rows]:
        print(f"  {100 * e.self_cpu_time_total / total_us:5.1f}%  {e.key}  ({e.count} calls)")
    by_class: dict[str, float] = defaultdict(float)
    for e in events:
        by_class[op_class(e.key)] += e.self_cpu_time_total
    whole = sum(flops.values()) / 1e9 / (total_us / 1e6)
    print(f"  whole forward: {whole:.1f} GFLOP/s = {100 * whole / peak:.0f}% of peak")
    for cls in (*CLASSES, "other"):
        seconds = by_class[cls] / 1e6
        rate = flops[cls] / 1e9 / seconds if seconds and flops[cls] else 0.0
        gflop_s = f", {rate:.1f} GFLOP/s = {100 * rate / peak:.0f}% of peak" if rate else ""
        print(f"  {cls}: {100 * by_class[cls] / total_us:.1f}% of time, {flops[cls] / 1e9:.2f} GFLOP{gflop_s}")


def main(argv: list[str] | None = None) -> int:
    from bench.networks import build_cases

    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    p.add_argument("--quick", action="store_true", help="the tiny models")
    p.add_argument("--only", nargs="+", default=(), help="presets (e.g. pstmo-243-small capf-w32 w32)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reference", action="store_true", help="profile the reference path")
    p.add_argument("--both", action="store_true", help="profile the reference and the fast path")
    p.add_argument("--rows", type=int, default=8)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    paths = (False, True) if args.both else (not args.reference,)
    for case in build_cases(args.quick, tuple(args.only)):
        for fast in paths:
            run = case.runner(args.batch, fast=fast)
            run()
            path = "fast" if fast else "reference"
            label = f"{case.label}, {path} path, batch {args.batch}, {torch.get_num_threads()} thread(s)"
            report(label, run, case.runner(args.batch, fast=False), args.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
