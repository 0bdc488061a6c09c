"""``python -m bench.profile [--quick] [--only PRESET ...] [--batch N] [--reference]``: where the time goes.

One ``torch.profiler`` CPU profile per network of the suite (fast path unless ``--reference``), after a warm-up,
printing the operators with the largest self time: the "what bounds it" column of ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch.profiler import ProfilerActivity, profile

from bench.networks import build_cases


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    p.add_argument("--quick", action="store_true", help="the tiny models")
    p.add_argument("--only", nargs="+", default=(), help="presets (e.g. pstmo-243-small capf-w32 w32)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reference", action="store_true", help="profile the reference path")
    p.add_argument("--rows", type=int, default=8)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    for case in build_cases(args.quick, tuple(args.only)):
        run = case.runner(args.batch, fast=not args.reference)
        run()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run()
        path = "reference" if args.reference else "fast"
        print(f"== {case.label}, {path} path, batch {args.batch}, {torch.get_num_threads()} thread(s)")
        events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in events) or 1.0
        for e in events[: args.rows]:
            print(f"  {100 * e.self_cpu_time_total / total:5.1f}%  {e.key}  ({e.count} calls)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
