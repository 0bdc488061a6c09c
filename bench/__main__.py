"""``python -m bench [--quick] [--out DIR]``: the network suite (see ``bench/README.md``);
``python -m bench overload [ARGS]``: goodput under 3× overload, admission by time vs by count (``bench/overload.py``);
``python -m bench scale [ARGS]``: gateways × workers × streams on one Redis and on a Redis Cluster (``bench/scale.py``).
``python -m bench overhead [ARGS]``: serving overhead per layer, bare → engine → REST/gRPC → remote worker
(``bench/overhead.py``).

Per network (P-STMO-S 243, P-STMO 81/27, the CA-PF lifter at HRNet-W32 feature widths, HRNet-W32 at 256×192):
items/s at batch 1/8/32 on the fast path and on the reference (published-order) path, interleaved in one run;
FLOPs per item (``FlopCounterMode``); % of the measured fp32 ``torch.mm`` 2048² peak at the same thread count;
dynamic batching (the engine's ``DynamicBatcher``) ÷ batch-1 for the lifters. Writes ``bench.json``,
``bench.md`` and ``bench.png`` into ``--out`` (default ``bench/results``), each with the configuration.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.report import write
from bench.suite import SuiteOptions, quick_options, run_suite


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="tiny models, one short round: a smoke run in seconds")
    p.add_argument("--out", type=Path, default=Path("bench/results"), help="directory for bench.json/.md/.png")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the peak uses the same)")
    p.add_argument("--batches", type=int, nargs="+", default=None, help="batch sizes (default 1 8 32; quick 1 4)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved fast/reference rounds (median)")
    p.add_argument("--seconds", type=float, default=0.5, help="minimum seconds per timing")
    p.add_argument("--only", nargs="+", default=(), help="presets to run (e.g. pstmo-243-small w32)")
    p.add_argument("--no-batching", action="store_true", help="skip dynamic batching ÷ batch-1")
    p.add_argument("--device", default="cpu", help="cpu or cuda (timings synchronise the device)")
    return p.parse_args(argv)


def options(args: argparse.Namespace) -> SuiteOptions:
    if args.quick:
        opts = quick_options(args.threads, tuple(args.batches or (1, 4)))
    else:
        opts = SuiteOptions(
            batches=tuple(args.batches or (1, 8, 32)),
            rounds=args.rounds,
            min_seconds=args.seconds,
            threads=args.threads,
        )
    extra = {"only": tuple(args.only), "batching": not args.no_batching, "device": args.device}
    return SuiteOptions(**{**opts.__dict__, **extra})


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["overload"]:  # goodput under overload: a gateway in a child process (bench/overload.py)
        from bench import overload

        return overload.main(argv[1:])
    if argv[:1] == ["scale"]:  # N concurrent streams through G gateways × W workers (bench/scale.py)
        from bench import scale

        return scale.main(argv[1:])
    if argv[:1] == ["overhead"]:  # µs per layer: bare, engine, REST, gRPC, remote worker (bench/overhead.py)
        from bench import overhead

        return overhead.main(argv[1:])
    args = parse_args(argv)
    result = run_suite(options(args), log=lambda line: print(line, flush=True))
    paths = write(result, args.out)
    print(paths["markdown"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
